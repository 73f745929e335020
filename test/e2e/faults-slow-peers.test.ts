// Slow or vanished peers (issue #6): a client that stops reading does not stall the room for
// the others; a client that vanishes (its connection dies, or hangs silent without a close) is
// removed — at once when the connection dies, by the idle sweep (4408) when it just goes
// silent — and its `leave` is announced.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep, streamProblems, type RoomClient } from "./support/client";
import { figuresFor, FULL, measured, quantile, round } from "./support/figures";
import { clients, crashes, devServer, type DevServer } from "./support/server";

const IDLE_SEC = 3;
const PING_MS = 1_000;
const MESSAGES = FULL ? 1_000 : 400; // per phase
// 24 MB per phase at the CI scale. The loopback socket buffers of a paused reader absorbed ~8 MB
// here (4.5 MB Recv-Q on the client, 3.7 MB Send-Q on workerd's side, seen with `ss -tnm`), so
// the room itself must hold the rest while the others are served.
const PAYLOAD_BYTES = 60 * 1024;
const LISTENERS = 3;

let server: DevServer;
beforeAll(async () => {
  server = await devServer({
    IDLE_TIMEOUT_SEC: String(IDLE_SEC),
    // the publisher pushes as fast as it can: the limit is not what this suite tests
    RATE_LIMIT_PER_SEC: "100000",
    RATE_LIMIT_BURST: "100000",
    UPGRADE_LIMIT: "1000",
  });
});
afterAll(async () => {
  await server?.stop();
});

interface Phase {
  /** publish of the first message → the last listener has the last one */
  totalMs: number;
  /** longest silence any listener saw between two consecutive messages */
  maxGapMs: number;
  /** per-message publish → receive, all listeners */
  p99Ms: number;
}

/** The publisher sends MESSAGES big messages back to back; measures how the listeners receive them. */
async function push(publisher: RoomClient, listeners: RoomClient[], label: string): Promise<Phase> {
  const pad = "x".repeat(PAYLOAD_BYTES);
  const sentAt: number[] = [];
  const latencies: number[] = [];
  let maxGapMs = 0;
  const lastAt = new Map<RoomClient, number>();
  for (const l of listeners) {
    l.onFrame = (f) => {
      if (f.type !== "message" || (f.data as { label?: string }).label !== label) return;
      const now = performance.now();
      latencies.push(now - sentAt[(f.data as { i: number }).i]!);
      const prev = lastAt.get(l);
      if (prev !== undefined) maxGapMs = Math.max(maxGapMs, now - prev);
      lastAt.set(l, now);
    };
  }
  const startSeq = (publisher.lastSeq ?? 0) + 1;
  const t0 = performance.now();
  for (let i = 0; i < MESSAGES; i++) {
    sentAt[i] = performance.now();
    publisher.publish({ label, i, pad });
    // yield now and then so the client's own sockets keep being read
    if (i % 50 === 49) await sleep(0);
  }
  await Promise.all(listeners.map((l) => l.seen(startSeq + MESSAGES - 1, 30_000)));
  const totalMs = performance.now() - t0;
  for (const l of listeners) l.onFrame = undefined;
  return { totalMs: round(totalMs), maxGapMs: round(maxGapMs), p99Ms: round(quantile(latencies, 0.99)) };
}

const leaveOf = (observer: RoomClient, uid: string, timeoutMs: number) =>
  observer.next("presence", (p) => p.event === "leave" && p.user.id === uid, { timeoutMs });

