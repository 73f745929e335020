// Giant room (the sharded-rooms issue): one room served by 4 shard objects and its root, with
// 2,000 sockets on loopback, behaves as one room. Every client sees the same gap-free sequence
// whichever shard it is on and whoever published (sockets on every shard, and HTTP); 300 clients
// dropped at once resume with nothing missed; a `wrangler dev` restart over persisted storage
// loses and repeats nothing; a direct crosses shards; the stats add up, shard by shard.
//
// Under `wrangler dev` every object shares one workerd thread, so this proves correctness, not
// speed. Which shard a socket is on is learnt from the stats: probes connect one at a time while
// nothing else moves, and the shard whose count went up by one has it.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RoomStats } from "../../src/protocol";
import { connectAll, eventually, streamProblems, type RoomClient } from "./support/client";
import { figuresFor, FULL, measured } from "./support/figures";
import { allCaps, clients, crashes, devServer, HttpPublisher, roomStats, type DevServer } from "./support/server";

const SHARDS = 4;
const SOCKETS = Number(process.env.E2E_GIANT_SOCKETS ?? (FULL ? 4000 : 2000));
const DROPPED = 300;
/** Sockets (besides the probes) that publish one message each in the first phase. */
const SOCKET_PUBLISHERS = 100;
const HTTP_PUBLISHES = 20;
/**
 * The HTTP publisher's pace through the drop and the restart. Each message is a send to every
 * socket, all on workerd's one thread: faster, and the live traffic would starve the resumes.
 */
const PUBLISH_EVERY_MS = 200;
const PROBE_PUBLISHES = 3;
/** Probes connected one by one until every shard has one; never more than this. */
const MAX_PROBES = 60;
/** Both ends of every socket are on this machine: the test's end here, workerd's in its own process. */
const FD_HEADROOM = 1_000;

let server: DevServer;
beforeAll(async () => {
  const limit = Number(execFileSync("sh", ["-c", "ulimit -n"]).toString().trim());
  if (Number.isFinite(limit) && limit < SOCKETS + FD_HEADROOM) {
    throw new Error(`ulimit -n is ${limit}: ${SOCKETS} sockets need at least ${SOCKETS + FD_HEADROOM} (or set E2E_GIANT_SOCKETS lower)`);
  }
  server = await devServer({
    SHARDED_ROOMS: `giant-*:${SHARDS}`,
    // every socket connects (and reconnects) from one loopback address
    UPGRADE_LIMIT: "1000000",
    // retention is not what this suite tests: every resume here must be coverable
    HISTORY_LIMIT: "10000",
    // most sockets only listen; a slow run must not see them idle-closed
    IDLE_TIMEOUT_SEC: "600",
    // a giant room is past PRESENCE_LIMIT: welcomes carry a count, not a list of everyone (crowd.ts)
    PRESENCE_LIMIT: "100",
  });
});
afterAll(async () => {
  await server?.stop();
});

const shardCounts = (s: RoomStats) => (s.shards ?? []).map((x) => x.connections);

/** The stats' shape for `total` sockets: one entry per shard, summing to the total, none far above its share. */
function expectSpread(stats: RoomStats, total: number): void {
  expect(stats.shards, "one stats entry per shard").toHaveLength(SHARDS);
  const counts = shardCounts(stats);
  expect(
    counts.reduce((a, b) => a + b, 0),
    `shard connections ${counts.join(",")}`,
  ).toBe(total);
  expect(stats.connections).toBe(total);
  for (const n of counts) expect(n, `shard connections ${counts.join(",")}`).toBeLessThanOrEqual(1.5 * (total / SHARDS) + 10);
}

/** Waits for every client to have seen `seq`. */
async function allSeen(all: RoomClient[], seq: number, timeoutMs = 30_000): Promise<void> {
  await Promise.all(all.map((c) => c.seen(seq, timeoutMs)));
}

