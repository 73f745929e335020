// A connection lives no longer than its token: at `exp` the room closes it with 4401 (after a
// hibernation too), unless the client sent a `refresh` with a fresh token for the same user,
// whose expiry (shorter or longer) and capabilities then replace the old ones. No frame is taken
// from a connection past its expiry.
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { CloseCode, type MessageFrame } from "../../src/protocol";
import { connect, keepAlive } from "../support/socket";
import { token, tokenFor } from "../support/tokens";

const nowSec = () => Math.floor(Date.now() / 1000);
const shortToken = (sub: string, room: string, ttlSec: number, caps = ["*"]) => token({ sub, rooms: { [room]: caps }, exp: nowSec() + ttlSec });

// The pool's IDLE_TIMEOUT_SEC is 2: the sockets under test keep pinging (keepAlive), so only expiry can close them.

/** How late after `exp` the room may close a socket: an alarm's delay, far under the idle period. */
const MARGIN_MS = 500;

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

  it("holds a refresh that shortens the lifetime: 4401 at the new exp, not at the next sweep, and nothing sent after it is taken", async () => {
    const room = "exp-shorten";
    // The idle sweep runs IDLE_TIMEOUT_SEC (2 s) after the first join, then at most once an idle
    // period; so a new exp 1 s after the joins is due before any sweep, and a close within
    // MARGIN_MS of it can only come from an alarm set for it (a sweep would be ≥ 1 s late).
    // `exp` is whole seconds: start just after a second begins, so the next second is ~1 s away.
    await until(Math.ceil(Date.now() / 1000) * 1000 + 20);
    const watcher = keepAlive(await connect(room, { token: await tokenFor("watcher", room) }));
    await watcher.next("welcome");
    // Two tabs of one user, both refreshed to the short token: `quiet` sends nothing after the
    // refresh (only the alarm can close it), `talker` publishes just after the new exp.
    const [quiet, talker] = await Promise.all([1, 2].map(async () => keepAlive(await connect(room, { token: await shortToken("ada", room, 3600) }))));
    const exp = nowSec() + 1;
    const short = await token({ sub: "ada", rooms: { [room]: ["*"] }, exp });
    for (const s of [quiet!, talker!]) {
      await s.next("welcome");
      s.send({ type: "refresh", token: short, id: "r" });
      expect((await s.next("ack", (a) => a.id === "r")).exp).toBe(exp);
    }
    const quietClosed = quiet!.closed.then((c) => ({ ...c, at: Date.now() }));
    await until(exp * 1000 + 1);
    talker!.send({ type: "publish", data: "late", id: "late" });
    const close = await Promise.race([quietClosed, until(exp * 1000 + 3000).then(() => null)]);
    expect(close).toMatchObject({ code: CloseCode.tokenExpired, reason: "token expired" });
    expect(close!.at - exp * 1000).toBeGreaterThanOrEqual(0);
    expect(close!.at - exp * 1000).toBeLessThanOrEqual(MARGIN_MS);
    expect(await talker!.closed).toMatchObject({ code: CloseCode.tokenExpired, reason: "token expired" });
    // Frames reach the watcher in order: had the late publish been taken, it would come first.
    watcher.send({ type: "publish", data: "marker", id: "m" });
    await watcher.next("message", (m) => m.id === "m");
    expect(watcher.frames.filter((f): f is MessageFrame => f.type === "message").map((m) => m.data)).toEqual(["marker"]);
  });

  it("takes no frame from a connection past its exp even when the alarm is late: the frame closes it with 4401", async () => {
    const room = "exp-late-alarm";
    const watcher = keepAlive(await connect(room, { token: await tokenFor("watcher", room) }));
    await watcher.next("welcome");
    const s = keepAlive(await connect(room, { token: await shortToken("ada", room, 3600) }));
    await s.next("welcome");
    const exp = nowSec() + 2;
    s.send({ type: "refresh", token: await token({ sub: "ada", rooms: { [room]: ["*"] }, exp }), id: "r" });
    await s.next("ack", (a) => a.id === "r");
    // Stands in for an alarm that runs late (an alarm is at least once, not on time): none is left to act.
    await runInDurableObject(env.ROOMS.get(env.ROOMS.idFromName(room)), (_room, state) => state.storage.deleteAlarm());
    await until(exp * 1000 + 100);
    expect(s.isClosed()).toBe(false);
    s.send({ type: "publish", data: "late", id: "late" });
    const closed = await Promise.race([s.closed, until(Date.now() + 1000).then(() => null)]);
    expect(closed).toMatchObject({ code: CloseCode.tokenExpired, reason: "token expired" });
    expect(s.frames.filter((f) => f.type === "message" || f.type === "error")).toEqual([]);
    watcher.send({ type: "publish", data: "marker", id: "m" });
    await watcher.next("message", (m) => m.id === "m");
    expect(watcher.frames.filter((f): f is MessageFrame => f.type === "message").map((m) => m.data)).toEqual(["marker"]);
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
