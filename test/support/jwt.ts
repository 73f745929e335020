// Hand-made JWTs for attack tests: jose refuses to produce most of these, so they are
// assembled from parts here.
import { env } from "cloudflare:workers";

const utf8 = new TextEncoder();

export function b64url(bytes: Uint8Array | string): string {
  const b = typeof bytes === "string" ? utf8.encode(bytes) : bytes;
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function b64urlJson(value: unknown): string {
  return b64url(JSON.stringify(value));
}

/** HS256 over `header.payload` with the given secret bytes; header and payload are taken as given. */
export function hmacToken(header: object, payload: unknown, secret: Uint8Array | string): Promise<string> {
  return hmacTokenRaw(JSON.stringify(header), JSON.stringify(payload), secret);
}

/** HS256 over the exact JSON texts given (for payloads an object literal cannot express). */
export async function hmacTokenRaw(header: string, payload: string, secret: Uint8Array | string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    typeof secret === "string" ? utf8.encode(secret) : secret,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const input = `${b64url(header)}.${b64url(payload)}`;
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8.encode(input)));
  return `${input}.${b64url(sig)}`;
}

/** An unsigned `alg: none` token: header.payload. with an empty signature. */
export function unsignedToken(payload: object, alg = "none"): string {
  return `${b64urlJson({ alg, typ: "JWT" })}.${b64urlJson(payload)}.`;
}

/** Replaces a signed token's payload and keeps its original signature. */
export function withPayload(token: string, payload: object): string {
  const [header, , sig] = token.split(".");
  return `${header}.${b64urlJson(payload)}.${sig}`;
}

/** Seconds since the epoch, offset by `delta`. */
export function epoch(delta = 0): number {
  return Math.floor(Date.now() / 1000) + delta;
}

/** The pool's HS256 secret (room and upgrade-limit projects). */
export function poolSecret(): string {
  return String(env.AUTH_SECRET);
}
