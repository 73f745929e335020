// Room restart (issue #6): the dev server is restarted mid-conversation (every socket drops, the
// room's storage persists, as at an edge restart or deploy). Clients reconnect with resume:
// `recovered` is true when history covers the gap and false when it does not, seq never
// repeats, and presence shows no ghosts of the users who did not come back.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, presenceById, sleep, streamProblems, type RoomClient } from "./support/client";
import { figuresFor, FULL, measured } from "./support/figures";
import { allCaps, clients, crashes, devServer, HttpPublisher, roomPresence, roomStats, type DevServer } from "./support/server";

const HISTORY_LIMIT = 50;
const RESTARTS = FULL ? 5 : 2;

let server: DevServer;
beforeAll(async () => {
  server = await devServer({ HISTORY_LIMIT: String(HISTORY_LIMIT), UPGRADE_LIMIT: "100000" });
});
afterAll(async () => {
  await server?.stop();
});

describe("room restart", () => {
  it(`clients resume across ${RESTARTS} restart(s): recovered when covered, seq never repeats, no ghosts`, async () => {
    const room = "restart";
    // alice twice (two tabs), bob, carol (never returns), dave (leaves early, returns too late to recover)
    const [a1, a2, b, c, d] = await clients(server, room, ["alice", "alice", "bob", "carol", "dave"]);
    const returning = [a1!, a2!, b!];
    const everyone = [...returning, c!, d!];
    const figures = figuresFor("room restart: wrangler dev restarted mid-conversation, clients resume", everyone.length);
    const publisher = new HttpPublisher(server, room, await allCaps(server, "publisher", room), 20);
    const extra = { restarts: 0, replayed: 0, resumedCovered: 0, recovered: 0, staleDetected: 0, seqRepeated: 0, ghosts: 0, restartCloseCodes: "" };
    figures.extra = extra;

    await measured("restart", figures, async () => {
      try {
        const first = new Map<RoomClient, number>();
        for (const cl of everyone) first.set(cl, (await cl.connect()).seq + 1);
        a1!.send({ type: "presence", state: { typing: true } });
        publisher.start();
        await d!.seen(3);
        d!.close();
        const daveLeftAt = d!.lastSeq!;
        await d!.closed();

        const closeCodes = new Set<number>();
        for (let r = 0; r < RESTARTS; r++) {
          // mid-conversation: bob chats over his socket while the publisher publishes over HTTP
          for (let i = 0; i < 5; i++) b!.publish({ chat: i }, `b${r}-${i}`);
          await b!.until(() => (b!.messages.some((m) => m.id === `b${r}-4`) ? true : undefined), "bob's echo");
          const before = await roomStats(server, room);
          const open = everyone.filter((cl) => cl.isOpen);

          await server.restart();
          extra.restarts++;
          const closes = await Promise.all(open.map((cl) => cl.closed()));
          figures.dropped += closes.length;
          for (const cl of closes) closeCodes.add(cl.code);

          // the publisher resumed on its own (its retries carry the same key): let it move past the gap
          const target = Math.max(publisher.lastSeq, ...returning.map((cl) => cl.lastSeq!)) + 5;
          await eventually(() => (publisher.lastSeq >= target ? true : undefined), `the publisher at seq ${target}`, 30_000);
          const welcomes = await Promise.all(returning.map((cl) => cl.reconnect({ resume: true })));
          figures.resumed += welcomes.length;
          extra.resumedCovered += welcomes.length;
          extra.recovered += welcomes.filter((w) => w.recovered === true).length;
          for (const w of welcomes) {
            expect(w.recovered, "history covers the gap: recovered").toBe(true);
            expect(w.epoch, "storage persisted: same epoch").toBe(before.epoch);
            expect(w.seq).toBeGreaterThan(before.seq);
          }

          // no ghosts: carol (and dave) did not come back; alice is one user with two connections.
          // Seen over HTTP and by a newcomer's welcome (the returning clients' own welcomes may
          // predate each other's reconnects).
          const overHttp = await roomPresence(server, room);
          const [observer] = await clients(server, room, [`observer${r}`]);
          const joined = await observer!.connect();
          const views = [overHttp, presenceById(joined.presence.filter((p) => p.id !== `observer${r}`))];
          observer!.close();
          for (const view of views) {
            extra.ghosts += Object.keys(view).filter((id) => id !== "alice" && id !== "bob").length;
            expect(Object.keys(view).sort()).toEqual(["alice", "bob"]);
            expect(view.alice?.connections).toBe(2);
            expect(view.bob?.connections).toBe(1);
          }
          await sleep(200);
        }
        extra.restartCloseCodes = [...closeCodes].join(",");

        // dave resumes from before more than HISTORY_LIMIT messages: the room must say his view is stale
        const pastRetention = daveLeftAt + HISTORY_LIMIT + 5;
        await eventually(() => (publisher.lastSeq >= pastRetention + 1 ? true : undefined), `the publisher past seq ${pastRetention}`, 30_000);
        const stale = await d!.reconnect({ resume: true });
        figures.resumed++;
        expect(stale.recovered, "history no longer covers dave's gap").toBe(false);
        extra.staleDetected += stale.recovered === false ? 1 : 0;
        // a resume against another epoch is stale too, whatever its since
        const [e] = await clients(server, room, ["erin"]);
        const foreign = await e!.connect({ since: 1, epoch: "not-this-rooms-epoch" });
        expect(foreign.recovered).toBe(false);
        extra.staleDetected += foreign.recovered === false ? 1 : 0;
        e!.close();

        await publisher.stop();
        const lastSeq = publisher.lastSeq;
        await Promise.all(returning.map((cl) => cl.seen(lastSeq)));

        // seq never repeats: the publisher's acknowledged seqs are unique, and every returning
        // client saw 1..last exactly once, in order, across the restarts
        const acked = publisher.acked.map((x) => x.seq);
        extra.seqRepeated = acked.length - new Set(acked).size;
        expect(extra.seqRepeated).toBe(0);
        for (const cl of returning) {
          const p = streamProblems(cl.seqs(), first.get(cl)!, lastSeq);
          figures.lost += p.lost;
          figures.duplicated += p.duplicated + p.outOfOrder;
        }
        // each of bob's chat lines is in the log exactly once, even across the restarts
        const bobs = a1!.messages.filter((m) => m.from.id === "bob").map((m) => m.id);
        expect(new Set(bobs).size).toBe(bobs.length);
        expect(bobs.length).toBe(5 * RESTARTS);
        figures.inputs = publisher.acked.length + bobs.length;
        extra.replayed = returning.reduce((n, cl) => n + cl.replayed, 0);
        expect(extra.replayed, "the restarts left gaps for the resumes to fill").toBeGreaterThanOrEqual(5 * RESTARTS * returning.length);
        figures.crashes = crashes(server, everyone);
        expect(figures.lost, "messages lost").toBe(0);
        expect(figures.duplicated, "messages repeated or out of order").toBe(0);
        expect(figures.crashes).toBe(0);
      } finally {
        await publisher.stop();
        for (const cl of everyone) cl.close();
      }
    });
  });
});
