// Per-IP upgrade limit (UPGRADE_LIMIT=5 in this project): the sixth attempt from one
// cf-connecting-ip within 10 s is 429, and it answers before every other check.
import { describe, expect, it } from "vitest";
import { expectFailure, request, upgradeHeaders } from "../../support/edge";
import { tokenFor } from "../../support/tokens";

const LIMIT = 5;
let nextIp = 1;
/** A fresh client address per test: the limiter lives in the isolate for the whole file. */
const freshIp = () => `203.0.113.${nextIp++}`;

async function attempt(ip: string, path = "/rooms/lim/ws", headers: Record<string, string> = upgradeHeaders()) {
  const token = await tokenFor("alice", "lim", ["subscribe"]);
  const res = await request(`${path}${path.includes("?") ? "&" : "?"}token=${token}`, {
    headers: { ...headers, "cf-connecting-ip": ip },
  });
  if (res.webSocket) {
    res.webSocket.accept();
    res.webSocket.close(1000);
  }
  return res;
}

describe("per-IP upgrade limit", () => {
  it("upgrades five attempts from one IP and refuses the sixth with 429", async () => {
    const ip = freshIp();
    for (let i = 0; i < LIMIT; i++) expect((await attempt(ip)).status).toBe(101);
    await expectFailure(await attempt(ip), 429, "rate_limited");
  });

  it("does not limit another IP when one is over its limit", async () => {
    const noisy = freshIp();
    for (let i = 0; i <= LIMIT; i++) await attempt(noisy);
    await expectFailure(await attempt(noisy), 429, "rate_limited");
    expect((await attempt(freshIp())).status).toBe(101);
  });

  it("counts failed attempts too: five rejected handshakes use up the limit", async () => {
    const ip = freshIp();
    for (let i = 0; i < LIMIT; i++) await expectFailure(await attempt(ip, "/rooms/lim/ws", {}), 426, "upgrade_required");
    await expectFailure(await attempt(ip), 429, "rate_limited");
  });

  it("429 before 400: an over-limit IP asking for a bad room name gets 429", async () => {
    const ip = freshIp();
    for (let i = 0; i < LIMIT; i++) await attempt(ip);
    await expectFailure(await attempt(ip, "/rooms/-bad/ws"), 429, "rate_limited");
  });

  it("429 before 426: an over-limit IP without Upgrade gets 429", async () => {
    const ip = freshIp();
    for (let i = 0; i < LIMIT; i++) await attempt(ip);
    await expectFailure(await attempt(ip, "/rooms/lim/ws", {}), 429, "rate_limited");
  });

  it("429 before 401: an over-limit IP with no token gets 429", async () => {
    const ip = freshIp();
    for (let i = 0; i < LIMIT; i++) await attempt(ip);
    const res = await request("/rooms/lim/ws", { headers: upgradeHeaders({ "cf-connecting-ip": ip }) });
    await expectFailure(res, 429, "rate_limited");
  });

  it("limits upgrades only: an over-limit IP can still read presence over HTTP", async () => {
    const ip = freshIp();
    for (let i = 0; i <= LIMIT; i++) await attempt(ip);
    const token = await tokenFor("alice", "lim", ["subscribe"]);
    const res = await request(`/rooms/lim/presence?token=${token}`, { headers: { "cf-connecting-ip": ip } });
    expect(res.status).toBe(200);
  });
});
