// Webhooks end to end inside workerd: rooms write their events to the outbox, the real queue
// (miniflare's, from wrangler.toml) carries them to the Worker's consumer, and the consumer POSTs
// them to the receiver vitest.config.ts stands up for this project (its outbound handler), which
// checks each one with the README's own receiver code.
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { WebhookBody, type WebhookEvent } from "../../../src/protocol";
import { signature, SIGNATURE_HEADER } from "../../../src/worker/webhooks";
import { call } from "../../support/http";
import { connect } from "../../support/socket";
import { tokenFor } from "../../support/tokens";

const SECRET = String(env.WEBHOOK_SECRET);

interface Delivery {
  signature: string | null;
  body: string;
  /** Whether the README's receiver code, run by the receiver on arrival, took the signature. */
  verified: boolean;
  status: number;
  at: number;
}

/** The deliveries holding `room`'s events; every one must pass the README's receiver check. */
async function deliveries(room: string): Promise<Delivery[]> {
  const all = await (await fetch(`https://hooks.test/received?room=${room}`)).json<Delivery[]>();
  const refused = all.find((d) => !d.verified);
  if (refused) throw new Error(`a delivery the README's receiver refuses (answered 401), signed ${refused.signature}`);
  return all;
}

/** Whether the README's receiver check passes this body and signature header (the receiver runs it, keeping nothing). */
async function passes(body: string, signatureHeader: string): Promise<boolean> {
  return (await fetch("https://hooks.test/verify", { method: "POST", headers: { [SIGNATURE_HEADER]: signatureHeader }, body })).json<boolean>();
}

/** What a receiver keeps: the room's events from the 2xx-answered deliveries, once per id, in arrival order. */
async function accepted(room: string): Promise<WebhookEvent[]> {
  const seen = new Set<string>();
  const out: WebhookEvent[] = [];
  for (const d of await deliveries(room)) {
    if (d.status >= 300) continue;
    for (const e of WebhookBody.parse(JSON.parse(d.body)).events) {
      if (e.room !== room || seen.has(e.id)) continue;
      seen.add(e.id);
      out.push(e);
    }
  }
  return out;
}

const until = <T>(get: () => Promise<T>, ok: (v: T) => boolean, what: string, timeout = 15_000, show = (v: T) => JSON.stringify(v).slice(0, 600)) =>
  vi.waitFor(
    async () => {
      const v = await get();
      if (!ok(v)) throw new Error(`timed out waiting for ${what}: ${show(v)}`);
      return v;
    },
    { timeout, interval: 50 },
  );

const brief = (e: WebhookEvent) =>
  e.type === "message" || e.type === "delete"
    ? `${e.type} ${e.seq}`
    : e.type === "join" || e.type === "leave"
      ? `${e.type} ${e.user.id}`
      : e.type === "kick"
        ? `kick ${e.user}`
        : e.type;

/**
 * Puts `ms` in front of every queue send, the room's included (its Durable Object runs in this
 * isolate, on the same Queue prototype): a local send answers in ~1 ms, a production one in
 * tens of ms (Cloudflare quotes a ~60 ms median), and a drain's speed is per round trip. Sends
 * (send or sendBatch calls, counted from 0) that `refuse` picks fail instead, as a queue over
 * its limits does. `calls` lists each call's message sizes in bytes.
 */
function slowQueue(ms: number, refuse: (nth: number) => boolean = () => false) {
  const proto = Object.getPrototypeOf(env.WEBHOOKS) as Queue<string>;
  const calls: number[][] = [];
  let refused = 0;
  const utf8 = new TextEncoder();
  const slowed = (name: "send" | "sendBatch") => {
    const real = Object.getOwnPropertyDescriptor(proto, name)!.value as (...args: unknown[]) => Promise<unknown>;
    return vi.spyOn(proto, name).mockImplementation(async function (this: Queue<string>, ...args: unknown[]) {
      const bodies = name === "send" ? [args[0] as string] : [...(args[0] as MessageSendRequest<string>[])].map((m) => m.body);
      const nth = calls.push(bodies.map((b) => utf8.encode(b).length)) - 1;
      await new Promise((resolve) => setTimeout(resolve, ms));
      if (refuse(nth)) throw new Error(`Queue ${name} failed: refused by the test (${++refused})`);
      return real.apply(this, args);
    } as never);
  };
  const spies = [slowed("send"), slowed("sendBatch")];
  return { calls, refused: () => refused, restore: () => spies.forEach((s) => s.mockRestore()) };
}

