#!/usr/bin/env node
// `npm run bench`: the room against the floor (a minimal hibernating room), same `wrangler dev`,
// same load, same run; every figure beside the floor's and as a ratio, because only same-run
// ratios mean anything on a shared 2-core machine. Many small rooms are also measured against the
// durable floor (the floor plus a seq and one SQLite INSERT per message, floor.ts): what the room
// costs beyond it is what the room adds. Fan-out and window-1 latency also run the room with an
// `onPublish` that answers at once (HookedRoom, worker.ts) beside the room itself: issue #21 lets
// the hook path cost at most 5%. The browser scenario's clients offer permessage-deflate,
// as browsers do, beside the room without it. `--smoke` is the seconds-long CI mode: it
// exits non-zero when anything breaks (a lost or reordered message, a failed handshake). The giant
// scenario sets a sharded room beside the same room unsharded instead, and splits CPU by profile
// (giant.mjs).
//
// Threads: the main thread coordinates; clients live on worker threads (client.mjs), which also
// check every delivery. A room whose clients span threads learns completion through here, so
// its publisher keeps at most `window` messages not yet received by every subscriber.
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { attribute, figures, labeler } from "./giant.mjs";
import { cpuMs, isolatePid, mainThreadCpuMs, memKiB, merge, newHistogram, now, openProfiler, quantile, record, workerdPids } from "./lib.mjs";
import { formatTable } from "./report.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const option = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const SMOKE = flag("--smoke");
const THREADS = Number(option("--threads", 2));
const OUT = option("--out", join(here, "results", SMOKE ? "smoke.json" : "latest.json"));
const ONLY = option("--only", "")?.split(",").filter(Boolean) ?? [];
/** `--server-log FILE`: wrangler dev's output appended there, for a run that fails inside the Worker. */
const SERVER_LOG = option("--server-log", "");
/**
 * Each scenario runs this many rounds, its targets interleaved (floor, room, unbatched, floor,
 * …), and every figure is the median over the rounds: one round of fan-out to 500 was seen to
 * swing a ratio from 0.86× to 1.17× between two runs minutes apart as the neighbours' load came
 * and went, and interleaving puts each target through the same swings.
 */
const ROUNDS = Number(option("--rounds", SMOKE ? 1 : 3));
/**
 * Room storage on tmpfs unless --disk: the room commits each publish before it may send it (the
 * output gate), and a shared VM disk's fsync (0.3 ms quiet, many ms when a neighbour's tests
 * write) would make the run measure the neighbours. The commit still happens; only the flush to
 * a physical disk is skipped. On the edge that wait is replication instead, unrelated to this disk.
 */
const ON_DISK = flag("--disk") || !existsSync("/dev/shm");

/** The bench's own Worker (wrangler.toml there): production's Worker and Room, the floor, an unbatched Room. */
const BENCH_WORKER = ["wrangler.toml", "worker.ts", "floor.ts", "counted.ts"];

/**
 * wrangler dev reloads (and drops every socket) when a watched file changes, and this tree is
 * shared with people editing it: the run serves a copy of the Worker taken at its start.
 */
function snapshot() {
  const root = join(here, "..");
  const dir = mkdtempSync(join(tmpdir(), "edgerooms-bench-src-"));
  for (const f of ["src", "scripts", "package.json", "tsconfig.json", ...BENCH_WORKER.map((b) => join("bench", b))]) {
    if (existsSync(join(root, f))) cpSync(join(root, f), join(dir, f), { recursive: true });
  }
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"));
  return dir;
}

