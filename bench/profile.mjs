#!/usr/bin/env node
// `npm run bench:profile -- <handshakes|joins|fanout|rooms> [--floor|--durable-floor|--hooked]`: where the room's
// time goes. Starts `wrangler dev`, puts one bench-shaped load on a room (or on a floor), and
// records a CPU profile of the Worker's isolate through workerd's inspector for just that load.
// Prints the functions with the most self time and the isolate's busy time per operation, and
// writes the .cpuprofile (open it in Chrome DevTools) to bench/results/.
//
// `rooms` is the bench's many small rooms: it also prints the latency each message took and, for
// the room, its storage calls per publish (counted by bench/counted.ts's CountedRoom). `joins` is
// their joins (1,000 into 200 fresh rooms), with the room's storage calls per join. `--hooked`
// profiles the room with an onPublish that accepts at once (bench/worker.ts HookedRoom) and prints
// the time spent in the hook path (the hook, its call and its verdict, but not the store they lead
// to) per publish: issue #21's cost, without the run-to-run noise of a throughput ratio.
//
// "(program)" is time in workerd's own code (sockets, the event loop); native calls made from
// JavaScript (`send`, `fetch`, `setAlarm`) appear under their own names. The proxy process
// wrangler runs in front of the Worker is not in the profile.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { startDevServer } from "../scripts/devserver.mjs";
import { newHistogram, now, openProfiler, publishFrame, quantile, record } from "./lib.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const SCENARIO = argv.find((a, i) => !a.startsWith("--") && argv[i - 1] !== "--messages") ?? "handshakes";
const FLOOR = argv.includes("--floor") ? "/floor" : argv.includes("--durable-floor") ? "/durable-floor" : null;
const HOOKED = !FLOOR && argv.includes("--hooked");
const JOINS = { n: 500, concurrency: 20 };
const messagesArg = argv.indexOf("--messages");
/** `--messages N`: more publishes, for a finer reading of a small per-publish cost (the hook path's). */
const FANOUT = { subscribers: 500, messages: messagesArg >= 0 ? Number(argv[messagesArg + 1]) : 400, window: 32, payloadBytes: 1024 };
/**
 * The hook path's frames (src/room/sequencer.ts and hooks.ts): a sample is the hook's when, going
 * up its stack from the leaf, one of these comes before the store it leads to. `#apply` is left
 * out: V8 inlines `#store` into it, so its self time is mostly the store's (seen: `count` and
 * `flushDue` right under `#apply`), which the room without hooks pays too.
 */
const HOOK_FRAMES = new Set(["onPublish", "callHook", "#decide", "decide", "publishVerdict", "isPromise"]);
const STORE_FRAMES = new Set(["#store", "store"]);

/** As the bench's many small rooms (run.mjs), each publisher sending `messages`. */
const ROOMS = { rooms: 200, perRoom: 5, messages: 150, window: 4, payloadBytes: 100 };
if (!["handshakes", "joins", "fanout", "rooms"].includes(SCENARIO)) {
  console.error("usage: npm run bench:profile -- <handshakes|joins|fanout|rooms> [--floor|--durable-floor|--hooked]");
  process.exit(2);
}

// State on tmpfs, as in the bench (run.mjs says why).
const persistTo = existsSync("/dev/shm") ? mkdtempSync("/dev/shm/edgerooms-profile-") : undefined;
const server = await startDevServer({
  config: "bench/wrangler.toml",
  ...(persistTo ? { persistTo } : {}),
  vars: { RATE_LIMIT_PER_SEC: "1000000", RATE_LIMIT_BURST: "1000000", UPGRADE_LIMIT: "1000000" },
});
const room = `profile-${Date.now().toString(36)}`;

async function open(user, onFrame = () => {}, name = room) {
  // The room scenario's rooms count their storage calls (counted.ts).
  const path = HOOKED ? "/hooked/rooms" : SCENARIO === "rooms" || SCENARIO === "joins" ? "/counted/rooms" : "/rooms";
  const url = FLOOR
    ? `${server.wsUrl}${FLOOR}/${name}/ws`
    : `${server.wsUrl}${path}/${name}/ws?token=${await server.token({ sub: user, rooms: { [`${room}*`]: ["*"] } })}`;
  const ws = new WebSocket(url, { perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.on("error", reject);
    ws.on("message", (data) => {
      const parsed = JSON.parse(data.toString());
      for (const f of Array.isArray(parsed) ? parsed : [parsed]) {
        if (f.type === "welcome") resolve(ws);
        else onFrame(f);
      }
    });
  });
}