describe("giant room", () => {
  it(`${SOCKETS} sockets on ${SHARDS} shards are one room: one sequence, resume, restart, direct, stats`, async () => {
    const room = "giant-e2e";
    const figures = figuresFor(`giant room: ${SHARDS} shards, one gap-free sequence for every socket through drops and a restart`, SOCKETS);
    const extra: Record<string, number | string> & { notRecovered?: number } = {};
    figures.extra = extra;
    const users = Array.from({ length: SOCKETS }, (_, i) => `g${i}`);
    const all = await clients(server, room, users);
    const publisher = new HttpPublisher(server, room, await allCaps(server, "http-publisher", room), PUBLISH_EVERY_MS);
    /** Seconds `body` took, kept in the figures (loopback, one workerd thread: for the record, never asserted). */
    const timed = async <T>(name: string, body: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      const out = await body();
      extra[`${name}Sec`] = Math.round((performance.now() - t0) / 100) / 10;
      return out;
    };

    await measured("giant", figures, async () => {
      try {
        // ---- probes: one at a time, each placed by the shard count it raised -------------------
        const probeShard: number[] = [];
        let before = shardCounts(await roomStats(server, room));
        expect(before, "no sockets yet").toEqual(Array(SHARDS).fill(0));
        while (new Set(probeShard).size < SHARDS) {
          expect(probeShard.length, `every shard got a probe within ${MAX_PROBES}`).toBeLessThan(MAX_PROBES);
          await all[probeShard.length]!.connect();
          const after = shardCounts(await roomStats(server, room));
          const raised = after.flatMap((n, i) => (n === before[i]! + 1 ? [i] : []));
          expect(
            after.reduce((a, b) => a + b, 0),
            "one more socket",
          ).toBe(before.reduce((a, b) => a + b, 0) + 1);
          expect(raised).toHaveLength(1);
          probeShard.push(raised[0]!);
          before = after;
        }
        const probes = all.slice(0, probeShard.length);
        // one probe per shard: who publishes and sends directs from a known shard
        const reps = Array.from({ length: SHARDS }, (_, i) => probes[probeShard.indexOf(i)]!);
        const repUser = (i: number) => users[probeShard.indexOf(i)]!;
        extra.probes = probes.length;

        // ---- the rest of the room ------------------------------------------------------------
        const rest = all.slice(probes.length);
        await timed("connect", () => connectAll(rest, {}, 50));
        const full = await roomStats(server, room);
        expectSpread(full, SOCKETS);
        expect(full.users).toBe(SOCKETS);
        for (const c of all) expect(c.welcome!.seq, "nothing was published yet").toBe(0);

        // ---- publishes from every shard's sockets and over HTTP, interleaved -------------------
        const socketPublishers = rest.filter((_, i) => i % Math.floor(rest.length / SOCKET_PUBLISHERS) === 0).slice(0, SOCKET_PUBLISHERS);
        const sent = new Map<RoomClient, string[]>();
        const httpDone = Promise.all(Array.from({ length: HTTP_PUBLISHES }, (_, k) => publisher.publishOne({ http: k })));
        for (let r = 0; r < PROBE_PUBLISHES; r++) {
          for (const [i, rep] of reps.entries()) {
            const id = `rep${i}-${r}`;
            rep.publish({ shard: i, r }, id);
            sent.set(rep, [...(sent.get(rep) ?? []), id]);
          }
        }
        for (const [k, c] of socketPublishers.entries()) {
          c.publish({ k }, `sp${k}`);
          sent.set(c, [`sp${k}`]);
        }
        const phase1 = SHARDS * PROBE_PUBLISHES + socketPublishers.length + HTTP_PUBLISHES;
        figures.inputs += phase1;
        await timed("publish", async () => {
          await httpDone;
          await allSeen(all, phase1);
        });
        // the same frames everywhere, seq 1..N each once and in order
        const reference = new Map(all[0]!.messages.map((m) => [m.seq, JSON.stringify(m)]));
        expect([...reference.keys()]).toEqual(Array.from({ length: phase1 }, (_, i) => i + 1));
        let differing = 0;
        for (const c of all) {
          expect(c.seqs(), "seq 1..N, each once, in order").toEqual([...reference.keys()]);
          differing += c.messages.filter((m) => reference.get(m.seq) !== JSON.stringify(m)).length;
        }
        expect(differing, "every client got the very same frames").toBe(0);
        // the echo is the ack: each publisher got its own messages back once, as itself
        for (const [c, ids] of sent) {
          const mine = c.messages.filter((m) => m.id !== undefined && ids.includes(m.id));
          expect(mine.map((m) => m.id)).toEqual(ids);
          expect(new Set(mine.map((m) => m.from.id))).toEqual(new Set([c.welcome!.user.id]));
        }
        // every HTTP publish has a seq of its own, in the same stream
        expect(new Set(publisher.acked.map((a) => a.seq)).size).toBe(HTTP_PUBLISHES);

        // ---- direct across shards: shard i's probe to shard i+1's ------------------------------
        const directs = async (tag: string) => {
          for (const [i, rep] of reps.entries()) {
            const to = (i + 1) % SHARDS;
            const id = `${tag}-${i}`;
            const from = rep.frames.length;
            rep.send({ type: "direct", to: repUser(to), data: { tag, from: i }, id });
            figures.inputs++;
            expect(await rep.next("ack", (a) => a.id === id, { from })).toMatchObject({ id });
            expect(await reps[to]!.next("direct", (d) => d.id === id)).toMatchObject({ from: { id: repUser(i) }, data: { tag, from: i } });
          }
          // nobody else got one
          const receivers = all.filter((c) => c.frames.some((f) => f.type === "direct" && f.id?.startsWith(`${tag}-`)));
          expect(receivers.length).toBe(SHARDS);
        };
        await directs("across");

        // ---- 300 clients drop at once and resume while HTTP publishes go on ---------------------
        publisher.start();
        await eventually(() => (publisher.lastSeq >= phase1 + 5 ? true : undefined), "the publisher running");
        const dropped = rest.filter((c) => !sent.has(c)).slice(0, DROPPED);
        expect(dropped).toHaveLength(DROPPED);
        const replayedBefore = dropped.reduce((n, c) => n + c.replayed, 0);
        for (const c of dropped) c.drop();
        figures.dropped += dropped.length;
        // let the stream move past the drops, so every resume has something to recover
        const atDrop = publisher.lastSeq;
        await eventually(() => (publisher.lastSeq >= atDrop + 5 ? true : undefined), "publishes after the drop");
        const resumed = await timed("dropResume", () => connectAll(dropped, { resume: true }, 50));
        figures.resumed += resumed.length;
        extra.notRecovered = resumed.filter((w) => w.recovered !== true).length;
        await Promise.all(dropped.map((c) => c.seen(c.welcome!.seq)));
        const replayedByDrop = dropped.reduce((n, c) => n + c.replayed, 0) - replayedBefore;
        expect(extra.notRecovered, "every resume after the drop is recovered").toBe(0);
        expect(replayedByDrop, "the resumes replayed what was missed").toBeGreaterThanOrEqual(DROPPED * 5);

        // ---- wrangler dev restarts over its storage; everyone comes back and resumes ------------
        const pre = await roomStats(server, room);
        expectSpread(pre, SOCKETS);
        await server.restart();
        await Promise.all(all.map((c) => c.closed(30_000)));
        figures.dropped += all.length;
        // the publisher resumed on its own (same keys): let it move past the restart
        const target = Math.max(publisher.lastSeq, pre.seq) + 5;
        await eventually(() => (publisher.lastSeq >= target ? true : undefined), `the publisher at seq ${target}`, 30_000);
        const back = await timed("restartResume", () => connectAll(all, { resume: true }, 50));
        figures.resumed += back.length;
        const notRecovered = back.filter((w) => w.recovered !== true).length;
        extra.notRecovered += notRecovered;
        expect(notRecovered, "every resume after the restart is recovered").toBe(0);
        for (const w of back) {
          expect(w.epoch, "storage persisted: same epoch").toBe(pre.epoch);
          expect(w.seq).toBeGreaterThan(pre.seq);
        }
        await publisher.stop();
        const last = publisher.lastSeq;
        await allSeen(all, last);
        // the same ring again: the root's map of who is where was rebuilt from the shards' reports
        await directs("after-restart");

        // ---- one sequence for everyone, across the drops and the restart ----------------------
        const acked = publisher.acked.map((a) => a.seq);
        extra.seqRepeated = acked.length - new Set(acked).size;
        expect(extra.seqRepeated, "no seq assigned twice").toBe(0);
        figures.inputs += publisher.acked.length - HTTP_PUBLISHES;
        for (const c of all) {
          const p = streamProblems(c.seqs(), c.connections[0]!.welcome!.seq + 1, last);
          figures.lost += p.lost;
          figures.duplicated += p.duplicated + p.outOfOrder;
        }
        // the stats add up again: every socket counted once, on one shard; every user once (no ghosts)
        const end = await eventually(async () => {
          const s = await roomStats(server, room);
          return s.connections === SOCKETS && s.users === SOCKETS ? s : undefined;
        }, `${SOCKETS} connections and users in the stats`).catch(async () => roomStats(server, room));
        expectSpread(end, SOCKETS);
        expect(end.users, "users after the restart").toBe(SOCKETS);
        expect(end.seq).toBe(last);
        figures.crashes = crashes(server, all);
        Object.assign(extra, {
          messages: last,
          deliveries: all.reduce((n, c) => n + c.messages.length, 0),
          replayed: all.reduce((n, c) => n + c.replayed, 0),
          shardsBefore: shardCounts(pre).join("/"),
          shardsAfter: shardCounts(end).join("/"),
          publishRetries: publisher.failures,
        });
        expect(figures.lost, "messages lost").toBe(0);
        expect(figures.duplicated, "messages duplicated or out of order").toBe(0);
        expect(figures.crashes).toBe(0);
      } finally {
        await publisher.stop();
        for (const c of all) c.close();
      }
    });
  });
});