/** Every scenario is bounded in count and in time. */
const PLAN = SMOKE
  ? {
      payloadBytes: 1024,
      handshakes: { n: 20, concurrency: 5 },
      latency: { subscribers: 20, count: 20 },
      fanout: [{ subscribers: 20, window: 8, count: 100, durationMs: 3000 }],
      manyRooms: { rooms: 5, perRoom: 3, window: 4, payloadBytes: 100, count: 50, durationMs: 3000 },
      memory: { rooms: 2, perRoom: 10 },
      browser: { subscribers: 10, window: 8, count: 100, durationMs: 3000, payloadBytes: 200, latencyCount: 10 },
      giant: { sockets: 40, rate: 20, window: 32, count: 50, durationMs: 2500, settleMs: 500 },
    }
  : {
      payloadBytes: 1024,
      handshakes: { n: 500, concurrency: 20 },
      latency: { subscribers: 500, count: 150 },
      fanout: [
        { subscribers: 100, window: 32, count: 20_000, durationMs: 5000 },
        { subscribers: 500, window: 32, count: 5_000, durationMs: 6000 },
      ],
      // Chat-sized messages, few in flight: the load the small-room targets were set on (issue #15).
      manyRooms: { rooms: 200, perRoom: 5, window: 4, payloadBytes: 100, count: 1000, durationMs: 5000 },
      memory: { rooms: 20, perRoom: 100 },
      // Clients that offer permessage-deflate as browsers do, with chat-like text (issue #12).
      browser: { subscribers: 100, window: 32, count: 5_000, durationMs: 5000, payloadBytes: 200, latencyCount: 150 },
      giant: { sockets: 1000, rate: 12, window: 64, count: 300, durationMs: 30_000, settleMs: 2000 },
    };
const RUN_DEADLINE_MS = SMOKE ? 120_000 : 1_200_000; // a full run took 11 min on 2026-12-01

/** Shards of the giant scenario's room. */
const SHARDS = 4;

// Room publishes need the rate limits out of the way; the giant scenario's rooms are sharded.
const VARS = {
  RATE_LIMIT_PER_SEC: "1000000",
  RATE_LIMIT_BURST: "1000000",
  UPGRADE_LIMIT: "1000000",
  SHARDED_ROOMS: `bench-giant-*:${SHARDS}`,
};

const runId = Date.now().toString(36);
const log = (...a) => console.error(`[bench ${((now() - t0) / 1000).toFixed(1)}s]`, ...a);
const t0 = now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- worker threads ------------------------------------------------------------------------

const workers = Array.from({ length: THREADS }, () => new Worker(join(here, "client.mjs")));
let onEvent = () => {};
workers.forEach((w, i) => {
  w.on("message", (msg) => onEvent(i, msg));
  w.on("error", (err) => {
    console.error(`load thread ${i} crashed:`, err);
    process.exitCode = 1;
  });
});

