// GET /connect: one socket for many rooms, relayed by the Worker (worker/connect.ts). Each room
// sees an ordinary member, so every per-room guarantee of a direct socket must hold per
// subscription: order, capabilities, bans, resume, stats; and a refusal ends one subscription only.
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { call, fill } from "../support/http";
import { connectMux, connectUpgrade, type MuxSocket } from "../support/mux";
import { token } from "../support/tokens";

const stubFor = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));
const userToken = (sub: string, rooms: Record<string, string[]>, extra: object = {}) => token({ sub, rooms, ...extra });

/** Pings the connection every 400 ms until `stop` (the pool's IDLE_TIMEOUT_SEC is 2). */
function keepAlive(m: MuxSocket): () => void {
  const timer = setInterval(() => m.send("ping"), 400);
  return () => clearInterval(timer);
}

describe("GET /connect", () => {
  it("answers 401 without a token, 403 for a foreign origin, and 426 without an upgrade once both pass", async () => {
    expect((await connectUpgrade(undefined)).status).toBe(401);
    const good = await userToken("alice", { "c-*": ["*"] });
    const foreign = await connectUpgrade(good, { headers: { origin: "https://evil.example" } });
    expect([foreign.status, (await foreign.json<{ error: { code: string } }>()).error.code]).toEqual([403, "forbidden"]);
    const probe = await call("GET", `/connect?token=${good}`);
    expect([probe.status, probe.json.error.code]).toEqual([426, "upgrade_required"]);
    const m = await connectMux(good);
    expect(await m.nextControl("connected")).toMatchObject({ user: { id: "alice" }, maxRooms: 32 });
    m.close();
  });

  it("carries three rooms over one socket, each room's messages on its own subscription in its seq order", async () => {
    const rooms = ["c-order-a", "c-order-b", "c-order-c"];
    const m = await connectMux(await userToken("alice", { "c-order-*": ["subscribe"] }));
    rooms.forEach((room, i) => m.subscribe(i + 1, room));
    for (let i = 0; i < 3; i++) expect(await m.next(i + 1, "welcome")).toMatchObject({ room: rooms[i], seq: 0 });
    // Interleaved: 5 rounds of one publish per room.
    for (let round = 0; round < 5; round++) for (const room of rooms) await fill(room, 1, round);
    for (let i = 0; i < 3; i++) {
      const got = await m.collect(i + 1, "message", 5);
      expect(got.map((f) => [f.seq, f.data])).toEqual([0, 1, 2, 3, 4].map((n) => [n + 1, n]));
    }
    // Nothing crossed over: each subscription holds its welcome and its five messages only.
    for (let i = 0; i < 3; i++) expect(m.frames(i + 1)).toHaveLength(6);
    m.close();
  });

  it("checks each frame against its own room's capabilities: publish where granted, forbidden where not", async () => {
    const m = await connectMux(await userToken("alice", { "c-cap-rw": ["subscribe", "publish"], "c-cap-ro": ["subscribe"] }));
    m.subscribe(1, "c-cap-rw");
    m.subscribe(2, "c-cap-ro");
    await m.next(1, "welcome");
    await m.next(2, "welcome");
    m.toRoom(1, { type: "publish", data: "hi", id: "p1" });
    m.toRoom(2, { type: "publish", data: "hi", id: "p2" });
    expect(await m.next(1, "message", (f) => f.id === "p1")).toMatchObject({ seq: 1, data: "hi", from: { id: "alice" } });
    expect(await m.next(2, "error", (f) => f.id === "p2")).toMatchObject({ code: "forbidden" });
    expect((await call("GET", "/rooms/c-cap-ro/stats", { token: await userToken("ops", { "c-cap-ro": ["admin"] }) })).json.seq).toBe(0);
    m.close();
  });

  it("refuses a room the token lacks on its subscription only; the other rooms go on", async () => {
    const m = await connectMux(await userToken("alice", { "c-ref-ok": ["subscribe"], "c-ref-no": ["history"] }));
    m.subscribe(1, "c-ref-ok");
    m.subscribe(2, "c-ref-no");
    m.subscribe(3, "bad name!");
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 2)).toMatchObject({ room: "c-ref-no", code: "forbidden" });
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 3)).toMatchObject({ code: "bad_request" });
    await m.next(1, "welcome");
    await fill("c-ref-ok", 1);
    expect(await m.next(1, "message")).toMatchObject({ seq: 1 });
    m.close();
  });

  it("refuses a banned user's subscribe with banned, and a kick ends that room's subscription with 4403 only", async () => {
    const admin = await userToken("ops", { "c-ban-*": ["admin"] });
    expect((await call("POST", "/rooms/c-ban-1/kick", { token: admin, body: { user: "troll", banSec: 60 } })).status).toBe(200);
    const m = await connectMux(await userToken("troll", { "c-ban-*": ["subscribe"] }));
    m.subscribe(1, "c-ban-1");
    m.subscribe(2, "c-ban-2");
    m.subscribe(3, "c-ban-3");
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 1)).toMatchObject({ code: "banned" });
    await m.next(2, "welcome");
    await m.next(3, "welcome");
    expect((await call("POST", "/rooms/c-ban-2/kick", { token: admin, body: { user: "troll", reason: "spam" } })).json).toEqual({ closed: 1 });
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 2)).toMatchObject({ room: "c-ban-2", close: 4403 });
    await fill("c-ban-3", 1);
    expect(await m.next(3, "message")).toMatchObject({ seq: 1 });
    m.close();
  });

  it("refuses the subscribe past MAX_ROOMS_PER_CONNECTION (32 here) with too_many_rooms, and takes one again after a leave", async () => {
    const m = await connectMux(await userToken("alice", { "c-max-*": ["subscribe"] }));
    for (let i = 1; i <= 33; i++) m.subscribe(i, `c-max-${i}`);
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 33, 10_000)).toMatchObject({ code: "too_many_rooms" });
    for (let i = 1; i <= 32; i++) await m.next(i, "welcome", undefined, 10_000);
    m.send({ type: "unsubscribe", sub: 1 });
    await m.nextControl("unsubscribed", (f) => f.sub === 1);
    m.subscribe(34, "c-max-33");
    expect(await m.next(34, "welcome")).toMatchObject({ room: "c-max-33" });
    m.close();
  });

  it("unsubscribe stops delivery for that room only", async () => {
    const m = await connectMux(await userToken("alice", { "c-leave-*": ["subscribe"] }));
    m.subscribe(1, "c-leave-a");
    m.subscribe(2, "c-leave-b");
    await m.next(1, "welcome");
    await m.next(2, "welcome");
    m.send({ type: "unsubscribe", sub: 1 });
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 1)).toEqual({ type: "unsubscribed", sub: 1, room: "c-leave-a" });
    await fill("c-leave-a", 1);
    await fill("c-leave-b", 1);
    await m.next(2, "message");
    expect(m.frames(1).filter((f) => f.type === "message")).toEqual([]);
    // The room counts the member gone.
    const stats = await call("GET", "/rooms/c-leave-a/stats", { token: await userToken("ops", { "c-leave-a": ["admin"] }) });
    expect(stats.json.connections).toBe(0);
    m.close();
  });

  it("resumes a subscription from its since and epoch: the replay, then live", async () => {
    const room = "c-resume";
    await fill(room, 3);
    const first = await connectMux(await userToken("alice", { [room]: ["*"] }));
    first.subscribe(1, room);
    const welcome = await first.next(1, "welcome");
    first.close();
    await fill(room, 2, 3);
    const m = await connectMux(await userToken("alice", { [room]: ["*"] }));
    m.subscribe(7, room, { since: 3, epoch: welcome.epoch, resume: welcome.resume });
    expect(await m.next(7, "welcome")).toMatchObject({ recovered: true, seq: 5 });
    const replay = await m.collect(7, "message", 2);
    expect(replay.map((f) => f.seq)).toEqual([4, 5]);
    m.close();
  });

  it("counts a member over the connection as one of the room's connections, in stats and presence", async () => {
    const room = "c-count";
    const m = await connectMux(await userToken("alice", { [room]: ["subscribe"] }, { name: "Alice" }));
    m.subscribe(1, room);
    await m.next(1, "welcome");
    const ops = await userToken("ops", { [room]: ["admin", "subscribe"] });
    expect((await call("GET", `/rooms/${room}/stats`, { token: ops })).json).toMatchObject({ connections: 1, users: 1 });
    expect((await call("GET", `/rooms/${room}/presence`, { token: ops })).json).toMatchObject({
      users: [{ id: "alice", name: "Alice", connections: 1 }],
    });
    m.close();
  });

  it("keeps its rooms past IDLE_TIMEOUT_SEC while pinged (the Worker pings each room), and closes with 4408 once silent", async () => {
    const m = await connectMux(await userToken("alice", { "c-idle-*": ["subscribe"] }));
    const stop = keepAlive(m);
    m.subscribe(1, "c-idle-a");
    m.subscribe(2, "c-idle-b");
    await m.next(1, "welcome");
    await m.next(2, "welcome");
    // Three idle windows of the rooms (2 s each) with no room frame from the client, only pings.
    await new Promise((r) => setTimeout(r, 6000));
    expect(m.control.filter((f) => f.type === "unsubscribed")).toEqual([]);
    await fill("c-idle-b", 1);
    await m.next(2, "message");
    stop();
    expect((await m.closed).code).toBe(4408);
  }, 20_000);

  it("applies a refresh to every room: acked with the new expiry, and a room the new token lacks ends with 4403", async () => {
    const m = await connectMux(await userToken("alice", { "c-fresh-a": ["subscribe"], "c-fresh-b": ["subscribe"] }));
    m.subscribe(1, "c-fresh-a");
    m.subscribe(2, "c-fresh-b");
    await m.next(1, "welcome");
    await m.next(2, "welcome");
    const exp = Math.floor(Date.now() / 1000) + 7200;
    m.send({ type: "refresh", token: await userToken("alice", { "c-fresh-a": ["subscribe"] }, { exp }), id: "f1" });
    expect(await m.nextControl("ack")).toEqual({ type: "ack", id: "f1", exp });
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 2)).toMatchObject({ close: 4403 });
    // The room the new token keeps goes on.
    await fill("c-fresh-a", 1);
    await m.next(1, "message");
    // The connection itself now refuses what the new token lacks.
    m.subscribe(3, "c-fresh-b");
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 3)).toMatchObject({ code: "forbidden" });
    m.send({ type: "refresh", token: await userToken("mallory", { "c-fresh-a": ["subscribe"] }), id: "f2" });
    expect(await m.nextControl("error", (f) => f.id === "f2")).toMatchObject({ code: "unauthorized" });
    m.close();
  });

  it("closes the connection with 4401 when its token expires without a refresh", async () => {
    const m = await connectMux(await userToken("alice", { "c-exp": ["subscribe"] }, { exp: Math.floor(Date.now() / 1000) + 2 }));
    const stop = keepAlive(m);
    m.subscribe(1, "c-exp");
    await m.next(1, "welcome");
    expect((await m.closed).code).toBe(4401);
    stop();
  }, 10_000);

  it("keeps a subscription across its room's hibernation: the room wakes for the next message and delivers it", async () => {
    const room = "c-hib";
    const m = await connectMux(await userToken("alice", { [room]: ["subscribe", "publish"] }));
    m.subscribe(1, room);
    await m.next(1, "welcome");
    const ops = await userToken("ops", { [room]: ["admin"] });
    const before = (await call("GET", `/rooms/${room}/stats`, { token: ops })).json.starts as number;
    await evictDurableObject(stubFor(room), { webSockets: "hibernate" });
    m.toRoom(1, { type: "publish", data: "after", id: "a1" });
    expect(await m.next(1, "message", (f) => f.id === "a1")).toMatchObject({ seq: 1, data: "after" });
    expect((await call("GET", `/rooms/${room}/stats`, { token: ops })).json).toMatchObject({ starts: before + 1, connections: 1 });
    m.close();
  });

  it("answers bad frames with an error and keeps the connection", async () => {
    const m = await connectMux(await userToken("alice", { "c-bad": ["subscribe"] }));
    m.send("not json");
    expect(await m.nextControl("error")).toMatchObject({ code: "bad_request", message: "frame is not JSON" });
    m.toRoom(9, { type: "publish", data: 1 });
    expect(await m.nextControl("error", (f) => f.message.includes("no subscription 9"))).toMatchObject({ code: "bad_request" });
    m.subscribe(1, "c-bad");
    m.subscribe(1, "c-bad");
    expect(await m.nextControl("error", (f) => f.message.includes("in use"))).toMatchObject({ code: "bad_request" });
    m.send({ type: "subscribe", sub: -1, room: "c-bad" });
    expect(await m.nextControl("error", (f) => f.message.includes("sub"))).toMatchObject({ code: "bad_request" });
    expect(await m.next(1, "welcome")).toMatchObject({ room: "c-bad" });
    m.close();
  });
});
