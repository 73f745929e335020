// Per-connection abuse limits on a live socket: the token bucket (defaults: 10/s, burst 20),
// the 1008 close after more than 100 rejected frames in 10 s, and oversize / binary frames
// that are answered without closing.
import { describe, expect, it } from "vitest";
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
async function burst(s: TestSocket, prefix: string, count: number): Promise<{ accepted: string[]; limited: number }> {
  const errorsBefore = s.frames.filter((f) => f.type === "error").length;
  for (let i = 0; i < count; i++) s.send({ type: "publish", data: i, id: `${prefix}${i}` });
  const answers = () => ({
    accepted: s.frames.flatMap((f) => (f.type === "message" && f.id?.startsWith(prefix) ? [f.id] : [])),
    errors: s.frames.filter((f) => f.type === "error").slice(errorsBefore),
  });
  const deadline = Date.now() + 3000;
  while (answers().accepted.length + answers().errors.length < count && Date.now() < deadline) await sleep(10);
  const { accepted, errors } = answers();
  expect(accepted.length + errors.length).toBe(count);
  expect(errors.every((e) => e.code === "rate_limited")).toBe(true);
  return { accepted, limited: errors.length };
}

it("advertises in the welcome the limits it enforces on the connection (the room project's vars)", async () => {
  const s = await connect(freshRoom("welcome"), { token: await tokenFor("wendy", "rl-welcome-*") });
  expect((await s.next("welcome")).limits).toEqual({ maxMessageBytes: MAX_BYTES, ratePerSec: 10, burst: BURST, idleTimeoutSec: 2 });
  s.close();
});

describe("token bucket per connection", () => {
  it(`accepts a burst of ${BURST} frames and answers the ${BURST + 1}st with rate_limited, delivering it to nobody`, async () => {
    const room = freshRoom("burst");
    const observer = await join(room);
    // Warm the room's publish path first, so the burst is not stretched (and refilled) by a cold start.
    observer.send({ type: "publish", data: "warm-up", id: "w" });
    await observer.next("message");
    const s = await join(room);
    const { accepted, limited } = await burst(s, "b", BURST + 1);
    expect(accepted).toEqual(Array.from({ length: BURST }, (_, i) => `b${i}`));
    expect(limited).toBe(1);
    // the refusal names the frame it refused, so a client can fail that publish at once
    expect(s.frames.find((f) => f.type === "error")).toMatchObject({ code: "rate_limited", id: `b${BURST}` });
    const seen = await observer.collect("message", BURST + 1);
    expect(seen.map((m) => m.seq)).toEqual(Array.from({ length: BURST + 1 }, (_, i) => i + 1));
    await sleep(50);
    expect(observer.frames.filter((f) => f.type === "message")).toHaveLength(BURST + 1);
    expect(s.isClosed()).toBe(false);
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
    await sleep(100);
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

  it("ignores frames sent after the close", async () => {
    const room = freshRoom("after");
    const observer = await join(room);
    const s = await join(room);
    for (let i = 0; i < 101; i++) s.send([i]);
    await s.closed;
    try {
      s.send({ type: "publish", data: "late" });
    } catch {
      // the runtime may refuse to send on a closed socket; either way nothing may arrive
    }
    observer.send({ type: "publish", data: "marker", id: "m" });
    await observer.next("message", (m) => m.id === "m");
    expect(observer.frames.filter((f) => f.type === "message")).toHaveLength(1);
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
