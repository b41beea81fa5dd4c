import { createContext, useContext } from "react";

/** The hash prefix of the partner views in use: "#/" for a partner, "#/partner/<id>/" for staff viewing one. */
export const RouteBase = createContext("#/");

export function usePartnerLink(): (path: string) => string {
  const base = useContext(RouteBase);
  return (path) => `${base}${path}`;
}
