// Hostile tokens and room names at the handshake (issue #6). Every one is refused with a plain
// HTTP failure — never a 101, never a WebSocket — and none of them reaches the room.
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { MAX_TOKEN_LENGTH } from "../../src/auth";
import { expectFailure, request, upgradeHeaders } from "../support/edge";
import { b64url, b64urlJson, epoch, hmacToken, hmacTokenRaw, poolSecret, unsignedToken, withPayload } from "../support/jwt";
import { upgrade } from "../support/socket";
import { token, tokenFor } from "../support/tokens";

const ROOM = "attacked";
const GRANT = { [ROOM]: ["*"] };
const valid = (extra: object = {}) => ({ sub: "mallory", exp: epoch(3600), rooms: GRANT, ...extra });
const HS = { alg: "HS256", typ: "JWT" };

/** Offers the token on the socket route and on an HTTP route; both must refuse it the same way. */
async function expectRefused(t: string, status: 401 | 403 = 401): Promise<void> {
  const code = status === 401 ? "unauthorized" : "forbidden";
  await expectFailure(await upgrade(ROOM, { token: t }), status, code);
  await expectFailure(await request(`/rooms/${ROOM}/ws`, { headers: upgradeHeaders({ authorization: `Bearer ${t}` }) }), status, code);
  await expectFailure(await request(`/rooms/${ROOM}/stats?token=${encodeURIComponent(t)}`), status, code);
}

describe("forged and unsigned tokens", () => {
  it.each(["none", "None", "NONE", "nOnE"])("refuses alg %j with an empty signature", async (alg) => {
    await expectRefused(unsignedToken(valid(), alg));
  });

  it("refuses alg none carrying a genuine token's signature", async () => {
    const genuine = await token(valid());
    const sig = genuine.split(".")[2];
    await expectRefused(`${b64urlJson({ alg: "none" })}.${b64urlJson(valid())}.${sig}`);
  });

  it.each(["HS384", "HS512"])("refuses %s even when signed with the right secret (the algorithm is pinned)", async (alg) => {
    const t = await new SignJWT(valid()).setProtectedHeader({ alg }).sign(new TextEncoder().encode(poolSecret()));
    await expectRefused(t);
  });

  it("refuses a token signed with another secret", async () => {
    await expectRefused(await token(valid(), "guessed-secret"));
  });

  it("refuses a token signed with a prefix of the secret", async () => {
    await expectRefused(await token(valid(), poolSecret().slice(0, 8)));
  });

  it.each([
    ["widened rooms", { rooms: { "*": ["*"] } }],
    ["another sub", { sub: "admin" }],
    ["a later exp", { exp: epoch(10 * 365 * 86400) }],
  ])("refuses a genuine token whose payload was tampered with (%s)", async (_, change) => {
    const genuine = await token({ sub: "mallory", exp: epoch(3600), rooms: { other: ["subscribe"] } });
    await expectRefused(withPayload(genuine, { sub: "mallory", exp: epoch(3600), rooms: { other: ["subscribe"] }, ...change }));
  });

  it("refuses a token whose signature was cut off or altered", async () => {
    const genuine = await token(valid());
    const [h, p, s] = genuine.split(".") as [string, string, string];
    await expectRefused(`${h}.${p}.`);
    await expectRefused(`${h}.${p}`);
    await expectRefused(`${h}.${p}.${s.slice(0, -2)}${s.endsWith("AA") ? "BB" : "AA"}`);
  });

  it("refuses a token with an unknown critical header extension", async () => {
    await expectRefused(await hmacToken({ ...HS, crit: ["x-bypass"], "x-bypass": true }, valid(), poolSecret()));
  });

  it.each([
    ["one segment", "abc"],
    ["empty segments", ".."],
    ["non-base64 characters", "@@@.###.$$$"],
    ["a header that is not JSON", `${b64url("{nope")}.${b64urlJson(valid())}.x`],
    ["a payload that is not JSON", `${b64urlJson(HS)}.${b64url("{nope")}.x`],
    ["four segments", "a.b.c.d"],
  ])("refuses a malformed token: %s", async (_, t) => {
    await expectRefused(t);
  });

  it("refuses a correctly signed token whose payload is a JSON array", async () => {
    await expectRefused(await hmacToken(HS, [valid()], poolSecret()));
  });
});

describe("time claims", () => {
  it("refuses an expired token", async () => {
    await expectRefused(await token(valid({ exp: epoch(-5) })));
  });

  it("refuses a token that is not valid yet (nbf in the future)", async () => {
    await expectRefused(await token(valid({ nbf: epoch(3600) })));
  });

  it("refuses a token without exp", async () => {
    const { exp: _, ...noExp } = valid();
    await expectRefused(await hmacToken(HS, noExp, poolSecret()));
  });

  it.each([
    ["a string", "9999999999"],
    ["null", null],
    ["an object", {}],
  ])("refuses exp that is %s", async (_, exp) => {
    await expectRefused(await hmacToken(HS, { ...valid(), exp }, poolSecret()));
  });

  it("accepts a token with nbf in the past (the checks are not simply refusing nbf)", async () => {
    const res = await request(`/rooms/${ROOM}/presence?token=${await token(valid({ nbf: epoch(-60) }))}`);
    expect(res.status).toBe(200);
  });
});

