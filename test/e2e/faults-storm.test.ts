// Reconnect storm (issue #6): every client drops at once and reconnects with resume while a
// publisher keeps publishing; each must end with every message exactly once, in order.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { presenceView } from "../support/presence-view";
import { connectAll, eventually, sleep, streamProblems } from "./support/client";
import { FULL, figuresFor, measured } from "./support/figures";
import { allCaps, clients, crashes, devServer, HttpPublisher, roomPresence, roomStats, type DevServer } from "./support/server";

const CLIENTS = Number(process.env.E2E_STORM_CLIENTS ?? 300);
const ROUNDS = FULL ? 5 : 2;
const PUBLISH_EVERY_MS = 10;
const PUBLISH_LANES = 4;

let server: DevServer;
beforeAll(async () => {
  // Every client reconnects from one loopback address: the per-IP upgrade cap must allow the storm.
  server = await devServer({ UPGRADE_LIMIT: "100000" });
});
afterAll(async () => {
  await server?.stop();
});

describe("reconnect storm", () => {
  it(`${CLIENTS} clients drop at once ${ROUNDS}× and resume: every message exactly once, in order; every presence view exact`, async () => {
    const room = "storm";
    const figures = figuresFor("reconnect storm: all clients drop at once and resume while a publisher publishes", CLIENTS);
    const users = Array.from({ length: CLIENTS }, (_, i) => `u${i}`);
    const all = await clients(server, room, users);
    const publisher = new HttpPublisher(server, room, await allCaps(server, "publisher", room), PUBLISH_EVERY_MS);
    await measured("storm", figures, async () => {
      try {
        const welcomes = await connectAll(all);
        const first = new Map(all.map((c, i) => [c, welcomes[i]!.seq + 1]));
        publisher.start(PUBLISH_LANES);

        let notRecovered = 0;
        let stormMs = 0;
        const replayedPerRound: number[] = [];
        const replayed = () => all.reduce((n, c) => n + c.replayed, 0);
        for (let round = 0; round < ROUNDS; round++) {
          await sleep(400);
          // everyone at once: no close frame, the TCP connections just die
          for (const c of all) c.drop();
          figures.dropped += all.length;
          const t0 = performance.now();
          const replayedBefore = replayed();
          const resumed = await connectAll(all, { resume: true }, all.length);
          stormMs = Math.max(stormMs, performance.now() - t0);
          figures.resumed += resumed.length;
          notRecovered += resumed.filter((w) => w.recovered !== true).length;
          // what the resumes replayed: messages at or below each recovered welcome's seq
          await Promise.all(all.map((c) => c.seen(c.welcome!.seq)));
          replayedPerRound.push(replayed() - replayedBefore);
        }
        await sleep(400);
        await publisher.stop();
        const last = publisher.lastSeq;
        await Promise.all(all.map((c) => c.seen(last, 30_000)));

        for (const c of all) {
          const p = streamProblems(c.seqs(), first.get(c)!, last);
          figures.lost += p.lost;
          figures.duplicated += p.duplicated + p.outOfOrder;
        }
        figures.inputs = publisher.acked.length;
        // the dropped sockets' closes may still be arriving: wait for exactly one connection per user
        const stats = await eventually(async () => {
          const s = await roomStats(server, room);
          return s.connections === CLIENTS ? s : undefined;
        }, `${CLIENTS} connections in the stats`).catch(async () => roomStats(server, room));
        const presence = await roomPresence(server, room);
        // Every client's own view, from its welcome and the (possibly held) announcements after it.
        const everyone = [...users].sort();
        const viewsRight = () => all.every((c) => [...presenceView(c.frames).here].sort().join() === everyone.join());
        await eventually(() => (viewsRight() ? true : undefined), "every client's presence view to list everyone", 5_000).catch(() => {});
        const presenceFaults = all.reduce((n, c) => n + presenceView(c.frames).faults.length, 0);
        figures.crashes = crashes(server, all);
        figures.extra = {
          messages: last,
          deliveries: all.reduce((n, c) => n + c.messages.length, 0),
          notRecovered,
          replayed: replayed(),
          replayedPerRound: replayedPerRound.join(","),
          slowestStormMs: Math.round(stormMs),
          publishRetries: publisher.failures,
          presenceFaults,
        };

        expect(notRecovered, "every resume is recovered").toBe(0);
        // the publisher never stopped, so every storm left gaps: resumes that replayed nothing
        // would mean the recovered welcomes were never put to the test
        for (const n of replayedPerRound) expect(n, `messages replayed per storm: ${replayedPerRound.join(",")}`).toBeGreaterThan(0);
        expect(figures.lost, "messages lost").toBe(0);
        expect(figures.duplicated, "messages duplicated or out of order").toBe(0);
        expect(stats.seq).toBe(last);
        // no ghosts from the dropped sockets: exactly one connection per user
        expect(stats.connections).toBe(CLIENTS);
        expect(Object.keys(presence).sort()).toEqual([...users].sort());
        expect(Object.values(presence).every((p) => p.connections === 1)).toBe(true);
        expect(presenceFaults, "presence events contradicting a client's view").toBe(0);
        expect(viewsRight(), "every client sees everyone").toBe(true);
        expect(figures.crashes).toBe(0);
      } finally {
        await publisher.stop();
        for (const c of all) c.close();
      }
    });
  });
});
