// Who is connecting and what they may do in a room: JWT verification with jose, then the `rooms`
// capability map. The Worker asks at the edge, a room again when a live connection refreshes its
// token. Fail closed: with no key configured nothing is allowed.
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type JWTVerifyGetKey, type JWTVerifyOptions } from "jose";
import { z } from "zod";
import type { Config } from "./config";
import { failure, type Failure } from "./http";
import { Capability, MAX_ID_LENGTH } from "./protocol";

/** Tokens longer than this are rejected before any crypto: a cheap bound on hostile input. */
export const MAX_TOKEN_LENGTH = 8192;

// Pinned per key type so a token can never pick its own verification algorithm
// (no `alg: none`, no HS256-signed-with-the-public-key confusion).
const HMAC_ALGS = ["HS256"];
const JWKS_ALGS = ["RS256", "ES256", "EdDSA"];

const CapabilityClaim = z.union([Capability, z.literal("*")]);
const Claims = z.object({
  sub: z.string().min(1).max(MAX_ID_LENGTH),
  exp: z.number(),
  name: z.string().min(1).max(MAX_ID_LENGTH).optional(),
  rooms: z.record(z.string().min(1).max(128), z.array(CapabilityClaim).max(8)),
});

export interface Identity {
  id: string;
  name: string;
  /** The token's room → capabilities map, kept to resolve a room's capabilities later. */
  rooms: Record<string, z.infer<typeof CapabilityClaim>[]>;
  /** When the token expires, unix seconds: a connection lives no longer (connections.ts closes it with 4401). */
  exp: number;
}

/**
 * A key-set fetch gives up after this long: a key server that hangs must not hang every
 * handshake with it.
 */
export const KEYS_TIMEOUT_MS = 5_000;
/**
 * After a failed key-set fetch, requests that need a fetch are answered 503 for this long
 * without trying again (an outage is not hammered by every reconnecting client); also the
 * Retry-After they get.
 */
export const KEYS_RETRY_SEC = 5;

/** The key set could not be had (unreachable, timed out, not 200, not a key set): not the token's fault. */
class KeysUnavailable extends Error {}

// createRemoteJWKSet caches keys and rate-limits refetches; one instance per URL per isolate.
const remoteSets = new Map<string, JWTVerifyGetKey>();
// Imported once per secret per isolate: jose would otherwise import a raw secret on every verify.
const secrets = new Map<string, Promise<CryptoKey>>();

export function tokenFrom(request: Request, url: URL): string | undefined {
  const header = request.headers.get("authorization");
  if (header) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m ? m[1] : "";
  }
  return url.searchParams.get("token") ?? undefined;
}

export function authConfigured(config: Config): boolean {
  return Boolean(config.AUTH_SECRET || config.AUTH_JWKS_URL);
}

/**
 * Verifies a token; every failure is a value, never an exception: 401 for the token, 503
 * `auth_unavailable` when the key set cannot be fetched (the token may well be good).
 */
export async function verifyToken(token: string | undefined, config: Config): Promise<Identity | Failure> {
  if (!authConfigured(config)) {
    return failure("auth_not_configured", "no AUTH_SECRET or AUTH_JWKS_URL is configured");
  }
  if (!token) return failure("unauthorized", "a token is required (?token= or Authorization: Bearer)");
  if (token.length > MAX_TOKEN_LENGTH) return failure("unauthorized", "token too long");

  const options: JWTVerifyOptions = {
    requiredClaims: ["exp", "sub"],
    issuer: config.AUTH_ISSUER,
    audience: config.AUTH_AUDIENCE,
  };
  let payload: unknown;
  try {
    if (config.AUTH_SECRET) {
      ({ payload } = await jwtVerify(token, await secretKey(config.AUTH_SECRET), {
        ...options,
        algorithms: HMAC_ALGS,
      }));
    } else {
      ({ payload } = await jwtVerify(token, remoteSet(config.AUTH_JWKS_URL!), {
        ...options,
        algorithms: JWKS_ALGS,
      }));
    }
  } catch (err) {
    if (err instanceof KeysUnavailable) {
      return failure("auth_unavailable", `the key set cannot be fetched: ${err.message}`, KEYS_RETRY_SEC);
    }
    return failure("unauthorized", describeJoseError(err));
  }
  const claims = Claims.safeParse(payload);
  if (!claims.success) {
    return failure("unauthorized", `token claims are malformed: ${claims.error.issues[0]?.message}`);
  }
  const { sub, name, rooms, exp } = claims.data;
  return { id: sub, name: name ?? sub, rooms, exp };
}

/**
 * The capabilities the identity holds in `room`: an exact entry, then every `prefix*` entry
 * that matches, merged. `*` as a capability expands to all of them.
 */
export function capabilitiesFor(identity: Identity, room: string): Set<Capability> {
  const caps = new Set<Capability>();
  for (const [pattern, granted] of Object.entries(identity.rooms)) {
    const matches = pattern.endsWith("*") ? room.startsWith(pattern.slice(0, -1)) : pattern === room;
    if (!matches) continue;
    for (const c of granted) {
      if (c === "*") for (const all of Capability.options) caps.add(all);
      else caps.add(c);
    }
  }
  return caps;
}

function secretKey(secret: string): Promise<CryptoKey> {
  let key = secrets.get(secret);
  if (!key) {
    const raw = new TextEncoder().encode(secret);
    key = crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    secrets.set(secret, key);
  }
  return key;
}

function remoteSet(url: string): JWTVerifyGetKey {
  let set = remoteSets.get(url);
  if (!set) remoteSets.set(url, (set = remoteKeys(url)));
  return set;
}

/**
 * jose's remote key set, with its failures to fetch told apart from bad tokens (thrown as
 * KeysUnavailable) and a cooldown after a failure. jose itself retries a failed fetch on the
 * next verify, and in Workers it cannot share one fetch between requests, so without the
 * cooldown every request during an outage would fetch.
 */
function remoteKeys(url: string): JWTVerifyGetKey {
  let failedAt = -Infinity;
  const set = createRemoteJWKSet(new URL(url), {
    timeoutDuration: KEYS_TIMEOUT_MS,
    [customFetch]: (input, init) =>
      Date.now() - failedAt < KEYS_RETRY_SEC * 1000 ? Promise.reject(new KeysUnavailable("the last fetch failed moments ago")) : fetch(input, init),
  });
  return async (header, token) => {
    try {
      return await set(header, token);
    } catch (err) {
      if (err instanceof KeysUnavailable || !keysUnreachable(err)) throw err;
      failedAt = Date.now();
      throw new KeysUnavailable(err instanceof Error ? err.message : String(err));
    }
  };
}

/**
 * Whether an error from the key getter means the set could not be had. Read off jose's
 * remote.js: a timeout is JWKSTimeout, a non-200 or non-JSON answer is a plain JOSEError, a
 * body that is not a key set is JWKSInvalid, and a network failure is fetch's own error (not a
 * JOSEError). Everything else the getter throws (no matching key in a set it did get, several
 * matching keys, an unusable key) is about the token.
 */
function keysUnreachable(err: unknown): boolean {
  if (!(err instanceof joseErrors.JOSEError)) return true;
  return err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || err.code === joseErrors.JOSEError.code;
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return "token expired";
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `token claim rejected: ${err.message}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return "token algorithm not allowed";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "token signature invalid";
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "no key matches the token";
  if (err instanceof joseErrors.JOSEError) return `token invalid: ${err.code}`;
  return "token invalid";
}