/** `n` users joining, `concurrency` at a time; user i into `roomOf(i)` (by default the one room). */
async function joinAll(n, concurrency, onFrame, roomOf = () => room) {
  const sockets = [];
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      sockets.push(await open(`u${i}`, onFrame, roomOf(i)));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return sockets;
}

let sockets = [];
let operations;
const profiler = await openProfiler(server.inspectorPort());
try {
  if (SCENARIO === "handshakes") {
    await profiler.start();
    sockets = await joinAll(JOINS.n, JOINS.concurrency);
    operations = { count: JOINS.n, what: "handshake" };
  } else if (SCENARIO === "joins") {
    operations = await roomJoins();
  } else if (SCENARIO === "rooms") {
    operations = await smallRooms();
  } else {
    let received = 0;
    const frame = (f) => {
      if (f.type === "message" || f.type === "publish") received++; // the floor echoes the frame as sent
    };
    sockets = await joinAll(FANOUT.subscribers, 50, frame);
    await new Promise((r) => setTimeout(r, 1000)); // the joins' presence settles before the profile
    received = 0;
    const publisher = sockets[0];
    const payload = "x".repeat(FANOUT.payloadBytes);
    const total = FANOUT.messages * FANOUT.subscribers;
    await profiler.start();
    for (let sent = 0; sent < FANOUT.messages; sent++) {
      // keep at most `window` messages not yet received by everyone
      while (sent * FANOUT.subscribers - received > FANOUT.window * FANOUT.subscribers) {
        await new Promise((r) => setTimeout(r, 1));
      }
      publisher.send(JSON.stringify({ type: "publish", data: payload }));
    }
    while (received < total) await new Promise((r) => setTimeout(r, 5));
    operations = { count: total, what: "delivery", publishes: FANOUT.messages };
  }
  const profile = await profiler.stop();
  report(profile, operations);
} finally {
  profiler.close();
  for (const ws of sockets) ws.terminate();
  await server.stop();
  if (persistTo) rmSync(persistTo, { recursive: true, force: true });
}

/** Every room's publisher keeps at most `window` messages not yet received by all of its room. */
async function smallRooms() {
  const { rooms, perRoom, messages, window, payloadBytes } = ROOMS;
  const hist = newHistogram();
  const groups = [];
  for (let r = 0; r < rooms; r++) {
    const g = { sent: 0, arrivals: new Map(), done: 0 };
    const frame = (f) => {
      const data = f.type === "message" || f.type === "publish" ? f.data : null;
      if (!data) return;
      record(hist, now() - data.t);
      const n = (g.arrivals.get(data.k) ?? 0) + 1;
      if (n < perRoom) return void g.arrivals.set(data.k, n);
      g.arrivals.delete(data.k);
      g.done++;
      pump(g);
    };
    for (let c = 0; c < perRoom; c++) sockets.push(await open(`u${r}-${c}`, frame, `${room}-${r}`));
    g.publisher = sockets.at(-perRoom);
    groups.push(g);
  }
  let finished;
  const allDone = new Promise((r) => (finished = r));
  let left = rooms;
  function pump(g) {
    while (g.sent < messages && g.sent - g.done < window) g.publisher.send(publishFrame(g.sent++, payloadBytes));
    if (g.done === messages && --left === 0) finished();
  }
  await new Promise((r) => setTimeout(r, 1000)); // the joins' presence settles before the profile
  await storageOps(); // from here on
  await profiler.start();
  const t0 = now();
  for (const g of groups) pump(g);
  await allDone;
  const seconds = (now() - t0) / 1000;
  const count = rooms * perRoom * messages;
  console.log(
    `${Math.round(count / seconds)} deliveries/s; latency p50 ${quantile(hist, 0.5).toFixed(1)} ms, p99 ${quantile(hist, 0.99).toFixed(1)} ms, max ${hist.max.toFixed(1)} ms`,
  );
  if (!FLOOR && !HOOKED) {
    const ops = await storageOps();
    const per = (n) => (n / ops.messages).toFixed(3);
    console.log(
      `storage per publish (${ops.messages} publishes): ${per(ops.writeEvents)} events that wrote (each its own commit), ${per(ops.setAlarm)} setAlarm, ${per(ops.alarms)} alarms run`,
    );
    for (const [statement, n] of Object.entries(ops.statements).sort((a, b) => b[1] - a[1])) console.log(`  ${per(n)} × ${statement}`);
  }
  return { count, what: "delivery", publishes: rooms * messages };
}

