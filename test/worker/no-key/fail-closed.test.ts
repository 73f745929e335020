// With neither AUTH_SECRET nor AUTH_JWKS_URL configured, every protected route fails closed
// with 503 auth_not_configured — whatever token is offered — and nothing else changes.
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { expectFailure, request, upgradeHeaders } from "../../support/edge";
import { unsignedToken, epoch } from "../../support/jwt";

// A token signed with a guessable secret: with no key configured it must not matter.
async function plausibleToken(): Promise<string> {
  return new SignJWT({ rooms: { "*": ["*"] } })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("mallory")
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode("secret"));
}

const PROTECTED: [string, string, Record<string, string>, string?][] = [
  ["GET", "/rooms/lobby/ws", upgradeHeaders()],
  ["POST", "/rooms/lobby/messages", { "content-type": "application/json" }, '{"data":1}'],
  ["GET", "/rooms/lobby/history", {}],
  ["GET", "/rooms/lobby/presence", {}],
  ["GET", "/rooms/lobby/stats", {}],
];

describe("fail closed without a key", () => {
  it.each(PROTECTED)("answers %s %s with 503 auth_not_configured and no token", async (method, path, headers, body) => {
    await expectFailure(await request(path, { method, headers, body }), 503, "auth_not_configured");
  });

  it.each(PROTECTED)("answers %s %s with 503 even with an HS256 token signed with a guessable secret", async (method, path, headers, body) => {
    const t = await plausibleToken();
    const res = await request(path, { method, headers: { ...headers, authorization: `Bearer ${t}` }, body });
    await expectFailure(res, 503, "auth_not_configured");
  });

  it.each(PROTECTED)("answers %s %s with 503 for an alg:none token", async (method, path, headers, body) => {
    const t = unsignedToken({ sub: "mallory", exp: epoch(3600), rooms: { "*": ["*"] } });
    const res = await request(`${path}?token=${t}`, { method, headers, body });
    await expectFailure(res, 503, "auth_not_configured");
  });

  it("still answers /health with 200", async () => {
    const res = await request("/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it("does not serve /dev/token when DEV_TOKENS is not set", async () => {
    await expectFailure(await request("/dev/token?user=alice&room=lobby"), 404, "not_found");
  });

  it("keeps the earlier checks: a bad room name is still 400 and a missing Upgrade still 426", async () => {
    await expectFailure(await request("/rooms/-bad/presence"), 400, "bad_request");
    await expectFailure(await request("/rooms/lobby/ws"), 426, "upgrade_required");
  });
});