/** Publishes `count` messages of a little over `bytes` from `sender` over HTTP, two at a time; returns their data by seq. */
async function burst(room: string, sender: string, count: number, bytes: number): Promise<Map<number, string>> {
  const token = await tokenFor(sender, room, ["publish"]);
  const published = new Map<number, string>();
  let next = 0;
  const one = async () => {
    for (let i = next++; i < count; i = next++) {
      const data = `${sender} ${i} ${"x".repeat(bytes)}`;
      const r = await call("POST", `/rooms/${room}/messages`, { token, body: { data } });
      expect(r.status).toBe(201);
      published.set(r.json.seq, data);
    }
  };
  await Promise.all([one(), one()]);
  return published;
}

/** The message events, by seq, are exactly what was published: each once, with its data. */
function expectPublished(events: WebhookEvent[], published: Map<number, string>): void {
  const messages = events.flatMap((e) => (e.type === "message" ? [e] : [])).sort((a, b) => a.seq - b.seq);
  expect(messages.map((e) => [e.seq, e.data])).toEqual([...published].sort(([a], [b]) => a - b));
}

describe("webhooks", () => {
  it("tells the receiver, signed and in order: occupied, join, message, delete, kick, leave, vacated", { timeout: 30_000 }, async () => {
    const room = "hooks-life";
    const alice = await connect(room, { token: await tokenFor("alice", room, ["*"], "Alice") });
    await alice.next("welcome");
    const bob = await connect(room, { token: await tokenFor("bob", room) });
    await bob.next("welcome");
    alice.send({ type: "publish", data: { text: "hi" }, id: "p1" });
    alice.send({ type: "publish", data: "oops" });
    await bob.collect("message", 2);
    const admin = await tokenFor("ops", room, ["admin"]);
    expect((await call("DELETE", `/rooms/${room}/messages/2`, { token: admin })).status).toBe(200);
    const kick = await call("POST", `/rooms/${room}/kick`, { token: admin, body: { user: "bob", banSec: 60, reason: "spam" } });
    expect(kick.json).toEqual({ closed: 1 });
    alice.close(1000);
    await alice.closed;

    const events = await until(
      () => accepted(room),
      (e) => e.some((x) => x.type === "vacated"),
      "vacated",
    );
    expect(events.map(brief)).toEqual([
      "occupied",
      "join alice",
      "join bob",
      "message 1",
      "message 2",
      "delete 2",
      "leave bob",
      "kick bob",
      "leave alice",
      "vacated",
    ]);
    expect(events[1]).toMatchObject({ type: "join", room, user: { id: "alice", name: "Alice" } });
    expect(events[3]).toMatchObject({ type: "message", seq: 1, from: { id: "alice", name: "Alice" }, data: { text: "hi" }, clientId: "p1" });
    expect(events[4]).not.toHaveProperty("clientId");
    expect(events[7]).toMatchObject({ type: "kick", user: "bob", closed: 1, banSec: 60, reason: "spam" });
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    for (let i = 1; i < events.length; i++) expect(events[i]!.ts).toBeGreaterThanOrEqual(events[i - 1]!.ts);

    // Every delivery passed the README's check on arrival (deliveries() holds them to it); the
    // same check refuses an altered body, and a right HMAC over a `t` that is not now in unix
    // seconds: milliseconds (what Date.now() gives), or older than its 300 s tolerance.
    const [first] = await deliveries(room);
    const { body } = first!;
    expect(await passes(body, first!.signature!)).toBe(true);
    expect(await passes(body.replace('"hooks-life"', '"hooks-lif3"'), first!.signature!)).toBe(false);
    const now = Math.floor(Date.now() / 1000);
    expect(await passes(body, await signature(SECRET, Date.now(), body))).toBe(false);
    expect(await passes(body, await signature(SECRET, now - 301, body))).toBe(false);
    expect(await passes(body, await signature(SECRET, now - 290, body))).toBe(true);
  });

  it("retries a receiver that answers 500 with backoff, until it has every event once (same ids)", { timeout: 40_000 }, async () => {
    const room = "hooks-retry";
    await fetch(`https://hooks.test/fail?room=${room}&n=2`);
    const token = await tokenFor("server", room, ["publish"]);
    for (let i = 0; i < 5; i++) expect((await call("POST", `/rooms/${room}/messages`, { token, body: { data: i } })).status).toBe(201);

    const events = await until(
      () => accepted(room),
      (e) => e.length === 5,
      "all five after the failures",
      30_000,
    );
    expect(events.map((e) => (e.type === "message" ? e.data : null))).toEqual([0, 1, 2, 3, 4]);
    const tries = await deliveries(room);
    expect(tries.map((d) => d.status).slice(0, 3)).toEqual([500, 500, 204]);
    // Backoff: 2 s, then 4 s (retryDelaySec), not a hot loop.
    expect(tries[1]!.at - tries[0]!.at).toBeGreaterThanOrEqual(1_900);
    expect(tries[2]!.at - tries[1]!.at).toBeGreaterThanOrEqual(3_900);
    // The failed attempts carried the same events, with the same ids.
    const ids = (d: Delivery) => WebhookBody.parse(JSON.parse(d.body)).events.map((e) => e.id);
    expect(ids(tries[0]!).every((id) => ids(tries[2]!).includes(id))).toBe(true);
  });

  it("sends a message too large for a queue message without its data, marked dataTooLarge", { timeout: 30_000 }, async () => {
    const room = "hooks-large";
    const token = await tokenFor("server", room, ["publish"]);
    const big = "x".repeat(150_000);
    expect((await call("POST", `/rooms/${room}/messages`, { token, body: { data: big } })).status).toBe(201);
    expect((await call("POST", `/rooms/${room}/messages`, { token, body: { data: "small" } })).status).toBe(201);
    const events = await until(
      () => accepted(room),
      (e) => e.length === 2,
      "both",
    );
    expect(events[0]).toMatchObject({ type: "message", seq: 1, dataTooLarge: true });
    expect(events[0]).not.toHaveProperty("data");
    expect(events[1]).toMatchObject({ type: "message", seq: 2, data: "small" });
  });

  it("tells the leaves a restart swallowed: sockets gone without a close event still leave, then vacate", { timeout: 30_000 }, async () => {
    const room = "hooks-restart";
    const alice = await connect(room, { token: await tokenFor("alice", room) });
    await alice.next("welcome");
    await until(
      () => accepted(room),
      (e) => e.length === 2,
      "occupied and join",
    );
    // A deploy or crash: the sockets are cut and the next instance gets no close events.
    const stub = env.ROOMS.get(env.ROOMS.idFromName(room));
    await evictDurableObject(stub, { webSockets: "close" });
    const back = await connect(room, { token: await tokenFor("bob", room) });
    await back.next("welcome");
    const events = await until(
      () => accepted(room),
      (e) => e.length >= 6,
      "leave, vacated, then bob",
    );
    // (Bob's own idle leave may follow: the pool's IDLE_TIMEOUT_SEC is 2.)
    expect(events.slice(0, 6).map(brief)).toEqual(["occupied", "join alice", "leave alice", "vacated", "occupied", "join bob"]);
  });

  it("a sharded room tells each join, leave and message once, from its root, whatever shard the sockets are on", { timeout: 30_000 }, async () => {
    const room = "giant-hooks";
    const sockets = [];
    for (const user of ["u1", "u2", "u3", "u4", "u1"]) {
      const s = await connect(room, { token: await tokenFor(user, room) });
      await s.next("welcome");
      sockets.push(s);
    }
    sockets[1]!.send({ type: "publish", data: "from a shard" });
    await sockets[0]!.next("message");
    for (const s of sockets) s.close(1000);
    const events = await until(
      () => accepted(room),
      (e) => e.some((x) => x.type === "vacated"),
      "vacated",
    );
    const kinds = events.map(brief);
    expect(kinds.filter((k) => k.startsWith("join")).sort()).toEqual(["join u1", "join u2", "join u3", "join u4"]);
    expect(kinds.filter((k) => k.startsWith("leave")).sort()).toEqual(["leave u1", "leave u2", "leave u3", "leave u4"]);
    expect(kinds.filter((k) => k.startsWith("message"))).toEqual(["message 1"]);
    expect(kinds[0]).toBe("occupied");
    expect(kinds.at(-1)).toBe("vacated");
    expect(kinds.filter((k) => k === "occupied" || k === "vacated")).toHaveLength(2);
  });

  it("keeps up with a room publishing 32 KB messages faster than one queue message per round trip carries", { timeout: 60_000 }, async () => {
    // 200 ms a send: one 120 KB queue message per round trip would carry ~15 of these events a
    // second, while this pool publishes them at ~50-190 a second; sendBatch calls of up to
    // 256 KB, SENDS_PER_ROUND at a time, carry ~140 a second.
    const queue = slowQueue(200);
    try {
      const room = "hooks-flood";
      // Two senders of PUBLISH_BURST (150) each: no waiting for refills.
      const [a, b] = await Promise.all([burst(room, "feed-a", 150, 32_768), burst(room, "feed-b", 150, 32_768)]);
      const published = new Map([...a, ...b]);
      // After the last publish: the round trips still to go, and the consumer's 1 s batch window.
      const deadline = 6_000;
      const events = await until(
        () => accepted(room),
        (e) => e.length === published.size,
        `all ${published.size} within ${deadline} ms of the last publish`,
        deadline,
        (e) => `${e.length} so far`,
      );
      // In order as documented: one room's events within a body in the order they happened, and
      // by seq every message once, with its data.
      for (const d of await deliveries(room)) {
        const seqs = WebhookBody.parse(JSON.parse(d.body)).events.flatMap((e) => (e.room === room && e.type === "message" ? [e.seq] : []));
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      }
      expectPublished(events, published);
      // Within Cloudflare's limits, which the local queue checks more loosely: 128 KB a message,
      // 100 messages and 256 KB a sendBatch call, each message counting ~100 bytes of metadata.
      for (const sizes of queue.calls) {
        expect(sizes.length).toBeLessThanOrEqual(100);
        expect(Math.max(...sizes) + 100).toBeLessThanOrEqual(128_000);
        expect(sizes.reduce((a, b) => a + b + 100, 0)).toBeLessThanOrEqual(256_000);
      }
    } finally {
      queue.restore();
    }
  });

  it("loses nothing when the queue refuses one of a round's sendBatch calls: it and the calls after it go again", { timeout: 40_000 }, async () => {
    // Slow sends, so events pile up into rounds of several calls; the fourth call overall is refused.
    const queue = slowQueue(200, (nth) => nth === 3);
    try {
      const room = "hooks-refused";
      const published = await burst(room, "server", 60, 32_768);
      // What the refused round left is sent with the next event's drain, or else on the room's alarm (10 s).
      const events = await until(
        () => accepted(room),
        (e) => e.length === published.size,
        "every message, the refused ones again",
        30_000,
        (e) => `${e.length} so far`,
      );
      expect(queue.refused()).toBe(1);
      expectPublished(events, published);
    } finally {
      queue.restore();
    }
  });
});
