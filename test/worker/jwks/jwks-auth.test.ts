// Asymmetric tokens verified against the configured JWKS (AUTH_JWKS_URL, with AUTH_ISSUER and
// AUTH_AUDIENCE set): the three pinned algorithms work, and the classic JWKS attacks do not.
import { env } from "cloudflare:workers";
import { exportJWK, exportSPKI, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from "jose";
import { describe, expect, it } from "vitest";
import { expectFailure, request, upgradeHeaders } from "../../support/edge";
import { b64urlJson, epoch, hmacToken, unsignedToken, withPayload } from "../../support/jwt";

const ISSUER = "https://idp.test/";
const AUDIENCE = "edgerooms";
const ROOM = "jwks-room";
type Alg = "RS256" | "ES256" | "EdDSA";
const ALGS: Alg[] = ["RS256", "ES256", "EdDSA"];
const PRIVATE = JSON.parse(String(env.TEST_PRIVATE_JWKS)) as Record<Alg, JWK & { kid: string }>;
const PRIVATE_PARTS = ["d", "p", "q", "dp", "dq", "qi"];

/** The public half of one of the identity provider's keys, as published in its JWKS. */
function publicJwk(alg: Alg): JWK {
  return Object.fromEntries(Object.entries(PRIVATE[alg]).filter(([k]) => !PRIVATE_PARTS.includes(k)));
}

const claims = (extra: JWTPayload = {}): JWTPayload => ({
  sub: "alice",
  iss: ISSUER,
  aud: AUDIENCE,
  exp: epoch(3600),
  rooms: { [ROOM]: ["*"] },
  ...extra,
});

/** Signs as the identity provider does, with the key for `alg` from the published set. */
async function idpToken(alg: Alg, payload: JWTPayload = claims(), header: object = {}): Promise<string> {
  const key = await importJWK(PRIVATE[alg], alg);
  return new SignJWT(payload).setProtectedHeader({ alg, kid: PRIVATE[alg].kid, ...header }).sign(key);
}

async function upgradeWith(t: string): Promise<Response> {
  const res = await request(`/rooms/${ROOM}/ws?token=${encodeURIComponent(t)}`, { headers: upgradeHeaders() });
  if (res.webSocket) {
    res.webSocket.accept();
    res.webSocket.close(1000);
  }
  return res;
}

async function expectRefused(t: string): Promise<void> {
  await expectFailure(await upgradeWith(t), 401, "unauthorized");
  await expectFailure(await request(`/rooms/${ROOM}/stats`, { headers: { authorization: `Bearer ${t}` } }), 401, "unauthorized");
}

describe("accepted algorithms", () => {
  it.each(ALGS)("upgrades a socket with an %s token from the key set", async (alg) => {
    expect((await upgradeWith(await idpToken(alg))).status).toBe(101);
  });

  it.each(ALGS)("serves HTTP routes to an %s token from the key set", async (alg) => {
    const res = await request(`/rooms/${ROOM}/stats`, { headers: { authorization: `Bearer ${await idpToken(alg)}` } });
    expect(res.status).toBe(200);
  });
});

describe("issuer and audience", () => {
  it.each([
    ["another issuer", { iss: "https://evil.test/" }],
    ["the issuer without its trailing slash", { iss: "https://idp.test" }],
    ["no issuer", { iss: undefined }],
    ["another audience", { aud: "other-app" }],
    ["an audience list without ours", { aud: ["a", "b"] }],
    ["no audience", { aud: undefined }],
  ])("refuses a token with %s", async (_, change) => {
    const payload = claims(change);
    for (const k of Object.keys(change)) if ((change as Record<string, unknown>)[k] === undefined) delete payload[k];
    await expectRefused(await idpToken("ES256", payload));
  });

  it("accepts an audience list that includes ours", async () => {
    expect((await upgradeWith(await idpToken("ES256", claims({ aud: ["other", AUDIENCE] })))).status).toBe(101);
  });
});

describe("keys outside the set", () => {
  it.each(ALGS)("refuses an %s token signed by a fresh key that reuses a published kid", async (alg) => {
    const { privateKey } = await generateKeyPair(alg);
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg, kid: PRIVATE[alg].kid }).sign(privateKey));
  });

  it.each(ALGS)("refuses an %s token signed by a fresh key with an unknown kid or none", async (alg) => {
    const { privateKey } = await generateKeyPair(alg);
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg, kid: "attacker" }).sign(privateKey));
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg }).sign(privateKey));
  });

  it("refuses a token that carries its own key in the header (embedded jwk)", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const jwk = await exportJWK(publicKey);
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: "ES256", jwk }).sign(privateKey));
  });

  it("refuses a token that points at its own key set (jku)", async () => {
    const { privateKey } = await generateKeyPair("ES256");
    await expectRefused(
      await new SignJWT(claims()).setProtectedHeader({ alg: "ES256", kid: "a", jku: "https://evil.test/jwks.json" }).sign(privateKey),
    );
  });

  it("refuses a token signed by a published key under another algorithm's kid", async () => {
    const key = await importJWK(PRIVATE.ES256, "ES256");
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: "ES256", kid: PRIVATE.RS256.kid }).sign(key));
  });

  it("refuses PS256 signed with the published RSA key (not a pinned algorithm)", async () => {
    const key = await importJWK({ ...PRIVATE.RS256, alg: "PS256" }, "PS256");
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: "PS256", kid: PRIVATE.RS256.kid }).sign(key));
  });
});