/** Sends `cmd` to every thread (or the given message per thread) and waits for each `ev`. */
function all(ev, msgFor, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    const out = new Array(workers.length);
    let left = workers.length;
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${ev}`)), timeoutMs);
    onEvent = (i, msg) => {
      if (msg.ev !== ev) return;
      out[i] = msg;
      if (--left === 0) {
        clearTimeout(timer);
        resolve(out);
      }
    };
    workers.forEach((w, i) => w.postMessage(msgFor(i)));
  });
}

// ---- measurement ---------------------------------------------------------------------------

let server;
let pids = [];
/** The workerd process running the Worker's isolate (lib.mjs isolatePid). */
let isolate;

function sample() {
  return { at: now(), gen: process.cpuUsage(), workerd: cpuMs(pids) };
}

/** Cores used between two samples: the generator (all threads) and workerd (all processes). */
function cpuBetween(a, b) {
  const wall = b.at - a.at;
  const gen = (b.gen.user - a.gen.user + b.gen.system - a.gen.system) / 1000 / wall;
  let workerd = 0;
  for (const pid of pids) workerd += ((b.workerd[pid] ?? 0) - (a.workerd[pid] ?? 0)) / wall;
  return { gen: round(gen, 2), workerd: round(workerd, 2) };
}

/** The round being run: part of every room name, so no round reuses another's room. */
let roundNo = 0;

/** The median of each number across same-shaped results (arrays element by element). */
function medianOf(results) {
  const [first] = results;
  if (typeof first === "number") {
    const sorted = [...results].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }
  if (Array.isArray(first)) return first.map((_, i) => medianOf(results.map((r) => r[i])));
  if (first && typeof first === "object") {
    return Object.fromEntries(Object.keys(first).map((k) => [k, medianOf(results.map((r) => r[k]))]));
  }
  return first;
}

/** min, median and max of a list of counts. */
function spread(xs) {
  if (xs.length === 0) return { min: NaN, median: NaN, max: NaN };
  const sorted = [...xs].sort((a, b) => a - b);
  return { min: sorted[0], median: sorted[sorted.length >> 1], max: sorted.at(-1) };
}

const round = (x, d = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);
const errors = [];

// ---- clients -------------------------------------------------------------------------------

const tokens = new Map();
async function tokenFor(i) {
  if (!tokens.has(i)) tokens.set(i, await server.token({ sub: `u${i}`, rooms: { "bench-*": ["*"] } }));
  return tokens.get(i);
}

async function urlFor(target, room, user) {
  if (target.kind === "floor") return `${server.wsUrl}${target.path}/${room}/ws`;
  return `${server.wsUrl}${target.path}/rooms/${room}/ws?token=${await tokenFor(user)}`;
}

/**
 * Connects `rooms` rooms of `perRoom` clients (client 0 of each publishes). A room with more
 * clients than threads is spread over all threads; small rooms stay whole on one thread, so
 * their completion is tracked there without the main thread.
 */
async function connectRooms(target, name, rooms, perRoom, concurrency) {
  const spread = rooms === 1;
  const specs = workers.map(() => []);
  const groupDefs = workers.map(() => []);
  const holders = new Map(); // room key -> { threads: Set, publisher: thread }
  for (let r = 0; r < rooms; r++) {
    const room = `bench-${name}-${runId}-${roundNo}-${r}`;
    const key = room;
    holders.set(key, { threads: new Set(), publisher: spread ? 0 : r % workers.length });
    for (let c = 0; c < perRoom; c++) {
      const thread = spread ? c % workers.length : r % workers.length;
      const user = r * perRoom + c;
      const url = await urlFor(target, room, user);
      specs[thread].push({ id: `${target.kind}:${room}:${c}`, url, group: key, publisher: c === 0, deflate: target.deflate === true });
      const h = holders.get(key);
      if (!h.threads.has(thread)) groupDefs[thread].push({ key, kind: target.kind, spans: spread });
      h.threads.add(thread);
    }
  }
  const start = sample();
  const res = await all("connected", (i) => ({
    cmd: "connect",
    specs: specs[i],
    groupDefs: groupDefs[i],
    concurrency: Math.ceil(concurrency / workers.length),
  }));
  const end = sample();
  const hist = newHistogram();
  let failed = 0;
  for (const r of res) {
    for (const ms of r.handshakes) record(hist, ms);
    failed += r.failed;
    errors.push(...r.errors.map((e) => `${target.label} ${name}: ${e}`));
  }
  if (failed > 0) errors.push(`${target.label} ${name}: ${failed} connections failed`);
  return { holders, hist, wallMs: end.at - start.at, cpu: cpuBetween(start, end), n: rooms * perRoom - failed };
}

async function closeRooms() {
  await all("closed", () => ({ cmd: "close" }), 60_000);
}

/** One publish run over the connected rooms; returns rates, latencies and CPU. */
async function publishRun(holders, { count, window, durationMs, rate, payloadBytes = PLAN.payloadBytes, chat = false }, label) {
  const prefixes = new Map(); // spanning room -> per-thread prefix
  let messages = 0;
  await all("armed", () => ({ cmd: "publish", count, window, durationMs, rate, payloadBytes, chat }));
  const start = sample();
  const stats = await new Promise((resolve, reject) => {
    const out = new Array(workers.length);
    let left = workers.length;
    const timer = setTimeout(async () => {
      onEvent = (i, msg) => {
        if (msg.ev === "status") out[i] = msg.stats;
      };
      workers.forEach((w) => w.postMessage({ cmd: "status" }));
      await sleep(500);
      const stuck = out.flatMap((s) => s?.incomplete ?? []);
      reject(new Error(`${label}: messages lost or stuck (${stuck.join("; ")}) ${out.flatMap((s) => s?.errors ?? []).join("; ")}`));
    }, durationMs + 30_000);
    onEvent = (i, msg) => {
      switch (msg.ev) {
        case "progress":
          for (const [key, prefix] of Object.entries(msg.updates)) {
            let per = prefixes.get(key);
            if (!per) prefixes.set(key, (per = new Map()));
            per.set(i, prefix);
            const h = holders.get(key);
            if (per.size < h.threads.size) continue;
            const min = Math.min(...per.values());
            workers[h.publisher].postMessage({ cmd: "progress", updates: { [key]: min } });
          }
          break;
        case "published":
          messages += msg.total;
          for (const t of holders.get(msg.key).threads) workers[t].postMessage({ cmd: "total", key: msg.key, total: msg.total });
          break;
        case "done":
          out[i] = msg.stats;
          if (--left === 0) {
            clearTimeout(timer);
            resolve(out);
          }
          break;
      }
    };
    workers.forEach((w) => w.postMessage({ cmd: "go" }));
  });
  const end = sample();
  const hist = newHistogram();
  let deliveries = 0;
  let frames = 0;
  let wireBytes = 0;
  const perRoom = [];
  let firstSend = Infinity;
  let lastReceipt = 0;
  const elu = [];
  for (const s of stats) {
    merge(hist, s.hist);
    deliveries += s.deliveries;
    frames += s.frames;
    wireBytes += s.wireBytes;
    perRoom.push(...s.perRoom);
    firstSend = Math.min(firstSend, s.firstSend);
    lastReceipt = Math.max(lastReceipt, s.lastReceipt);
    elu.push(round(s.elu, 2));
    errors.push(...s.errors.map((e) => `${label}: ${e}`));
  }
  const seconds = (lastReceipt - firstSend) / 1000;
  const cpu = cpuBetween(start, end);
  return {
    messages,
    deliveries,
    frames,
    seconds: round(seconds, 2),
    perSec: Math.round(deliveries / seconds),
    framesPerSec: Math.round(frames / seconds),
    p50: round(quantile(hist, 0.5), 2),
    p99: round(quantile(hist, 0.99), 2),
    max: round(hist.max, 2),
    cpu,
    // Robust to a busy machine: workerd CPU time per delivery (what the floor says is ~20 µs).
    workerdUsPerDelivery: round((cpu.workerd * (end.at - start.at) * 1000) / deliveries, 2),
    deliveriesPerMessage: round(deliveries / frames, 1),
    wireBytesPerDelivery: round(wireBytes / deliveries, 1),
    // Spread of messages per room over the run: a closed loop (window) served fairly keeps them close.
    roomMessages: spread(perRoom),
    elu,
  };
}

// ---- scenarios -----------------------------------------------------------------------------

async function handshakes(target) {
  const { n, concurrency } = PLAN.handshakes;
  const c = await connectRooms(target, "hs", 1, n, concurrency);
  await closeRooms();
  return {
    n: c.n,
    perSec: Math.round(c.n / (c.wallMs / 1000)),
    p50: round(quantile(c.hist, 0.5), 2),
    p99: round(quantile(c.hist, 0.99), 2),
    cpu: c.cpu,
  };
}

async function fanout(target) {
  if (target.hook) await hookCalls();
  const out = {};
  const l = PLAN.latency;
  for (const f of PLAN.fanout) {
    const c = await connectRooms(target, `fan${f.subscribers}`, 1, f.subscribers, 50);
    if (l.subscribers === f.subscribers) {
      out[`latency${l.subscribers}`] = await publishRun(
        c.holders,
        { count: l.count, window: 1, durationMs: 30_000 },
        `${target.label} window-1 latency`,
      );
    }
    out[`fanout${f.subscribers}`] = await publishRun(c.holders, f, `${target.label} fan-out ${f.subscribers}`);
    await closeRooms();
  }
  if (!out[`latency${l.subscribers}`]) {
    const c = await connectRooms(target, `lat${l.subscribers}`, 1, l.subscribers, 50);
    out[`latency${l.subscribers}`] = await publishRun(
      c.holders,
      { count: l.count, window: 1, durationMs: 30_000 },
      `${target.label} window-1 latency`,
    );
    await closeRooms();
  }
  if (target.hook) {
    const published = Object.values(out).reduce((n, r) => n + r.messages, 0);
    const calls = await hookCalls();
    if (calls !== published) errors.push(`${target.label}: onPublish ran ${calls} times for ${published} publishes`);
  }
  return out;
}

/** HookedRoom's onPublish calls since the last ask (bench/worker.ts). */
async function hookCalls() {
  const res = await fetch(`${server.url}/bench/hook-calls`);
  return (await res.json()).calls;
}

async function manyRooms(target) {
  const m = PLAN.manyRooms;
  const c = await connectRooms(target, "many", m.rooms, m.perRoom, 50);
  const r = await publishRun(c.holders, m, `${target.label} many rooms`);
  await closeRooms();
  // The joins too: a first join also starts its room's object.
  return {
    ...r,
    joins: { perSec: Math.round(c.n / (c.wallMs / 1000)), p50: round(quantile(c.hist, 0.5), 2), p99: round(quantile(c.hist, 0.99), 2) },
  };
}

/**
 * Browser-like clients: each offers permessage-deflate (ws offers what Chromium does) and the
 * text is chat-like, so compression does real work. The same fan-out and window-1 runs as above
 * at 100 subscribers; CPU per delivery and bytes on the wire are the trade-off to decide on.
 */
async function browser(target) {
  const b = PLAN.browser;
  const c = await connectRooms(target, "browser", 1, b.subscribers, 50);
  const latency = await publishRun(
    c.holders,
    { count: b.latencyCount, window: 1, durationMs: 30_000, payloadBytes: b.payloadBytes, chat: true },
    `${target.label} browser window-1`,
  );
  const fan = await publishRun(c.holders, { ...b, chat: true }, `${target.label} browser fan-out`);
  await closeRooms();
  return { latency, fanout: fan };
}

/**
 * One room on SHARDS shards, or the same room unsharded (the baseline), with the same sockets
 * and a publisher at a steady rate below what this machine can carry. Locally every object shares
 * one workerd thread, so this measures CPU, not throughput: the isolate thread's CPU over the run,
 * split between the root and the shards by a CPU profile of the isolate (giant.mjs says how).
 * Every message is checked at every socket, in order and none lost, as in every scenario.
 */
async function giant(target) {
  const g = PLAN.giant;
  if (isolate === undefined) throw new Error(`cannot tell which of workerd ${pids.join(",")} runs the Worker`);
  const c = await connectRooms(target, target.room, 1, g.sockets, 50);
  // The joins' presence is told (held, then as a count) before the measurement starts.
  await sleep(g.settleMs);
  const [room] = c.holders.keys();
  const shards = target.shards ? await shardSockets(room) : [];
  if (shards.length !== (target.shards ?? 0)) errors.push(`${target.label}: ${room} has ${shards.length} shards, not ${target.shards}`);
  const profiler = await openProfiler(server.inspectorPort(), 200);
  try {
    await profiler.start();
    const before = mainThreadCpuMs(isolate);
    const r = await publishRun(c.holders, g, `${target.label} giant room`);
    const cpuMs = mainThreadCpuMs(isolate) - before;
    const profile = await profiler.stop();
    await closeRooms();
    const sources = new Map();
    for (const n of profile.nodes) {
      const id = n.callFrame.scriptId;
      if (n.callFrame.url && !sources.has(id)) sources.set(id, await profiler.source(id));
    }
    const samples = attribute(profile, labeler(sources));
    // Kept for a look in DevTools, and for profiles whose attribution looks off.
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(join(dirname(OUT), `giant-${target.room}-${roundNo}.cpuprofile`), JSON.stringify(profile));
    writeFileSync(join(dirname(OUT), `giant-${target.room}-${roundNo}.sources.json`), JSON.stringify(Object.fromEntries(sources)));
    return {
      sockets: c.n,
      shards,
      ratePerSec: round(r.messages / r.seconds, 1),
      ...figures({ cpuMs, samples, messages: r.messages, deliveries: r.deliveries, shards }),
      framesPerMessage: r.deliveriesPerMessage,
      p50: r.p50,
      p99: r.p99,
      cores: r.cpu,
      elu: r.elu,
      cpuMs,
      samples,
    };
  } finally {
    profiler.close();
  }
}

/** How many sockets each shard of `room` holds, in shard order (the room's stats). */
async function shardSockets(room) {
  const res = await fetch(`${server.url}/rooms/${room}/stats`, { headers: { authorization: `Bearer ${await tokenFor(0)}` } });
  const stats = await res.json();
  return (stats.shards ?? []).map((s) => s.connections);
}

/**
 * A restarted wrangler dev, warmed up, for the giant scenario's CPU profiles. Twice, after minutes
 * of other scenarios, wrangler's inspector proxy listed the target and opened the session, then
 * never answered Profiler.enable; on a fresh server it answers. (workerd's own inspector port is no
 * way around it: tried, it got no answers either, the proxy holding the runtime's session.)
 */
async function freshServer() {
  log("restarting wrangler dev for the giant scenario's profiles");
  await restartServer();
  await warmUp(TARGETS.room);
}

/** Every socket drops; the workerd processes are new, so their pids are found again. */
async function restartServer() {
  await server.restart();
  findProcesses();
}

function findProcesses() {
  pids = workerdPids(server.pid());
  isolate = isolatePid(pids, server.port);
}

/**
 * Unmeasured connections: the first ones to a fresh server pay for compiling the Worker and its
 * classes, which no measured target should carry alone.
 */
async function warmUp(target) {
  await connectRooms(target, "warmup", 1, PLAN.handshakes.n / 10, PLAN.handshakes.concurrency);
  await closeRooms();
}

/** Idle memory on a freshly started workerd: RSS before and after the idle connections. */
async function memory(target) {
  const { rooms, perRoom } = PLAN.memory;
  await restartServer();
  // One connection first, so compiling the Worker is not counted as connection memory.
  const warm = await connectRooms(target, "memwarm", 1, 1, 1);
  await closeRooms();
  await sleep(1000);
  const before = memKiB(pids);
  const c = await connectRooms(target, "mem", rooms, perRoom, 50);
  await sleep(2000);
  const after = memKiB(pids);
  await closeRooms();
  const n = c.n;
  let rss = 0;
  let peak = 0;
  for (const pid of pids) {
    rss += after[pid].rss - before[pid].rss;
    peak += after[pid].hwm - before[pid].rss;
  }
  return { n, warm: warm.n, rssKiBPerConn: round(rss / n, 1), peakKiBPerConn: round(peak / n, 1), before, after };
}

// ---- main ----------------------------------------------------------------------------------

/** `path`: where bench/worker.ts serves the target's rooms. */
const TARGETS = {
  floor: { kind: "floor", label: "floor", path: "/floor" },
  durable: { kind: "floor", label: "durable floor", path: "/durable-floor" },
  room: { kind: "room", label: "room", path: "" },
  unbatched: { kind: "room", label: "room (unbatched)", path: "/unbatched" },
  /** The room with the cheapest onPublish a user can write (HookedRoom, worker.ts): what the hook path costs (#21). */
  hooked: { kind: "room", label: "room (onPublish)", path: "/hooked", hook: true },
};
/** The browser scenario's: both sides offered deflate, and the room without it for what deflate costs. */
const BROWSER_TARGETS = [
  { ...TARGETS.floor, label: "floor, deflate", deflate: true },
  { ...TARGETS.room, label: "room, deflate", deflate: true },
  { ...TARGETS.room, label: "room, no deflate" },
];
/** The giant scenario's: the room unsharded (its baseline) and on SHARDS shards (VARS). */
const GIANT_TARGETS = [
  { ...TARGETS.room, room: "flat" },
  { ...TARGETS.room, label: `room, ${SHARDS} shards`, room: "giant", shards: SHARDS },
];

/**
 * A round's order of `runs` ([target, results] pairs). The room and the hooked room are judged on
 * a 5% difference, less than the drift of this machine over the seconds between two targets, so
 * they swap places every other round instead of the hooked room always running second: with an
 * even number of rounds each runs first as often as the other.
 */
function inRoundOrder(runs, n) {
  const a = runs.findIndex(([t]) => t === TARGETS.room);
  const b = runs.findIndex(([t]) => t === TARGETS.hooked);
  if (n % 2 === 0 && a >= 0 && b >= 0) [runs[a], runs[b]] = [runs[b], runs[a]];
  return runs;
}

async function main() {
  const killer = setTimeout(() => {
    console.error(`bench: over its ${RUN_DEADLINE_MS / 1000} s budget; stopping`);
    void server?.stop().finally(() => process.exit(2));
  }, RUN_DEADLINE_MS);
  killer.unref();
  log(`starting wrangler dev (${THREADS} load threads, ${cpus().length} cores)`);
  const persistTo = ON_DISK ? undefined : mkdtempSync("/dev/shm/edgerooms-bench-");
  const copy = snapshot();
  const { startDevServer } = await import(join(copy, "scripts", "devserver.mjs"));
  server = await startDevServer({
    vars: VARS,
    config: "bench/wrangler.toml",
    ...(persistTo ? { persistTo } : {}),
    ...(SERVER_LOG ? { log: (line) => appendFileSync(SERVER_LOG, `${line}\n`) } : {}),
  });
  findProcesses();
  log(`wrangler pid ${server.pid()}, workerd pids ${pids.join(",")} (the Worker's: ${isolate})`);
  const results = {};
  const everyRound = {};
  const want = (s) => ONLY.length === 0 || ONLY.includes(s);
  const targets = [TARGETS.floor, TARGETS.room, TARGETS.unbatched];
  /** Fan-out and window-1 latency also run the hooked room, judged against the room of the same rounds (#21). */
  const fanoutTargets = [TARGETS.floor, TARGETS.room, TARGETS.hooked, TARGETS.unbatched];
  /** Small rooms are measured against both floors: the room's own cost is what it adds to the durable one. */
  const small = [TARGETS.floor, TARGETS.durable, TARGETS.room];
  try {
    for (const target of [...targets, TARGETS.hooked, TARGETS.durable]) {
      log(`warm-up: ${target.label}`);
      await warmUp(target);
    }
    for (const [name, fn] of Object.entries({ handshakes, fanout, manyRooms, browser, giant })) {
      if (!want(name)) continue;
      if (name === "giant" && (ONLY.length === 0 || ONLY.length > 1)) await freshServer();
      const of = { fanout: fanoutTargets, manyRooms: small, browser: BROWSER_TARGETS, giant: GIANT_TARGETS }[name] ?? targets.slice(0, 2);
      const runs = new Map(of.map((t) => [t, []]));
      for (roundNo = 1; roundNo <= ROUNDS; roundNo++) {
        for (const [target, done] of inRoundOrder([...runs], roundNo)) {
          log(`${name} (round ${roundNo}/${ROUNDS}): ${target.label}`);
          done.push(await fn(target));
        }
      }
      for (const [target, done] of runs) {
        (results[name] ??= {})[target.label] = medianOf(done);
        (everyRound[name] ??= {})[target.label] = done;
      }
    }
    if (want("memory")) {
      // Deflate keeps a compression context per connection: its memory is part of the browser trade-off.
      for (const target of [...targets.slice(0, 2), ...BROWSER_TARGETS.slice(0, 2)]) {
        log(`memory: ${target.label}`);
        (results.memory ??= {})[target.label] = await memory(target);
      }
    }
  } catch (err) {
    errors.push(String(err?.stack ?? err));
  } finally {
    await server.stop();
    await Promise.all(workers.map((w) => w.terminate()));
    if (persistTo) rmSync(persistTo, { recursive: true, force: true });
    rmSync(copy, { recursive: true, force: true });
  }
  const report = {
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, memGiB: round(totalmem() / 2 ** 30, 1), node: process.version },
    smoke: SMOKE,
    storage: ON_DISK ? "disk" : "tmpfs",
    threads: THREADS,
    rounds: ROUNDS,
    plan: PLAN,
    results,
    everyRound,
    errors,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(report, null, 2));
  console.log(formatTable(report));
  if (errors.length > 0) {
    console.error(`bench: ${errors.length} problem(s):\n  ${errors.slice(0, 30).join("\n  ")}`);
    process.exitCode = 1;
  }
  log(`wrote ${OUT}`);
}

await main();
