// Who is connecting and what they may do in a room: JWT verification with jose, then the
// `rooms` capability map. Fail closed: with no key configured nothing is allowed.
import {
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from "jose";
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
  name: z.string().min(1).max(MAX_ID_LENGTH).optional(),
  rooms: z.record(z.string().min(1).max(128), z.array(CapabilityClaim).max(8)),
});

export interface Identity {
  id: string;
  name: string;
  /** The token's room → capabilities map, kept to resolve a room's capabilities later. */
  rooms: Record<string, z.infer<typeof CapabilityClaim>[]>;
}

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

/** Verifies a token; every failure is a 401 value, never an exception. */
export async function verifyToken(
  token: string | undefined,
  config: Config,
): Promise<Identity | Failure> {
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
    return failure("unauthorized", describeJoseError(err));
  }
  const claims = Claims.safeParse(payload);
  if (!claims.success) {
    return failure("unauthorized", `token claims are malformed: ${claims.error.issues[0]?.message}`);
  }
  const { sub, name, rooms } = claims.data;
  return { id: sub, name: name ?? sub, rooms };
}

/**
 * The capabilities the identity holds in `room`: an exact entry, then every `prefix*` entry
 * that matches, merged. `*` as a capability expands to all of them.
 */
export function capabilitiesFor(identity: Identity, room: string): Set<Capability> {
  const caps = new Set<Capability>();
  for (const [pattern, granted] of Object.entries(identity.rooms)) {
    const matches = pattern.endsWith("*")
      ? room.startsWith(pattern.slice(0, -1))
      : pattern === room;
    if (!matches) continue;
    for (const c of granted) {
      if (c === "*") for (const all of Capability.options) caps.add(all);
      else caps.add(c);
    }
  }
  return caps;
}

export function isFailure(x: unknown): x is Failure {
  return typeof x === "object" && x !== null && "code" in x && "message" in x;
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
  if (!set) remoteSets.set(url, (set = createRemoteJWKSet(new URL(url))));
  return set;
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
