// Partner names for the ids the queues list, each read once per page load (there is no batch lookup).

import { useEffect, useState } from "react";
import { get } from "./api";
import type { Partner } from "./types";

const names = new Map<string, Promise<string | null>>();

function nameOf(id: string): Promise<string | null> {
  let found = names.get(id);
  if (!found) {
    found = get<Partner>(`/v1/partners/${encodeURIComponent(id)}`).then(
      (partner) => partner.name,
      () => null,
    );
    names.set(id, found);
  }
  return found;
}

export function usePartnerNameOf(id: string): string | null {
  const [name, setName] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    void nameOf(id).then((found) => live && setName(found));
    return () => {
      live = false;
    };
  }, [id]);
  return name;
}
