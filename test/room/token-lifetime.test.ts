// A connection lives no longer than its token: at `exp` the room closes it with 4401 (after a
// hibernation too), unless the client sent a `refresh` with a fresh token for the same user,
// whose expiry and capabilities then replace the old ones.
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { CloseCode } from "../../src/protocol";
import { connect, keepAlive } from "../support/socket";
import { token, tokenFor } from "../support/tokens";

const nowSec = () => Math.floor(Date.now() / 1000);
const shortToken = (sub: string, room: string, ttlSec: number, caps = ["*"]) => token({ sub, rooms: { [room]: caps }, exp: nowSec() + ttlSec });

// The pool's IDLE_TIMEOUT_SEC is 2: the sockets under test keep pinging (keepAlive), so only expiry can close them.

/** Resolves once the wall clock has passed `ms` (unix ms): the moment a claim is about. */
const until = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms - Date.now())));

describe("token lifetime", () => {
  it("closes a socket with 4401 when its token expires, and its leave follows", async () => {
    const room = "exp-close";
    const watcher = keepAlive(await connect(room, { token: await tokenFor("watcher", room) }));
    const tok = await shortToken("brief", room, 2);
    const s = keepAlive(await connect(room, { token: tok }));
    const w = await s.next("welcome");
    const claims = JSON.parse(atob(tok.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/"))) as { exp: number };
    expect(w.exp).toBe(claims.exp); // the welcome tells the token's exp
    const closed = await Promise.race([s.closed, until(w.exp! * 1000 + 4000).then(() => null)]);
    expect(closed).toMatchObject({ code: CloseCode.tokenExpired });
    expect(Date.now()).toBeGreaterThanOrEqual(w.exp! * 1000);
    expect(await watcher.next("presence", (p) => p.event === "leave")).toMatchObject({ user: { id: "brief" } });
  });

  it("keeps a refreshed socket open past the old expiry, with the new token's capabilities", async () => {
    const room = "exp-refresh";
    const s = keepAlive(await connect(room, { token: await shortToken("ada", room, 2, ["subscribe"]) }));
    const w = await s.next("welcome");
    s.send({ type: "publish", data: "before", id: "p0" });
    expect(await s.next("error", (e) => e.id === "p0")).toMatchObject({ code: "forbidden" });
    const fresh = await shortToken("ada", room, 60, ["subscribe", "publish"]);
    s.send({ type: "refresh", token: fresh, id: "r1" });
    const ack = await s.next("ack", (a) => a.id === "r1");
    expect(ack.exp).toBeGreaterThan(w.exp! + 30);
    await until(w.exp! * 1000 + 1500); // past the old expiry
    s.send({ type: "publish", data: "after", id: "p1" });
    expect(await s.next("message", (m) => m.id === "p1")).toMatchObject({ data: "after" });
    expect(s.isClosed()).toBe(false);
  });

  it("refuses a refresh for another user or with a bad token, and the old expiry stands", async () => {
    const room = "exp-refuse";
    const s = keepAlive(await connect(room, { token: await shortToken("ada", room, 3) }));
    const w = await s.next("welcome");
    s.send({ type: "refresh", token: await shortToken("mallory", room, 60), id: "other" });
    expect(await s.next("error", (e) => e.id === "other")).toMatchObject({ code: "unauthorized" });
    s.send({ type: "refresh", token: await token({ sub: "ada", rooms: { [room]: ["*"] } }, "not-the-secret"), id: "forged" });
    expect(await s.next("error", (e) => e.id === "forged")).toMatchObject({ code: "unauthorized" });
    const closed = await Promise.race([s.closed, until(w.exp! * 1000 + 4000).then(() => null)]);
    expect(closed).toMatchObject({ code: CloseCode.tokenExpired });
  });

  it("closes with 4403 when the fresh token no longer grants subscribe here", async () => {
    const room = "exp-revoked";
    const s = keepAlive(await connect(room, { token: await shortToken("ada", room, 60) }));
    await s.next("welcome");
    s.send({ type: "refresh", token: await token({ sub: "ada", rooms: { elsewhere: ["*"] }, exp: nowSec() + 60 }), id: "r" });
    expect(await s.closed).toMatchObject({ code: CloseCode.forbidden });
  });

  it("still closes at expiry after the room hibernated (the expiry is in the attachment, the alarm acts)", async () => {
    const room = "exp-hibernate";
    const s = keepAlive(await connect(room, { token: await shortToken("ada", room, 3) }));
    const w = await s.next("welcome");
    await evictDurableObject(env.ROOMS.get(env.ROOMS.idFromName(room)), { webSockets: "hibernate" });
    const closed = await Promise.race([s.closed, until(w.exp! * 1000 + 4000).then(() => null)]);
    expect(closed).toMatchObject({ code: CloseCode.tokenExpired });
  });
});
