import { env, exports } from "cloudflare:workers";
import { importJWK, SignJWT } from "jose";
import { expect, it } from "vitest";

it("accepts an ES256 token whose key comes from the configured JWKS", async () => {
  const keys = JSON.parse(String(env.TEST_PRIVATE_JWKS));
  const key = await importJWK(keys.ES256, "ES256");
  const jwt = await new SignJWT({ rooms: { lobby: ["subscribe"] } })
    .setProtectedHeader({ alg: "ES256", kid: keys.ES256.kid })
    .setSubject("alice")
    .setIssuer("https://idp.test/")
    .setAudience("edgerooms")
    .setExpirationTime("1h")
    .sign(key);
  const res = await exports.default.fetch(`http://x/rooms/lobby/presence?token=${jwt}`);
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ users: [], count: 0 });
});
