// Sign-in with a bearer token: from a link's #token= fragment or pasted. The token stays in sessionStorage;
// its payload is decoded only to show who is signed in (the APIs verify it).

export type Role = "admin" | "partner" | "system";

export interface Session {
  token: string;
  role: Role;
  sub: string;
  partnerId: string | null;
  expiresAt: Date | null;
}

const STORAGE_KEY = "partnerhub.token";

function decodePayload(token: string): Record<string, unknown> {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("This is not a JSON Web Token (it needs three parts separated by dots).");
  const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  let text: string;
  try {
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    text = new TextDecoder().decode(bytes);
  } catch {
    throw new Error("The token's payload cannot be read.");
  }
  const payload: unknown = JSON.parse(text);
  if (typeof payload !== "object" || payload === null) throw new Error("The token's payload is not an object.");
  return payload as Record<string, unknown>;
}

/** The session a token describes, or an Error saying why it cannot be used. */
export function sessionFromToken(raw: string): Session {
  const token = raw.trim().replace(/^Bearer\s+/i, "");
  const payload = decodePayload(token);
  const role = payload.role;
  if (role !== "admin" && role !== "partner" && role !== "system") {
    throw new Error("The token names no role this workspace knows (admin or partner).");
  }
  const partnerId = typeof payload.partner_id === "string" ? payload.partner_id : null;
  if (role === "partner" && !partnerId) throw new Error("A partner token needs a partner_id claim.");
  const exp = typeof payload.exp === "number" ? new Date(payload.exp * 1000) : null;
  if (exp && exp.getTime() <= Date.now()) throw new Error("This token has expired: ask for a new sign-in link.");
  return { token, role, sub: typeof payload.sub === "string" ? payload.sub : "(no subject)", partnerId, expiresAt: exp };
}

export function storedSession(): Session | null {
  const token = sessionStorage.getItem(STORAGE_KEY);
  if (!token) return null;
  try {
    return sessionFromToken(token);
  } catch {
    sessionStorage.removeItem(STORAGE_KEY);
    return null;
  }
}

export function storeToken(token: string): void {
  sessionStorage.setItem(STORAGE_KEY, token);
}

export function clearToken(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** Takes a token from the address's #token= fragment, once, and removes it from the address. */
export function takeTokenFromLocation(): string | null {
  const match = /^#token=([^&]+)/.exec(window.location.hash);
  if (!match) return null;
  const token = decodeURIComponent(match[1]);
  history.replaceState(null, "", window.location.pathname + window.location.search);
  return token;
}