describe("algorithm confusion and unsigned tokens", () => {
  it.each(ALGS)("refuses HS256 signed with the %s public JWK's serialized form as the secret", async (alg) => {
    const pub = publicJwk(alg);
    for (const secret of [JSON.stringify(pub), JSON.stringify({ keys: [pub] })]) {
      await expectRefused(await hmacToken({ alg: "HS256", kid: PRIVATE[alg].kid, typ: "JWT" }, claims(), secret));
    }
  });

  it.each(ALGS)("refuses HS256 signed with the %s public key's PEM as the secret", async (alg) => {
    const pem = await exportSPKI((await importJWK(publicJwk(alg), alg, { extractable: true })) as CryptoKey);
    await expectRefused(await hmacToken({ alg: "HS256", kid: PRIVATE[alg].kid, typ: "JWT" }, claims(), pem));
    await expectRefused(await hmacToken({ alg: "HS256", kid: PRIVATE[alg].kid, typ: "JWT" }, claims(), pem.trim()));
  });

  it("refuses HS256 signed with the RSA modulus as the secret", async () => {
    await expectRefused(await hmacToken({ alg: "HS256", kid: PRIVATE.RS256.kid }, claims(), String(publicJwk("RS256").n)));
  });

  it.each(["none", "None"])("refuses alg %j, with or without a kid", async (alg) => {
    await expectRefused(unsignedToken(claims(), alg));
    await expectRefused(`${b64urlJson({ alg, kid: PRIVATE.RS256.kid })}.${b64urlJson(claims())}.`);
  });
});

describe("claims of a genuinely signed token", () => {
  it.each(ALGS)("refuses an %s token whose payload was changed after signing", async (alg) => {
    const genuine = await idpToken(alg, claims({ rooms: { elsewhere: ["subscribe"] } }));
    await expectRefused(withPayload(genuine, claims()));
  });

  it("refuses an expired RS256 token", async () => {
    await expectRefused(await idpToken("RS256", claims({ exp: epoch(-5) })));
  });

  it("refuses an EdDSA token that is not yet valid", async () => {
    await expectRefused(await idpToken("EdDSA", claims({ nbf: epoch(3600) })));
  });

  it("refuses an ES256 token without exp, and one without sub", async () => {
    const { exp: _e, ...noExp } = claims();
    const { sub: _s, ...noSub } = claims();
    await expectRefused(await idpToken("ES256", noExp));
    await expectRefused(await idpToken("ES256", noSub));
  });

  it("refuses an RS256 token whose rooms claim is malformed", async () => {
    await expectRefused(await idpToken("RS256", claims({ rooms: [ROOM] })));
    await expectRefused(await idpToken("RS256", claims({ rooms: { [ROOM]: ["root"] } })));
  });

  it("answers 403 to a genuine token for another room", async () => {
    const t = await idpToken("ES256", claims({ rooms: { elsewhere: ["*"] } }));
    await expectFailure(await upgradeWith(t), 403, "forbidden");
  });
});
