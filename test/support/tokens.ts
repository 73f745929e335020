// Token helpers for Workers-pool tests: sign as an identity provider would.
import { env } from "cloudflare:workers";
import { SignJWT, type JWTPayload } from "jose";

export interface Claims extends JWTPayload {
  sub?: string;
  name?: string;
  rooms?: unknown;
}

/** An HS256 token signed with the pool's AUTH_SECRET, valid for an hour unless claims say otherwise. */
export async function token(claims: Claims, secret = String(env.AUTH_SECRET)): Promise<string> {
  return new SignJWT({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(secret));
}

/** A token for `sub` with every capability in `room` (or the given ones). */
export function tokenFor(sub: string, room: string, caps: string[] = ["*"], name?: string): Promise<string> {
  return token({ sub, ...(name ? { name } : {}), rooms: { [room]: caps } });
}
