// The HTTP side of a room: server publish (with idempotency), history pages, stats.
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { FLUSH_AFTER_MS } from "../../src/room/counters";
import { call, fill } from "../support/http";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

const stubFor = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));

describe("POST /rooms/:room/messages", () => {
  it("publishes from the token's identity with the next seq, delivered to subscribers", async () => {
    const room = "http-publish";
    const sub = await connect(room, { token: await tokenFor("sub", room) });
    const { epoch } = await sub.next("welcome");
    const token = await tokenFor("svc", room, ["publish"], "Billing Bot");
    const res = await call("POST", `/rooms/${room}/messages`, { token, body: { data: { total: 3 } } });
    expect(res.status).toBe(201);
    expect(res.json).toEqual({ seq: 1, epoch });
    expect(await sub.next("message")).toMatchObject({ seq: 1, data: { total: 3 }, from: { id: "svc", name: "Billing Bot" } });
  });

  it("returns the first result for a repeated Idempotency-Key and publishes nothing", async () => {
    const room = "http-idem";
    const sub = await connect(room, { token: await tokenFor("sub", room) });
    await sub.next("welcome");
    const token = await tokenFor("svc", room, ["publish"]);
    const post = (key: string, data: unknown) =>
      call("POST", `/rooms/${room}/messages`, { token, body: { data }, headers: { "idempotency-key": key } });
    const first = await post("order-42", "once");
    const again = await post("order-42", "twice?");
    const other = await post("order-43", "second");
    expect(first.status).toBe(201);
    expect(again.json).toEqual(first.json);
    expect(other.json.seq).toBe(first.json.seq + 1);
    const msgs = await sub.collect("message", 2);
    await new Promise((r) => setTimeout(r, 50));
    expect(sub.frames.filter((f) => f.type === "message").map((m) => m.type === "message" && m.data)).toEqual(["once", "second"]);
    expect(msgs.map((m) => m.seq)).toEqual([1, 2]);
    // keys are remembered across an eviction (they live in the room's storage)
    await evictDurableObject(stubFor(room), { webSockets: "hibernate" });
    expect((await post("order-42", "after eviction")).json).toEqual(first.json);
  });

  it("scopes idempotency keys to the publisher", async () => {
    const room = "http-idem-scope";
    const a = await tokenFor("svc-a", room, ["publish"]);
    const b = await tokenFor("svc-b", room, ["publish"]);
    const headers = { "idempotency-key": "same" };
    const ra = await call("POST", `/rooms/${room}/messages`, { token: a, body: { data: 1 }, headers });
    const rb = await call("POST", `/rooms/${room}/messages`, { token: b, body: { data: 2 }, headers });
    expect([ra.json.seq, rb.json.seq]).toEqual([1, 2]);
  });

  it("rejects bad bodies and keys with 400 and oversize bodies with 413, publishing nothing", async () => {
    const room = "http-bad";
    const token = await tokenFor("svc", room, ["publish", "history"]);
    const cases: [unknown, number, string, Record<string, string>?][] = [
      ["{not json", 400, "bad_request"],
      [{ nodata: 1 }, 400, "bad_request"],
      [[1, 2], 400, "bad_request"],
      [{ data: "x".repeat(5000) }, 413, "too_large"],
      [{ data: 1 }, 400, "bad_request", { "idempotency-key": "k".repeat(65) }],
    ];
    for (const [body, status, code, headers] of cases) {
      const res = await call("POST", `/rooms/${room}/messages`, { token, body, headers });
      expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status, code });
    }
    const history = await call("GET", `/rooms/${room}/history`, { token });
    expect(history.json).toEqual({ messages: [], more: false });
  });
});