describe("subject and name claims", () => {
  it.each([
    ["missing", undefined],
    ["empty", ""],
    ["65 characters", "s".repeat(65)],
    ["a number", 42],
    ["an object", { id: "x" }],
  ])("refuses sub that is %s", async (_, sub) => {
    const claims: Record<string, unknown> = valid();
    if (sub === undefined) delete claims.sub;
    else claims.sub = sub;
    await expectRefused(await hmacToken(HS, claims, poolSecret()));
  });

  it.each([
    ["empty", ""],
    ["65 characters", "n".repeat(65)],
    ["a number", 1],
  ])("refuses name that is %s", async (_, name) => {
    await expectRefused(await hmacToken(HS, valid({ name }), poolSecret()));
  });

  it("accepts sub and name of exactly 64 characters", async () => {
    const t = await token(valid({ sub: "s".repeat(64), name: "n".repeat(64) }));
    expect((await request(`/rooms/${ROOM}/presence?token=${t}`)).status).toBe(200);
  });
});

describe("the rooms claim", () => {
  it.each([
    ["a string", "attacked"],
    ["an array of names", ["attacked"]],
    ["an array of pairs", [["attacked", ["*"]]]],
    ["a number", 1],
    ["null", null],
    ["true", true],
    ["missing", undefined],
  ])("refuses rooms that is %s", async (_, rooms) => {
    const claims: Record<string, unknown> = valid();
    if (rooms === undefined) delete claims.rooms;
    else claims.rooms = rooms;
    await expectRefused(await hmacToken(HS, claims, poolSecret()));
  });

  it.each([
    ["a string instead of a list", "subscribe"],
    ["a list of numbers", [1, 2]],
    ["an unknown capability", ["subscribe", "delete"]],
    ["a capability in the wrong case", ["Subscribe"]],
    ["null", null],
    ["an object", { subscribe: true }],
    ["more than 8 entries", Array(9).fill("subscribe")],
  ])("refuses capabilities that are %s", async (_, caps) => {
    await expectRefused(await hmacToken(HS, valid({ rooms: { [ROOM]: caps } }), poolSecret()));
  });

  it("refuses a room pattern longer than 128 characters", async () => {
    await expectRefused(await hmacToken(HS, valid({ rooms: { [ROOM]: ["*"], ["x".repeat(129)]: ["*"] } }), poolSecret()));
  });

  it("grants nothing through a __proto__ key", async () => {
    const payload = `{"sub":"mallory","exp":${epoch(3600)},"rooms":{"__proto__":{"${ROOM}":["*"]}}}`;
    const t = await hmacTokenRaw(JSON.stringify(HS), payload, poolSecret());
    const res = await upgrade(ROOM, { token: t });
    expect(res.status).not.toBe(101);
    expect(res.webSocket).toBeNull();
    expect([401, 403]).toContain(res.status);
  });

  it("answers 403 (not 401) to a well-formed token whose rooms map does not cover the room", async () => {
    await expectRefused(await token(valid({ rooms: { elsewhere: ["*"], "attack*x": ["*"] } })), 403);
  });
});

describe("oversized tokens", () => {
  /** A correctly signed token padded to `length` characters or just under. */
  async function paddedToken(length: number): Promise<string> {
    let pad = Math.floor(length * 0.75) - 200;
    let t = await token(valid({ pad: "p".repeat(pad) }));
    while (t.length < length - 3) t = await token(valid({ pad: "p".repeat(++pad) }));
    return t;
  }

  it(`refuses a correctly signed token longer than ${MAX_TOKEN_LENGTH} characters`, async () => {
    const t = await paddedToken(MAX_TOKEN_LENGTH + 4);
    expect(t.length).toBeGreaterThan(MAX_TOKEN_LENGTH);
    await expectRefused(t);
  });

  it(`accepts a correctly signed token just under ${MAX_TOKEN_LENGTH} characters (the bound is the length)`, async () => {
    const t = await paddedToken(MAX_TOKEN_LENGTH);
    expect(t.length).toBeLessThanOrEqual(MAX_TOKEN_LENGTH);
    expect((await request(`/rooms/${ROOM}/presence`, { headers: { authorization: `Bearer ${t}` } })).status).toBe(200);
  });

  it("refuses a 64 KiB garbage token", async () => {
    await expectFailure(
      await request(`/rooms/${ROOM}/ws`, { headers: upgradeHeaders({ authorization: `Bearer ${"A".repeat(65536)}` }) }),
      401,
      "unauthorized",
    );
  });
});

describe("hostile room names never reach auth or a room", () => {
  it.each([
    ["traversal", "..%2F..%2Fadmin"],
    ["encoded slash", "attacked%2Fws"],
    ["double-encoded slash", "attacked%252Fws"],
    ["unicode", "räum"],
    ["right-to-left override", "a%E2%80%AEb"],
    ["overlong", "a".repeat(65)],
    ["very long", "a".repeat(5000)],
    ["empty", ""],
    ["newline", "a%0Ab"],
  ])("answers 400 for a room name with %s, even with a wildcard token", async (_, room) => {
    const t = await token({ sub: "mallory", rooms: { "*": ["*"] } });
    await expectFailure(await request(`/rooms/${room}/ws?token=${t}`, { headers: upgradeHeaders() }), 400, "bad_request");
  });
});

it("let none of the refused handshakes into the room", async () => {
  const res = await request(`/rooms/${ROOM}/stats?token=${await tokenFor("auditor", ROOM, ["admin"])}`);
  expect(await res.json()).toMatchObject({ room: ROOM, connections: 0, users: 0, seq: 0 });
});
