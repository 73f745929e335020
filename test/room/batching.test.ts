// Adaptive batching (outbox.ts): under load, frames queued for a recipient go out as one JSON
// array, in order; a quiet room sends each frame on its own, at once.
import { describe, expect, it, vi } from "vitest";
import { holdMs } from "../../src/room/announcements";
import { MIN_BATCH_FANOUT } from "../../src/room/outbox";
import { call } from "../support/http";
import { presenceView } from "../support/presence-view";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

const SOCKETS = MIN_BATCH_FANOUT + 4;

async function crowd(room: string) {
  const socks = await Promise.all(Array.from({ length: SOCKETS }, async (_, i) => connect(room, { token: await tokenFor(`u${i}`, room) })));
  await Promise.all(socks.map((s) => s.next("welcome")));
  return socks;
}

describe("adaptive batching", () => {
  // The burst comes over HTTP: its publishes reach the room as RPC events that queue up behind
  // each other, as a busy room's socket frames do over real connections. Inside the pool a
  // test socket's frames are handed to the room one per turn, after the drain timer has run,
  // so a burst sent from the test's sockets never coalesces here (seen: 0 of 200 messages in
  // an array); wrangler dev's real sockets do (bench: fan-out with and without batching).
  it("coalesces a burst into arrays per recipient, every frame once and in seq order", { timeout: 20_000 }, async () => {
    const room = "batch-burst";
    const socks = await crowd(room);
    // Four senders, so the burst stays within each one's HTTP publish bucket (PUBLISH_BURST).
    const tokens = await Promise.all([0, 1, 2, 3].map((k) => tokenFor(`server${k}`, room, ["publish"])));
    const total = 10 * SOCKETS;
    const publishes = Array.from({ length: total }, (_, i) => call("POST", `/rooms/${room}/messages`, { token: tokens[i % 4]!, body: { data: i } }));
    expect((await Promise.all(publishes)).map((r) => r.status)).toEqual(Array(total).fill(201));
    for (const s of socks) {
      const msgs = await s.collect("message", total, 10_000);
      expect(msgs.map((m) => m.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    }
    // far fewer WebSocket messages than frames, for every recipient (seen: ~20 for 220 frames)
    for (const s of socks) {
      expect(s.batches()).toBeGreaterThan(0);
      expect(s.received(), `${s.received()} messages for ${s.frames.length} frames`).toBeLessThanOrEqual(s.frames.length / 4);
    }
  });

  it("sends a quiet room's frames one by one, at once: never held for a batching window", async () => {
    const socks = await crowd("batch-quiet");
    const users = socks.map((_, i) => `u${i}`).sort();
    // the joins' own burst is over once every member's view lists everyone
    await vi.waitFor(
      () => {
        for (const s of socks) expect([...presenceView(s.frames).here].sort()).toEqual(users);
      },
      { timeout: 5_000, interval: 5 },
    );
    // The shortest window the room ever waits to batch is a held announcement's (25 ms at this
    // width). A frame held for a window would take at least that long every time; an unheld one
    // on a loaded machine may too now and then, but not every time, so the fastest of a few counts.
    const window = holdMs(MIN_BATCH_FANOUT);
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const before = socks.map((s) => ({ received: s.received(), batches: s.batches(), frames: s.frames.length }));
      const sentAt = performance.now();
      socks[i]!.send({ type: "publish", data: i });
      await Promise.all(socks.map((s) => s.next("message", (m) => m.data === i)));
      latencies.push(performance.now() - sentAt);
      // each member got it as one WebSocket message holding one frame object, and nothing else
      expect(
        socks.map((s, j) => ({
          received: s.received() - before[j]!.received,
          batches: s.batches() - before[j]!.batches,
          frames: s.frames.length - before[j]!.frames,
        })),
      ).toEqual(socks.map(() => ({ received: 1, batches: 0, frames: 1 })));
    }
    expect(Math.min(...latencies), `latencies ${latencies.map(Math.round).join(",")} ms vs a ${window} ms window`).toBeLessThan(window);
  });
});
