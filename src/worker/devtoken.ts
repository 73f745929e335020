// GET /dev/token?user=&room= — exists only when DEV_TOKENS=true, which only the local dev script
// sets. Mints a short-lived HS256 token so the demo page works without an identity provider.
import { SignJWT } from "jose";
import type { Config } from "../config";
import { errorResponse, failure, json } from "../http";
import { MAX_ID_LENGTH, ROOM_NAME } from "../protocol";

export const DEV_TOKEN_TTL_SEC = 3600;

export async function mintDevToken(url: URL, config: Config): Promise<Response> {
  if (!config.AUTH_SECRET) return errorResponse(failure("auth_not_configured", "dev tokens need AUTH_SECRET"));
  const user = url.searchParams.get("user") ?? "";
  const room = url.searchParams.get("room") ?? "";
  if (!user || user.length > MAX_ID_LENGTH || !ROOM_NAME.test(room)) {
    return errorResponse(failure("bad_request", "user (1..64 chars) and a valid room are required"));
  }
  let jwt = new SignJWT({ name: user, rooms: { [room]: ["subscribe", "publish", "history"] } })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(user)
    .setIssuedAt()
    .setExpirationTime(`${DEV_TOKEN_TTL_SEC}s`);
  if (config.AUTH_ISSUER) jwt = jwt.setIssuer(config.AUTH_ISSUER);
  if (config.AUTH_AUDIENCE) jwt = jwt.setAudience(config.AUTH_AUDIENCE);
  const token = await jwt.sign(new TextEncoder().encode(config.AUTH_SECRET));
  return json({ token, expiresIn: DEV_TOKEN_TTL_SEC });
}
