// A sharded room behaves like one room (SHARDED_ROOMS here: "giant-*:4,pair:2"): one gap-free
// seq however many shard objects its sockets are on, resume on any shard, direct across shards,
// room-wide presence, stats per shard, and no message lost when the root or a shard is evicted.
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { MessageFrame, RoomStats } from "../../../src/protocol";
import { MIN_BATCH_FANOUT } from "../../../src/room/outbox";
import { bannedAnswer, call } from "../../support/http";
import { refusalOn } from "../../support/shards";
import { connect, keepAlive, upgrade, type TestSocket } from "../../support/socket";
import { tokenFor } from "../../support/tokens";

const rootOf = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));
const shardOf = (room: string, i: number) => env.ROOMS.get(env.ROOMS.idFromName(`${room}#${i}`));

async function crowd(room: string, n: number, prefix = "u"): Promise<TestSocket[]> {
  const socks = await Promise.all(Array.from({ length: n }, async (_, i) => connect(room, { token: await tokenFor(`${prefix}${i}`, room) })));
  await Promise.all(socks.map((s) => s.next("welcome")));
  return socks;
}

async function stats(room: string): Promise<RoomStats> {
  const r = await call("GET", `/rooms/${room}/stats`, { token: await tokenFor("ops", room) });
  expect(r.status).toBe(200);
  return r.json as RoomStats;
}

const seqs = (s: TestSocket) => s.frames.filter((f): f is MessageFrame => f.type === "message").map((m) => m.seq);

/** The shard each socket is on, read from each shard's own sockets (by connection id). */
async function shardIndexes(room: string, socks: TestSocket[], count: number): Promise<number[]> {
  const where = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const ids = await runInDurableObject(shardOf(room, i), (_r, state) =>
      state.getWebSockets().map((ws) => (ws.deserializeAttachment() as { c: string }).c),
    );
    for (const id of ids) where.set(id, i);
  }
  return Promise.all(socks.map(async (s) => where.get((await s.next("welcome")).connectionId)!));
}

