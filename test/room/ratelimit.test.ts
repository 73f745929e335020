// Per-connection abuse limits on a live socket: the token bucket (defaults: 10/s, burst 20),
// the 1008 close after more than 100 rejected frames in 10 s, and oversize / binary frames
// that are answered without closing.
import { describe, expect, it, vi } from "vitest";
import type { RoomStats } from "../../src/protocol";
import { call } from "../support/http";
import { connect, type TestSocket } from "../support/socket";
import { tokenFor } from "../support/tokens";

const BURST = 20;
const MAX_BYTES = 4096; // the room project's MAX_MESSAGE_BYTES
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let n = 0;
async function join(room: string, user = `u${n++}`): Promise<TestSocket> {
  const s = await connect(room, { token: await tokenFor(user, room) });
  await s.next("welcome");
  return s;
}
const freshRoom = (what: string) => `rl-${what}-${n++}`;

/** Sends `count` publish frames with ids `${prefix}0..`; resolves once each has its echo or an error. */
async function burst(
  s: TestSocket,
  prefix: string,
  count: number,
): Promise<{ accepted: string[]; limited: number; refused: (string | undefined)[] }> {
  const errorsBefore = s.frames.filter((f) => f.type === "error").length;
  for (let i = 0; i < count; i++) s.send({ type: "publish", data: i, id: `${prefix}${i}` });
  const answers = () => ({
    accepted: s.frames.flatMap((f) => (f.type === "message" && f.id?.startsWith(prefix) ? [f.id] : [])),
    errors: s.frames.filter((f) => f.type === "error").slice(errorsBefore),
  });
  await vi.waitFor(
    () => {
      const { accepted, errors } = answers();
      if (accepted.length + errors.length < count) throw new Error(`${accepted.length + errors.length} of ${count} frames answered`);
    },
    { timeout: 3000, interval: 5 },
  );
  const { accepted, errors } = answers();
  expect(accepted.length + errors.length).toBe(count);
  expect(errors.every((e) => e.code === "rate_limited")).toBe(true);
  return { accepted, limited: errors.length, refused: errors.map((e) => (e.type === "error" ? e.id : undefined)) };
}

/** The room's stats, as an admin sees them. */
async function stats(room: string): Promise<RoomStats> {
  return (await call("GET", `/rooms/${room}/stats`, { token: await tokenFor("ops", room, ["admin"]) })).json;
}

it("advertises in the welcome the limits it enforces on the connection (the room project's vars)", async () => {
  const s = await connect(freshRoom("welcome"), { token: await tokenFor("wendy", "rl-welcome-*") });
  expect((await s.next("welcome")).limits).toEqual({ maxMessageBytes: MAX_BYTES, ratePerSec: 10, burst: BURST, idleTimeoutSec: 2 });
  s.close();
});

describe("token bucket per connection", () => {
  it(`accepts a burst of ${BURST} frames at once and refuses what the refill does not cover, delivering it to nobody`, async () => {
    const room = freshRoom("burst");
    const observer = await join(room);
    // Warm the room's publish path first, so the burst is not stretched (and refilled) by a cold start.
    observer.send({ type: "publish", data: "warm-up", id: "w" });
    await observer.next("message");
    const s = await join(room);
    const count = 2 * BURST;
    const started = Date.now();
    const { accepted, limited, refused } = await burst(s, "b", count);
    const elapsedMs = Date.now() - started;
    const ids = Array.from({ length: count }, (_, i) => `b${i}`);
    // The bucket starts full, so the first BURST frames all pass; beyond them only what it
    // refilled (10/s) while the burst was in flight, however slow this machine is.
    expect(accepted.slice(0, BURST)).toEqual(ids.slice(0, BURST));
    expect(accepted.length - BURST).toBeLessThanOrEqual(Math.floor(elapsedMs / 100));
    expect(limited).toBe(count - accepted.length);
    // every refusal names the frame it refused, so a client can fail that publish at once
    expect([...accepted, ...refused].sort()).toEqual([...ids].sort());
    expect(s.isClosed()).toBe(false);
    // refused frames reach nobody: everything the observer got before its own marker
    observer.send({ type: "publish", data: "marker", id: "m" });
    await observer.next("message", (m) => m.id === "m");
    const seen = observer.frames.flatMap((f) => (f.type === "message" ? [f] : []));
    expect(seen.map((m) => m.id)).toEqual(["w", ...accepted, "m"]);
    expect(seen.map((m) => m.seq)).toEqual(Array.from({ length: accepted.length + 2 }, (_, i) => i + 1));
    s.close();
    observer.close();
  });

  it("refills at about 10 frames per second, not all at once", async () => {
    const s = await join(freshRoom("refill"));
    await burst(s, "x", BURST + 1);
    await sleep(1000);
    const { accepted } = await burst(s, "y", 18);
    // 1 s refills 10 tokens (a little more for the time the frames take); never the whole burst.
    expect(accepted.length).toBeGreaterThanOrEqual(10);
    expect(accepted.length).toBeLessThanOrEqual(14);
    await sleep(300);
    const after = await burst(s, "z", 10);
    expect(after.accepted.length).toBeGreaterThanOrEqual(3);
    expect(after.accepted.length).toBeLessThanOrEqual(6);
    s.close();
  });

  it("does not let one connection's flood limit another connection of the same user", async () => {
    const room = freshRoom("isolation");
    const flooder = await join(room, "same-user");
    const other = await join(room, "same-user");
    const flood = await burst(flooder, "f", 40);
    expect(flood.limited).toBeGreaterThanOrEqual(40 - BURST - 3); // a token may refill while 40 frames are handled
    const calm = await burst(other, "c", BURST);
    expect(calm.limited).toBe(0);
    flooder.close();
    other.close();
  });
});