describe("slow and vanished peers", () => {
  it("a paused reader does not stall the room; vanished peers are removed and their leave announced", async () => {
    const room = "slow-peers";
    const listeners = await clients(
      server,
      room,
      Array.from({ length: LISTENERS }, (_, i) => `listener${i}`),
    );
    const [publisher, slow, dead, hung] = await clients(server, room, ["publisher", "slow", "dead", "hung"]);
    const everyone = [...listeners, publisher!, slow!, dead!, hung!];
    const figures = figuresFor("slow and vanished peers: a paused reader under load, a dead and a hung connection", everyone.length);
    const extra: Record<string, number | string | boolean> = { idleCloseSec: IDLE_SEC, messages: 2 * MESSAGES };
    figures.extra = extra;
    const observer = listeners[0]!;

    await measured("slow-peers", figures, async () => {
      try {
        for (const c of everyone) await c.connect();
        // dead pings too: it must be alive until it dies, or the idle sweep removes it first
        for (const c of [...listeners, publisher!, slow!, dead!]) c.startPinging(PING_MS);
        const first = publisher!.welcome!.seq + 1;

        // hung: the connection stays up but the client reads and sends nothing, not even ping
        const hungSince = performance.now();
        hung!.pauseReading();

        // baseline: everyone reads
        const quiet = await push(publisher!, listeners, "quiet");
        // the slow peer stops reading while the publisher pushes as much again
        slow!.pauseReading();
        const loaded = await push(publisher!, listeners, "loaded");
        Object.assign(extra, {
          quietTotalMs: quiet.totalMs,
          quietMaxGapMs: quiet.maxGapMs,
          quietP99Ms: quiet.p99Ms,
          pausedTotalMs: loaded.totalMs,
          pausedMaxGapMs: loaded.maxGapMs,
          pausedP99Ms: loaded.p99Ms,
          othersMaxLatencyMs: loaded.p99Ms,
          pushedWhilePausedMB: Math.round((MESSAGES * PAYLOAD_BYTES) / 2 ** 20),
        });
        console.log(JSON.stringify({ quiet, loaded }));
        // it still holds everything once it reads again: a slow reader loses nothing either
        slow!.resumeReading();
        const last = first + 2 * MESSAGES - 1;
        await slow!.seen(last, 30_000);

        // the hung peer was swept while all this went on: 4408, and its leave went to the others
        // (timed by when the leave arrived, which may be well before this line runs)
        const hungLeave = await leaveOf(observer, "hung", (IDLE_SEC + 5) * 1000);
        const hungRemovedSec = round((observer.arrivalOf(hungLeave) - hungSince) / 1000, 1);
        hung!.resumeReading();
        const hungClose = await hung!.closeFrame();
        expect(hungClose).toBe(4408);
        extra.hungTcpEnded = await hung!.closed(2_000).then(
          () => true,
          () => false,
        );

        // dead: the TCP connection is destroyed with no close frame; the room notices at once
        expect(
          observer.frames.some((f) => f.type === "presence" && f.event === "leave" && f.user.id === "dead"),
          "dead was still in the room",
        ).toBe(false);
        const deadAt = performance.now();
        dead!.drop();
        const deadLeave = await leaveOf(observer, "dead", 2_000);
        const deadRemovedMs = Math.round(observer.arrivalOf(deadLeave) - deadAt);

        // the slow peer now vanishes too: stops reading and pinging, never closes
        slow!.stopPinging();
        slow!.pauseReading();
        const slowSince = performance.now();
        const slowLeave = await leaveOf(observer, "slow", (IDLE_SEC + 5) * 1000);
        const slowRemovedSec = round((observer.arrivalOf(slowLeave) - slowSince) / 1000, 1);
        slow!.resumeReading();
        expect(await slow!.closeFrame()).toBe(4408);
        // Observed, not asserted: whether the TCP connection ended within 2 s of the close
        // handshake. Under `wrangler dev` it does when the socket had sent anything before going
        // idle (slow pinged), and it stays open until the client gives up (ws: 30 s) when the
        // socket never sent a byte (hung): the runtime's doing, the room has dropped the peer
        // and announced its leave either way.
        extra.slowTcpEnded = await slow!.closed(2_000).then(
          () => true,
          () => false,
        );

        // every listener, and the slow reader, got every message exactly once, in order
        for (const c of [...listeners, slow!]) {
          const p = streamProblems(c.seqs(), first, last);
          figures.lost += p.lost;
          figures.duplicated += p.duplicated + p.outOfOrder;
        }
        // the others were never dropped and never saw a leave of their own
        for (const l of [...listeners, publisher!]) expect(l.isOpen).toBe(true);
        const leaves = observer.frames
          .filter((f) => f.type === "presence" && f.event === "leave")
          .map((f) => f.type === "presence" && "user" in f && f.user.id);
        expect(leaves.sort()).toEqual(["dead", "hung", "slow"]);

        figures.inputs = 2 * MESSAGES;
        figures.dropped = 3;
        figures.crashes = crashes(server, everyone);
        Object.assign(extra, {
          vanishedClose: hungClose,
          hungRemovedSec,
          slowRemovedSec,
          deadRemovedMs,
          leaveAnnounced: true,
        });
        expect(figures.lost, "messages lost").toBe(0);
        expect(figures.duplicated).toBe(0);
        expect(hungRemovedSec, "removed by the first sweep after the idle timeout").toBeLessThanOrEqual(IDLE_SEC + 3);
        expect(slowRemovedSec).toBeLessThanOrEqual(IDLE_SEC + 3);
        // no stall: with a peer not reading, the others get the same load about as fast
        // (a stall would last as long as the reader stays paused: the whole phase and beyond)
        expect(loaded.maxGapMs, "no listener waited on the paused one").toBeLessThan(2_000);
        expect(loaded.totalMs, `paused ${loaded.totalMs} ms vs quiet ${quiet.totalMs} ms`).toBeLessThanOrEqual(2 * quiet.totalMs + 500);
        expect(figures.crashes).toBe(0);
      } finally {
        for (const c of everyone) c.close();
      }
    });
  });
});