describe("a sharded room is one room", () => {
  it("spreads connections over its shards, and stats shows each shard and the total", async () => {
    const room = "giant-spread";
    const socks = await crowd(room, 40);
    const st = await stats(room);
    expect(st.connections).toBe(40);
    expect(st.shards).toHaveLength(4);
    expect(st.shards!.reduce((a, s) => a + s.connections, 0)).toBe(40);
    for (const s of st.shards!) expect(s.connections).toBeLessThanOrEqual(1.5 * (40 / 4) + 10);
    expect(new Set(await shardIndexes(room, socks, 4)).size).toBeGreaterThan(1);
    expect(st.users).toBe(40);
  });

  it("gives every client the same gap-free sequence, publishes from every shard and over HTTP, echo as ack", async () => {
    const room = "giant-order";
    const socks = await crowd(room, 12);
    const token = await tokenFor("server", room, ["publish"]);
    let n = 0;
    for (let round = 0; round < 3; round++) {
      for (const [i, s] of socks.entries()) s.send({ type: "publish", data: `s${i}.${round}`, id: `id-${i}-${round}` });
      const r = await call("POST", `/rooms/${room}/messages`, { token, body: { data: `http.${round}` } });
      expect(r.status).toBe(201);
      n += socks.length + 1;
    }
    for (const s of socks) await s.collect("message", n, 10_000);
    const expected = Array.from({ length: n }, (_, i) => i + 1);
    for (const s of socks) expect(seqs(s)).toEqual(expected);
    // each socket got its own echo (with its id) once
    for (const [i, s] of socks.entries()) {
      const mine = s.frames.filter((f) => f.type === "message" && f.id?.startsWith(`id-${i}-`));
      expect(mine).toHaveLength(3);
    }
    const texts = socks.map((s) => JSON.stringify(s.frames.filter((f) => f.type === "message")));
    expect(new Set(texts).size).toBe(1); // the very same frames everywhere
  });

  it("resumes on whichever shard the reconnect lands, replaying exactly what was missed", async () => {
    const room = "giant-resume";
    const [pub] = await crowd(room, 1, "pub");
    const tok = await tokenFor("reader", room, ["subscribe"]);
    for (let attempt = 0; attempt < 6; attempt++) {
      const r = await connect(room, { token: tok });
      const w = await r.next("welcome");
      pub!.send({ type: "publish", data: `live-${attempt}` });
      const live = await r.next("message");
      r.close();
      await r.closed;
      for (let k = 0; k < 3; k++) pub!.send({ type: "publish", data: `missed-${attempt}-${k}` });
      await pub!.next("message", (m) => m.data === `missed-${attempt}-2`);
      const back = await connect(room, { token: tok, query: { since: live.seq, epoch: w.epoch, resume: w.resume } });
      expect(await back.next("welcome")).toMatchObject({ recovered: true, seq: live.seq + 3 });
      expect((await back.collect("message", 3)).map((m) => m.data)).toEqual([0, 1, 2].map((k) => `missed-${attempt}-${k}`));
      back.close();
    }
  });

  it("delivers direct messages to a user on another shard, and not_found for an absent one", async () => {
    const room = "giant-direct";
    const socks = await crowd(room, 16);
    const where = await shardIndexes(room, socks, 4);
    const from = 0;
    const to = where.findIndex((w) => w !== where[from]);
    expect(to).toBeGreaterThan(0);
    socks[from]!.send({ type: "direct", to: `u${to}`, data: "psst", id: "d1" });
    expect(await socks[from]!.next("ack")).toMatchObject({ id: "d1" });
    expect(await socks[to]!.next("direct")).toMatchObject({ from: { id: `u${from}` }, data: "psst" });
    socks[from]!.send({ type: "direct", to: "nobody", data: "x", id: "d2" });
    expect(await socks[from]!.next("error", (e) => e.id === "d2")).toMatchObject({ code: "not_found" });
    // nobody else got it
    expect(socks.filter((s) => s.frames.some((f) => f.type === "direct"))).toHaveLength(1);
  });

  it("keeps presence room-wide: welcomes list everyone, joins and leaves reach every shard once", async () => {
    const room = "giant-presence";
    const first = await crowd(room, 8);
    const late = await connect(room, { token: await tokenFor("late", room) });
    const w = await late.next("welcome");
    // the room-wide list: everyone, on whatever shard
    await expect.poll(async () => (await call("GET", `/rooms/${room}/presence`, { token: await tokenFor("x", room) })).json.count).toBe(9);
    expect(w.presence.map((p) => p.id)).toContain("late");
    for (const s of first) await s.next("presence", (p) => p.event === "join" && p.user.id === "late");
    first[3]!.close();
    for (const s of [...first.slice(0, 3), ...first.slice(4), late]) {
      await s.next("presence", (p) => p.event === "leave" && p.user.id === "u3");
    }
    for (const s of first.slice(0, 3)) {
      const joins = s.frames.filter((f) => f.type === "presence" && f.event === "join" && f.user.id === "late");
      expect(joins).toHaveLength(1);
    }
    expect(late.frames.some((f) => f.type === "presence" && f.event === "join" && f.user.id === "late")).toBe(false);
  });

  it("repairs a gap: a message the root stored but never streamed reaches every shard before the next", async () => {
    const room = "giant-gap";
    const socks = await crowd(room, 8);
    socks[0]!.send({ type: "publish", data: "one" });
    for (const s of socks) await s.next("message", (m) => m.seq === 1);
    // As if the root died after storing seq 2 and before its stream call went out.
    await runInDurableObject(rootOf(room), (_r, state) => {
      const frame = JSON.stringify({ type: "message", seq: 2, ts: Date.now(), from: { id: "ghost", name: "ghost" }, data: "lost call" });
      state.storage.sql.exec(`INSERT INTO messages (seq, frame) VALUES (2, ?)`, frame);
    });
    await evictDurableObject(rootOf(room));
    socks[1]!.send({ type: "publish", data: "three" });
    for (const s of socks) {
      await s.next("message", (m) => m.seq === 3, 5000);
      expect(seqs(s)).toEqual([1, 2, 3]);
      expect(s.frames.find((f) => f.type === "message" && f.seq === 2)).toMatchObject({ data: "lost call" });
    }
  });

  it("loses and repeats nothing when the root or a shard is evicted mid-conversation", async () => {
    const room = "giant-evict";
    const socks = await crowd(room, 12);
    const publish = (k: number) => socks[k % socks.length]!.send({ type: "publish", data: k });
    for (let k = 0; k < 5; k++) publish(k);
    await evictDurableObject(rootOf(room));
    for (let k = 5; k < 10; k++) publish(k);
    await evictDurableObject(shardOf(room, 1), { webSockets: "hibernate" });
    await evictDurableObject(shardOf(room, 2), { webSockets: "hibernate" });
    for (let k = 10; k < 15; k++) publish(k);
    for (const s of socks) {
      await s.collect("message", 15, 10_000);
      expect(seqs(s)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    }
  });

  it("kicks a user off every shard (4403, one leave room-wide) and enforces the ban on every shard", async () => {
    const room = "giant-kick";
    const watchers = await crowd(room, 8);
    const others = await crowd(room, 8, "o");
    // Six tabs of one user: the kick must reach each shard the user is on.
    const troll = await Promise.all(Array.from({ length: 6 }, async () => connect(room, { token: await tokenFor("troll", room) })));
    await Promise.all(troll.map((t) => t.next("welcome")));
    expect(new Set(await shardIndexes(room, troll, 4)).size).toBeGreaterThan(1);
    for (const w of watchers) await w.next("presence", (p) => p.event === "join" && p.user.id === "troll");
    const admin = await tokenFor("mod", room, ["admin"]);
    const res = await call("POST", `/rooms/${room}/kick`, { token: admin, body: { user: "troll", banSec: 600, reason: "spam" } });
    expect(res.json).toEqual({ closed: 6 });
    for (const t of troll) expect(await t.closed).toEqual({ code: 4403, reason: "kicked: spam" });
    for (const w of [...watchers, ...others]) {
      await w.next("presence", (p) => p.event === "leave" && p.user.id === "troll");
      expect(w.frames.filter((f) => f.type === "presence" && f.event === "leave" && f.user.id === "troll")).toHaveLength(1);
    }
    // Every shard refuses: those that had their snapshot before the ban (from the kick), and
    // evicted ones (from a fresh snapshot). Each shard is asked, and the Worker's route once
    // (random upgrades alone would miss a shard about 1 time in 8).
    const refusals = async () => {
      for (let i = 0; i < 4; i++) expect(await refusalOn(room, i, "troll")).toEqual({ status: 403, code: "banned" });
      const viaWorker = await upgrade(room, { token: await tokenFor("troll", room) });
      expect(viaWorker.status).toBe(403);
      await viaWorker.text(); // an unread body keeps the shard's request open, and eviction waits for it
    };
    await refusals();
    for (let i = 0; i < 4; i++) await evictDurableObject(shardOf(room, i), { webSockets: "hibernate" });
    await refusals();
  });

  it("refuses a banned user on every HTTP route at the root (403 banned), delivering nothing to any shard, until the ban runs out", async () => {
    const room = "giant-ban-http";
    const watchers = (await crowd(room, 8)).map(keepAlive);
    expect(new Set(await shardIndexes(room, watchers, 4)).size).toBeGreaterThan(1);
    const troll = await tokenFor("troll", room);
    const tab = await connect(room, { token: troll });
    await tab.next("welcome");
    const admin = await tokenFor("mod", room, ["admin", "history"]);
    expect((await call("POST", `/rooms/${room}/kick`, { token: admin, body: { user: "troll", banSec: 2 } })).json).toEqual({ closed: 1 });
    expect((await tab.closed).code).toBe(4403);
    const answer = async (res: Promise<{ status: number; json: unknown; headers: Headers }>) => {
      const r = await res;
      return { status: r.status, body: r.json, retryAfter: r.headers.get("retry-after") };
    };
    const publish = () => call("POST", `/rooms/${room}/messages`, { token: troll, body: { data: "while banned" } });
    const history = () => call("GET", `/rooms/${room}/history`, { token: troll });
    const presence = () => call("GET", `/rooms/${room}/presence`, { token: troll });
    for (const res of [publish(), history(), presence()]) expect(await answer(res)).toEqual(bannedAnswer("troll", 2));
    // The refused publish took no seq and reached no shard: the next one is seq 1 everywhere.
    const server = await tokenFor("server", room, ["publish"]);
    expect((await call("POST", `/rooms/${room}/messages`, { token: server, body: { data: "after" } })).json.seq).toBe(1);
    for (const w of watchers) {
      await w.next("message", (m) => m.seq === 1);
      expect(w.frames.filter((f): f is MessageFrame => f.type === "message").map((m) => m.data)).toEqual(["after"]);
    }
    expect((await call("GET", `/rooms/${room}/history`, { token: admin })).json.messages.map((m: MessageFrame) => m.data)).toEqual(["after"]);

    await expect.poll(async () => (await history()).status, { timeout: 5_000, interval: 250 }).toBe(200);
    expect((await presence()).status).toBe(200);
    expect((await publish()).status).toBe(201);
    for (const w of watchers) expect((await w.next("message", (m) => m.seq === 2)).from.id).toBe("troll");
  }, 10_000);

  it("deletes a message on every shard: the frame reaches all, resumes carry its delete in its place, repairs skip it", async () => {
    const room = "giant-delete";
    const socks = await crowd(room, 8);
    const w = await socks[0]!.next("welcome");
    for (const data of ["one", "two", "three"]) socks[0]!.send({ type: "publish", data });
    for (const s of socks) await s.next("message", (m) => m.seq === 3);
    const admin = await tokenFor("mod", room, ["admin", "history"]);
    expect((await call("DELETE", `/rooms/${room}/messages/2`, { token: admin })).json).toEqual({ deleted: 2 });
    for (const s of socks) expect(await s.next("delete")).toEqual({ type: "delete", seq: 2 });
    // Resumes answered from a shard's tail, on whichever shard they land.
    for (let k = 0; k < 6; k++) {
      const back = await connect(room, { token: await tokenFor("u0", room), query: { since: 1, epoch: w.epoch, resume: w.resume } });
      expect(await back.next("welcome")).toMatchObject({ recovered: true, seq: 3 });
      await back.next("message", (m) => m.seq === 3);
      expect(seqs(back)).toEqual([3]);
      const replay = back.frames.flatMap((f) => (f.type === "message" || f.type === "delete" ? [`${f.type} ${f.seq}`] : []));
      expect(replay).toEqual(["delete 2", "message 3"]);
      back.close();
    }
    const page = await call("GET", `/rooms/${room}/history`, { token: admin });
    expect(page.json.messages.map((m: MessageFrame) => m.seq)).toEqual([3, 1]);
    // A gap over a deleted message: the root stored seq 4, deleted it, and its stream call was
    // lost; the shards' repair must count the deleted seq, not shift the next message into it.
    await runInDurableObject(rootOf(room), (_r, state) => {
      const frame = JSON.stringify({ type: "message", seq: 4, ts: Date.now(), from: { id: "ghost", name: "ghost" }, data: "lost" });
      state.storage.sql.exec(`INSERT INTO messages (seq, frame) VALUES (4, ?)`, frame);
    });
    await evictDurableObject(rootOf(room));
    expect((await call("DELETE", `/rooms/${room}/messages/4`, { token: admin })).status).toBe(200);
    socks[1]!.send({ type: "publish", data: "five" });
    for (const s of socks) {
      await s.next("message", (m) => m.seq === 5, 5000);
      expect(seqs(s)).toEqual([1, 2, 3, 5]);
    }
  });

  it("sends the messages of one stream call to a wide shard's sockets together, as an unsharded room batches a burst", async () => {
    // Two shards and enough sockets that each has at least MIN_BATCH_FANOUT of them.
    const room = "pair";
    const socks = await crowd(room, 2 * MIN_BATCH_FANOUT + 24);
    const where = await shardIndexes(room, socks, 2);
    for (const shard of [0, 1]) expect(where.filter((w) => w === shard).length).toBeGreaterThanOrEqual(MIN_BATCH_FANOUT);
    // the joins' announcements have gone out and every shard's outbox has drained
    socks[0]!.send({ type: "publish", data: "settle" });
    for (const s of socks) await s.next("message", (m) => m.data === "settle");
    await new Promise((r) => setTimeout(r, 50));
    const before = socks.map((s) => s.received());
    // A burst the root sequences in one turn reaches each shard as one stream call.
    const BURST = 10;
    await runInDurableObject(rootOf(room), (root) => {
      // A room without onPublish publishes synchronously: the burst is one turn.
      for (let k = 0; k < BURST; k++) void root.publish(room, { id: "server", name: "server" }, `burst-${k}`);
    });
    for (const s of socks) await s.collect("message", BURST + 1);
    for (const [i, s] of socks.entries()) {
      expect(seqs(s)).toEqual(Array.from({ length: BURST + 1 }, (_, k) => k + 1));
      // one WebSocket message per frame would cost the shard BURST sends per socket
      expect(s.received() - before[i]!, `WebSocket messages for ${BURST} frames`).toBe(1);
    }
  });

  it("takes no harm from a resume whose since is past the room's seq: recovered:false, and delivery goes on", async () => {
    const room = "giant-bogus-since";
    const socks = await crowd(room, 12);
    const w = await socks[0]!.next("welcome");
    socks[0]!.send({ type: "publish", data: "one" });
    for (const s of socks) await s.next("message", (m) => m.seq === 1);
    // every shard is asked to catch up to a seq the room never reached
    for (let k = 0; k < 8; k++) {
      const liar = await connect(room, { token: await tokenFor("liar", room), query: { since: 1_000_000, epoch: w.epoch } });
      expect(await liar.next("welcome")).toMatchObject({ recovered: false, seq: 1 });
      liar.close();
    }
    socks[1]!.send({ type: "publish", data: "two" });
    for (const s of socks) {
      await s.next("message", (m) => m.seq === 2);
      expect(seqs(s)).toEqual([1, 2]);
    }
  });

  it("forgets the members of shards beyond the configured count (SHARDED_ROOMS lowered in a deploy)", async () => {
    const room = "giant-fewer";
    await crowd(room, 4);
    const presence = async () => (await call("GET", `/rooms/${room}/presence`, { token: await tokenFor("x", room) })).json as { count: number };
    expect((await presence()).count).toBe(4);
    // as left by an earlier deploy that had 8 shards: shard 7 can no longer be reached to report
    await runInDurableObject(rootOf(room), (_r, state) => {
      state.storage.sql.exec(`INSERT INTO shard_members (shard, uid, name, conns) VALUES (7, 'ghost', 'ghost', 1)`);
    });
    await evictDurableObject(rootOf(room));
    expect((await presence()).count).toBe(4);
  });

  it("routes a room SHARDED_ROOMS does not name to one object, as before", async () => {
    const room = "plain-room";
    await crowd(room, 3);
    const st = await stats(room);
    expect(st.shards).toBeUndefined();
    expect(st.connections).toBe(3);
  });
});