describe("too many rejected frames close the connection with 1008", () => {
  it("keeps the connection after 100 rejections and closes it at the 101st, rate-limited ones included", async () => {
    const room = freshRoom("abuse");
    const observer = await join(room, "watcher");
    const s = await join(room, "abuser");
    for (let i = 0; i < 100; i++) s.send("not json");
    const first = await s.collect("error", 100);
    expect(first.filter((e) => e.code === "bad_request").length).toBeGreaterThanOrEqual(BURST);
    expect(first.every((e) => e.code === "bad_request" || e.code === "rate_limited")).toBe(true);
    // A close would have followed the 100th error; the auto-response's pong comes after it.
    s.send("ping");
    await vi.waitFor(() => expect(s.texts).toContain("pong"), { timeout: 3000, interval: 5 });
    expect(s.isClosed()).toBe(false);

    s.send("not json");
    const closed = await Promise.race([s.closed, sleep(3000).then(() => ({ code: -1, reason: "not closed" }))]);
    expect(closed.code).toBe(1008);
    expect(s.frames.filter((f) => f.type === "error")).toHaveLength(101);
    expect(await observer.next("presence", (f) => f.event === "leave" && f.user.id === "abuser")).toBeTruthy();
    observer.close();
  });

  it("counts forbidden frames as rejections too", async () => {
    const room = freshRoom("forbidden");
    const s = await connect(room, { token: await tokenFor("reader", room, ["subscribe"]) });
    await s.next("welcome");
    for (let i = 0; i < 101; i++) s.send({ type: "publish", data: i });
    const closed = await Promise.race([s.closed, sleep(3000).then(() => ({ code: -1, reason: "not closed" }))]);
    expect(closed.code).toBe(1008);
  });

  it("ignores the frames that arrive after it closed the connection", async () => {
    const room = freshRoom("after");
    const observer = await join(room);
    const s = await join(room);
    // The late frames are sent right behind the 101st rejected one, before the close can reach
    // the client: they arrive at a room that has already closed the connection.
    for (let i = 0; i < 101; i++) s.send([i]);
    for (let i = 0; i < 10; i++) s.send({ type: "publish", data: "late", id: `late${i}` });
    expect((await s.closed).code).toBe(1008);
    expect(s.frames.filter((f) => f.type === "error")).toHaveLength(101);
    observer.send({ type: "publish", data: "marker", id: "m" });
    await observer.next("message", (m) => m.id === "m");
    expect(observer.frames.filter((f) => f.type === "message").map((f) => f.type === "message" && f.id)).toEqual(["m"]);
    // The room counted exactly the 101 frames it answered: none of the late ones was even read.
    const counted = await stats(room);
    expect({ answered: counted.rejected + counted.rateLimited, published: counted.published }).toEqual({ answered: 101, published: 1 });
    observer.close();
  });
});

describe("oversize and binary frames", () => {
  it("answers a frame over MAX_MESSAGE_BYTES with too_large and keeps the connection", async () => {
    const room = freshRoom("big");
    const s = await join(room);
    s.send({ type: "publish", data: "a".repeat(MAX_BYTES), id: "big" });
    const err = await s.next("error");
    expect(err.code).toBe("too_large");
    s.send({ type: "publish", data: "small", id: "ok" });
    expect(await s.next("message")).toMatchObject({ id: "ok", seq: 1 });
    expect(s.isClosed()).toBe(false);
    s.close();
  });

  it("measures the limit in UTF-8 bytes, not string length", async () => {
    const s = await join(freshRoom("utf8"));
    // 1400 × "€" is 1400 UTF-16 units but 4200 UTF-8 bytes.
    s.send({ type: "publish", data: "€".repeat(1400), id: "euro" });
    expect(await s.next("error")).toMatchObject({ code: "too_large" });
    s.close();
  });

  it("accepts a frame of exactly MAX_MESSAGE_BYTES", async () => {
    const s = await join(freshRoom("exact"));
    const shell = JSON.stringify({ type: "publish", data: "", id: "edge" });
    const frame = JSON.stringify({ type: "publish", data: "a".repeat(MAX_BYTES - shell.length), id: "edge" });
    expect(new TextEncoder().encode(frame).byteLength).toBe(MAX_BYTES);
    s.send(frame);
    expect(await s.next("message")).toMatchObject({ id: "edge" });
    s.close();
  });

  it("answers a binary frame with bad_request, even one holding a valid publish, and publishes nothing", async () => {
    const room = freshRoom("binary");
    const observer = await join(room);
    const s = await join(room);
    s.ws.send(new TextEncoder().encode(JSON.stringify({ type: "publish", data: "bin", id: "b" })));
    expect(await s.next("error")).toMatchObject({ code: "bad_request" });
    s.send({ type: "publish", data: "text", id: "t" });
    expect(await observer.next("message")).toMatchObject({ id: "t", seq: 1 });
    expect(s.isClosed()).toBe(false);
    s.close();
    observer.close();
  });
});
