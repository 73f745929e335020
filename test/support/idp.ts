// Tokens as the JWKS projects' identity provider signs them: the private halves of the key set
// the outbound handler serves (or, in the outage projects, would serve).
import { env } from "cloudflare:workers";
import { importJWK, SignJWT } from "jose";

export const ISSUER = "https://idp.test/";
export const AUDIENCE = "edgerooms";

/** A genuine ES256 token for `sub` with every capability in `room`. */
export async function idpToken(sub: string, room: string): Promise<string> {
  const keys = JSON.parse(String(env.TEST_PRIVATE_JWKS));
  const key = await importJWK(keys.ES256, "ES256");
  return new SignJWT({ rooms: { [room]: ["*"] } })
    .setProtectedHeader({ alg: "ES256", kid: keys.ES256.kid })
    .setSubject(sub)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setExpirationTime("1h")
    .sign(key);
}