/** The bench's many small rooms' joins: room by room, 50 at a time, each room's first join starting it. */
async function roomJoins() {
  const { rooms, perRoom } = ROOMS;
  const n = rooms * perRoom;
  const t0 = now();
  await storageOps(); // from here on
  await profiler.start();
  sockets = await joinAll(
    n,
    50,
    () => {},
    (i) => `${room}-${Math.floor(i / perRoom)}`,
  );
  console.log(`${Math.round(n / ((now() - t0) / 1000))} joins/s`);
  if (!FLOOR && !HOOKED) {
    const ops = await storageOps();
    const per = (x) => (x / n).toFixed(3);
    console.log(`storage per join (${n} joins into ${rooms} new rooms): ${per(ops.writeEvents)} events that wrote, ${per(ops.setAlarm)} setAlarm`);
    for (const [statement, k] of Object.entries(ops.statements).sort((a, b) => b[1] - a[1])) console.log(`  ${per(k)} × ${statement}`);
  }
  return { count: n, what: "join" };
}

async function storageOps() {
  return (await fetch(`${server.url}/bench/storage-ops`)).json();
}

function hookSamples(profile, nodes) {
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let hook = 0;
  for (const id of profile.samples) {
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const name = nodes.get(at).callFrame.functionName;
      if (STORE_FRAMES.has(name)) break;
      if (HOOK_FRAMES.has(name)) {
        hook++;
        break;
      }
    }
  }
  return hook;
}

function report(profile, { count, what, publishes }) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let idle = 0;
  for (const id of profile.samples) {
    const { functionName, url, lineNumber } = nodes.get(id).callFrame;
    if (functionName === "(idle)") idle++;
    const where = url ? ` ${url.split("/").pop()}:${lineNumber + 1}` : "";
    const key = `${functionName || "(anonymous)"}${where}`;
    self.set(key, (self.get(key) ?? 0) + 1);
  }
  const samples = profile.samples.length;
  const spanMs = (profile.endTime - profile.startTime) / 1000;
  const busyMs = (spanMs * (samples - idle)) / samples;
  console.log(
    `${SCENARIO} on the ${FLOOR ? FLOOR.slice(1) : HOOKED ? "hooked room" : "room"}: ${count} ${what === "delivery" ? "deliveries" : `${what}s`} in ${Math.round(spanMs)} ms`,
  );
  console.log(`isolate busy ${Math.round(busyMs)} ms = ${((busyMs * 1000) / count).toFixed(1)} µs per ${what}`);
  if (HOOKED && publishes) {
    const hook = hookSamples(profile, nodes);
    const hookMs = (spanMs * hook) / samples;
    console.log(
      `the hook path (onPublish, its call and verdict; not the store): ${hook} of ${samples - idle} busy samples ` +
        `(${((100 * hook) / (samples - idle)).toFixed(2)}%) ≈ ${((hookMs * 1000) / publishes).toFixed(2)} µs per publish (${publishes} publishes)`,
    );
  }
  console.log("");
  console.log("| self % of busy | function |\n|---:|---|");
  for (const [k, v] of [...self]
    .filter(([k]) => !k.startsWith("(idle)"))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)) {
    console.log(`| ${((100 * v) / (samples - idle)).toFixed(1)} | ${k} |`);
  }
  const out = join(here, "results", `profile-${SCENARIO}-${FLOOR ? FLOOR.slice(1) : HOOKED ? "hooked" : "room"}.cpuprofile`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(profile));
  console.log(`\nwrote ${out}`);
}