describe("GET /rooms/:room/history", () => {
  it("pages newest first with before/limit and more", async () => {
    const room = "http-history";
    await fill(room, 120);
    const token = await tokenFor("reader", room, ["history"]);
    const first = await call("GET", `/rooms/${room}/history`, { token });
    expect(first.json.messages).toHaveLength(50); // default limit, but retention here is 50
    expect(first.json.messages[0]).toMatchObject({ type: "message", seq: 120, data: 119, from: { id: "server" } });
    expect(first.json.more).toBe(false);
    const page = await call("GET", `/rooms/${room}/history?before=100&limit=5`, { token });
    expect(page.json.messages.map((m: { seq: number }) => m.seq)).toEqual([99, 98, 97, 96, 95]);
    expect(page.json.more).toBe(true);
    const empty = await call("GET", `/rooms/${room}/history?before=&limit=`, { token });
    expect(empty.status).toBe(200);
  });

  it("rejects a bad query with 400", async () => {
    const room = "http-history-bad";
    const token = await tokenFor("reader", room, ["history"]);
    for (const q of ["limit=0", "limit=101", "limit=abc", "before=-3", "before=1.5"]) {
      const res = await call("GET", `/rooms/${room}/history?${q}`, { token });
      expect({ q, status: res.status, code: res.json.error.code }).toEqual({ q, status: 400, code: "bad_request" });
    }
  });
});

describe("GET /rooms/:room/stats", () => {
  it("counts connections, users, published, delivered, rejected and rate-limited frames, and keeps them across eviction", async () => {
    const room = "http-stats";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    const b = await connect(room, { token: await tokenFor("bob", room) });
    const b2 = await connect(room, { token: await tokenFor("bob", room) });
    await Promise.all([a, b, b2].map((s) => s.next("welcome")));
    a.send({ type: "publish", data: 1 });
    a.send({ type: "publish", data: 2 });
    a.send("not json");
    await a.next("error");
    await b.collect("message", 2);
    for (let i = 0; i < 25; i++) b.send({ type: "publish", data: `burst ${i}`, id: `b${i}` }); // burst is 20
    // The bucket refills while the burst is in flight, so count what the room actually accepted.
    const answered = () => {
      const accepted = b.frames.filter((f) => f.type === "message" && f.id?.startsWith("b")).length;
      const limited = b.frames.filter((f) => f.type === "error" && f.code === "rate_limited").length;
      return accepted + limited === 25 ? { accepted, limited } : undefined;
    };
    await expect.poll(answered).toBeDefined();
    const { accepted, limited } = answered()!;
    expect(limited).toBeGreaterThanOrEqual(1);
    const seq = 2 + accepted;
    await a.collect("message", seq);

    const admin = await tokenFor("ops", room, ["admin"]);
    const stats = (await call("GET", `/rooms/${room}/stats`, { token: admin })).json;
    expect(stats).toMatchObject({ room, connections: 3, users: 2, seq, published: seq, delivered: 3 * seq, rejected: 1, rateLimited: limited });
    expect(typeof stats.epoch).toBe("string");

    await runDurableObjectAlarm(stubFor(room)); // the batched counter flush
    await evictDurableObject(stubFor(room), { webSockets: "hibernate" });
    const after = (await call("GET", `/rooms/${room}/stats`, { token: admin })).json;
    // the same figures, from a new instance of the room: one more start
    expect(after).toEqual({ ...stats, starts: stats.starts + 1 });
  });

  it("writes a publishing room's counts with its publishes, so an eviction before any alarm keeps them", async () => {
    const room = "http-stats-publishing";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    await a.next("welcome");
    a.send({ type: "publish", data: 1 });
    await a.next("message");
    await new Promise((r) => setTimeout(r, FLUSH_AFTER_MS + 100));
    a.send({ type: "publish", data: 2 }); // a second later: the counts go with this publish's write
    await a.next("message");
    await evictDurableObject(stubFor(room), { webSockets: "hibernate" }); // well before the idle sweep's alarm
    const stats = (await call("GET", `/rooms/${room}/stats`, { token: await tokenFor("ops", room, ["admin"]) })).json;
    expect(stats).toMatchObject({ published: 2, delivered: 2, starts: 2 });
  });

  it("needs the admin capability", async () => {
    const room = "http-stats-cap";
    const res = await call("GET", `/rooms/${room}/stats`, { token: await tokenFor("u", room, ["subscribe", "publish", "history"]) });
    expect(res.status).toBe(403);
  });
});
