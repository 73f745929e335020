// The #22 spike's load script: one connection for many rooms, measured against direct sockets in
// the same `wrangler dev` run (bench/spike-mux/worker.ts has the designs). Not part of
// `npm run bench` or `npm test`: run it by hand, on a quiet machine.
//
//   node bench/spike-mux/run.mjs [--clients 50] [--rooms 20] [--per-client 10] [--messages 50]
//                                [--rate 25] [--rounds 3] [--only direct,a,...] [--no-memory] [--out FILE]
//
// Each round runs every design in turn (the order rotates by round): CLIENTS clients each join
// PER_CLIENT of ROOMS fresh rooms (client i: rooms i, i+1, … mod ROOMS), one publisher socket per
// room publishes MESSAGES messages at RATE per second, and every membership must receive every
// message once, in seq order. Then, unless --no-memory, each design again on a freshly restarted
// workerd with no traffic: RSS growth per client. Loopback only, bounded in count and time.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cpuMs, isolatePid, mainThreadCpuMs, memKiB, workerdPids } from "../lib.mjs";
import { startDevServer } from "../../scripts/devserver.mjs";

const { values: opt } = parseArgs({
  options: {
    clients: { type: "string", default: "50" },
    rooms: { type: "string", default: "20" },
    "per-client": { type: "string", default: "10" },
    messages: { type: "string", default: "50" },
    rate: { type: "string", default: "25" },
    rounds: { type: "string", default: "3" },
    only: { type: "string", default: "" },
    "no-memory": { type: "boolean", default: false },
    out: { type: "string", default: "" },
  },
});
const CLIENTS = Number(opt.clients);
const ROOMS = Number(opt.rooms);
const PER_CLIENT = Math.min(Number(opt["per-client"]), ROOMS);
const MESSAGES = Number(opt.messages);
const RATE = Number(opt.rate);
const ROUNDS = Number(opt.rounds);
const DEADLINE_MS = 15 * 60_000;
const STEP_MS = 60_000;

/**
 * `mux`: one socket per client (its subscribe frames name the rooms); otherwise one socket per
 * membership at `path(room)`. `real`: the rooms are the real Room (else PushRoom).
 */
const DESIGNS = {
  direct: { label: "direct sockets, real room", real: true, path: (r) => `/rooms/${r}/ws` },
  a: { label: "(a) relay in the Worker", real: true, mux: "/a/connect" },
  c: { label: "(c) relay in a per-connection DO", real: true, mux: "/c/connect" },
  pushDirect: { label: "direct sockets, PushRoom", real: false, path: (r) => `/push/${r}/ws` },
  b: { label: "(b) per-connection DO, RPC per message", real: false, mux: "/b/connect" },
  bBatch: { label: "(b) per-connection DO, RPC per turn", real: false, mux: "/b/connect", batch: true },
};
const names = opt.only ? opt.only.split(",") : Object.keys(DESIGNS);
for (const n of names) if (!DESIGNS[n]) throw new Error(`unknown design ${n} (${Object.keys(DESIGNS).join(", ")})`);

const log = (...a) => console.error(`[spike-mux ${((performance.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const t0 = performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const runId = Date.now().toString(36);

let server;
let pids = [];
let isolate;
function findProcesses() {
  pids = workerdPids(server.pid());
  isolate = isolatePid(pids, server.port);
}
function sample() {
  const all = cpuMs(pids);
  return {
    at: performance.now(),
    workerd: Object.values(all).reduce((a, b) => a + b, 0),
    isolate: mainThreadCpuMs(isolate),
    gen: process.cpuUsage(),
  };
}
function rss() {
  return Object.values(memKiB(pids)).reduce((a, m) => a + m.rss, 0);
}

function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: over ${ms / 1000} s`)), ms))),
  ]);
}

/** `onMessage` is listening before the open: a room's welcome can arrive in the 101's own read. */
function open(url, onMessage = () => {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.on("message", onMessage);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`${url.split("?")[0]}: HTTP ${res.statusCode}`)));
  });
}

/** Runs `fn` over `items`, `n` at a time. */
async function pool(items, n, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

/** The room's frames in one server message: a frame, or an array of frames in order. */
const framesOf = (f) => (Array.isArray(f) ? f : [f]);

/**
 * One client's memberships: per room, messages received, the last seq (order check) and
 * duplicates or reorders seen; `ready` resolves once every room has welcomed (or subscribed).
 */
function membership(rooms) {
  const state = new Map(rooms.map((r) => [r, { got: 0, last: 0, bad: 0, welcomed: false }]));
  let waiting = rooms.length;
  let ready;
  const readyP = new Promise((r) => (ready = r));
  if (waiting === 0) ready();
  return {
    state,
    ready: readyP,
    welcome(room) {
      const s = state.get(room);
      if (!s || s.welcomed) return;
      s.welcomed = true;
      if (--waiting === 0) ready();
    },
    frames(room, frames, onMessage) {
      const s = state.get(room);
      if (!s) return;
      for (const f of framesOf(frames)) {
        if (f.type === "welcome") this.welcome(room);
        else if (f.type === "message") {
          if (f.seq <= s.last) s.bad++;
          s.last = f.seq;
          s.got++;
          onMessage();
        }
      }
    },
  };
}

async function tokenFor(user) {
  return server.token({ sub: user, rooms: { "spike-*": ["*"] } });
}

/** Connects every client of `design` to its rooms; returns them (sockets, memberships) and the room names. */
async function connect(design, key, tag, onMessage, count = CLIENTS) {
  const roomNames = Array.from({ length: ROOMS }, (_, r) => `spike-${runId}-${tag}-${key}${design.batch ? "-batch" : ""}-${r}`);
  const clients = [];
  for (let i = 0; i < count; i++) {
    const rooms = Array.from({ length: PER_CLIENT }, (_, j) => roomNames[(i + j) % ROOMS]);
    clients.push({ user: `u${i}`, rooms, m: membership(rooms), sockets: [] });
  }
  const jobs = [];
  for (const c of clients) {
    const token = await tokenFor(c.user);
    if (design.mux) jobs.push({ c, url: `${server.wsUrl}${design.mux}?token=${token}` });
    else for (const r of c.rooms) jobs.push({ c, r, url: `${server.wsUrl}${design.path(r)}?token=${token}` });
  }
  await pool(jobs, 16, async ({ c, r, url }) => {
    if (design.mux) {
      const ws = await open(url, (data) => {
        const msg = JSON.parse(data.toString());
        if (msg.subscribed) c.m.welcome(msg.room);
        else if (msg.frames !== undefined) c.m.frames(msg.room, msg.frames, onMessage);
      });
      c.sockets.push(ws);
      for (const room of c.rooms) ws.send(JSON.stringify({ room, type: "subscribe" }));
    } else {
      // A real room's welcome is its first frame, and PushRoom's too: either way it says "joined".
      c.sockets.push(await open(url, (data) => c.m.frames(r, JSON.parse(data.toString()), onMessage)));
    }
  });
  await within(Promise.all(clients.map((c) => c.m.ready)), STEP_MS, `${design.label}: joins`);
  return { clients, roomNames };
}

async function closeAll(sockets) {
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          const timer = setTimeout(() => {
            ws.terminate();
            resolve();
          }, 3000);
          ws.once("close", () => {
            clearTimeout(timer);
            resolve();
          });
          ws.close(1000);
        }),
    ),
  );
}

/** RPCs the push rooms sent since the last call (worker.ts counts them). */
async function rpcCount() {
  return (await (await fetch(`${server.url}/spike/rpcs`)).json()).rpcs;
}

/** One design's round: connect, publish MESSAGES per room, wait for every delivery, close. */
async function deliveryRound(key, n) {
  const design = DESIGNS[key];
  let delivered = 0;
  const expected = CLIENTS * PER_CLIENT * MESSAGES;
  let done;
  const allIn = new Promise((r) => (done = r));
  const { clients, roomNames } = await connect(design, key, `r${n}`, () => {
    if (++delivered === expected) done();
  });
  // One publisher socket per room (a member of it too, whose echoes are not counted).
  const pubToken = await tokenFor("publisher");
  const publishers = [];
  await pool(roomNames, 16, async (r) => {
    const ws = await open(`${server.wsUrl}${design.real ? `/rooms/${r}/ws?token=${pubToken}` : `/push/${r}/ws`}`);
    publishers.push(ws);
  });
  await sleep(1000); // the joins' presence traffic settles before the measured window
  await rpcCount();
  const start = sample();
  const intervalMs = 1000 / RATE;
  let sent = 0;
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      for (const ws of publishers) ws.send(JSON.stringify({ type: "publish", data: { n: sent, text: "spike" } }));
      if (++sent === MESSAGES) {
        clearInterval(timer);
        resolve();
      }
    }, intervalMs);
  });
  let timedOut = false;
  await within(allIn, 30_000, "deliveries").catch(() => (timedOut = true));
  const end = sample();
  await sleep(500); // anything late (a duplicate) shows up in the counts below
  const rpcs = await rpcCount();
  let lost = 0;
  let bad = 0;
  for (const c of clients) {
    for (const s of c.m.state.values()) {
      lost += Math.max(0, MESSAGES - s.got);
      bad += s.bad + Math.max(0, s.got - MESSAGES);
    }
  }
  const sockets = clients.flatMap((c) => c.sockets);
  await closeAll([...sockets, ...publishers]);
  const wall = end.at - start.at;
  const genMs = (end.gen.user - start.gen.user + end.gen.system - start.gen.system) / 1000;
  return {
    design: key,
    round: n,
    sockets: sockets.length,
    deliveries: delivered,
    lost,
    duplicatesOrReordered: bad,
    timedOut,
    rpcsPerDelivery: round(rpcs / delivered, 3),
    seconds: round(wall / 1000, 2),
    workerdUsPerDelivery: round(((end.workerd - start.workerd) * 1000) / delivered, 2),
    isolateUsPerDelivery: round(((end.isolate - start.isolate) * 1000) / delivered, 2),
    workerdCores: round((end.workerd - start.workerd) / wall, 2),
    genCores: round(genMs / wall, 2),
  };
}

/** RSS growth per client on a fresh workerd: one client first (compiles the classes), then all of them, idle. */
async function memoryOf(key) {
  const design = DESIGNS[key];
  await server.restart();
  findProcesses();
  const warm = await connect(design, key, "memwarm", () => {}, 1);
  await closeAll(warm.clients.flatMap((c) => c.sockets));
  await sleep(1500);
  const before = rss();
  const { clients } = await connect(design, key, "mem", () => {});
  await sleep(2500);
  const after = rss();
  const sockets = clients.flatMap((c) => c.sockets);
  await closeAll(sockets);
  return { design: key, clients: CLIENTS, sockets: sockets.length, rssKiBPerClient: round((after - before) / CLIENTS, 1) };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const killer = setTimeout(() => {
    console.error(`spike-mux: over its ${DEADLINE_MS / 1000} s budget; stopping`);
    void server?.stop().finally(() => process.exit(2));
  }, DEADLINE_MS);
  killer.unref();
  const persistTo = mkdtempSync("/dev/shm/edgerooms-spike-mux-");
  process.once("exit", () => rmSync(persistTo, { recursive: true, force: true }));
  server = await startDevServer({
    config: "bench/spike-mux/wrangler.toml",
    persistTo,
    vars: { RATE_LIMIT_PER_SEC: "1000000", RATE_LIMIT_BURST: "1000000", UPGRADE_LIMIT: "1000000" },
  });
  findProcesses();
  log(`wrangler pid ${server.pid()}, workerd ${pids.join(",")} (the Worker's: ${isolate})`);
  const rounds = [];
  try {
    // Unmeasured: the first connections compile the Worker and each class.
    for (const key of names) await deliveryRound(key, 0);
    for (let n = 1; n <= ROUNDS; n++) {
      const order = names.map((_, i) => names[(i + n) % names.length]);
      for (const key of order) {
        const r = await deliveryRound(key, n);
        log(JSON.stringify(r));
        rounds.push(r);
      }
    }
    const memory = [];
    if (!opt["no-memory"]) {
      for (const key of names) {
        const m = await memoryOf(key);
        log(JSON.stringify(m));
        memory.push(m);
      }
    }
    const summary = names.map((key) => {
      const rs = rounds.filter((r) => r.design === key);
      const base = key === "a" || key === "c" ? "direct" : key === "b" || key === "bBatch" ? "pushDirect" : null;
      const us = median(rs.map((r) => r.workerdUsPerDelivery));
      const baseUs = base && names.includes(base) ? median(rounds.filter((r) => r.design === base).map((r) => r.workerdUsPerDelivery)) : NaN;
      return {
        design: key,
        label: DESIGNS[key].label,
        socketsPerClient: DESIGNS[key].mux ? 1 : PER_CLIENT,
        workerdUsPerDelivery: us,
        isolateUsPerDelivery: median(rs.map((r) => r.isolateUsPerDelivery)),
        rpcsPerDelivery: median(rs.map((r) => r.rpcsPerDelivery)),
        seconds: median(rs.map((r) => r.seconds)),
        vsBaseline: base ? round(us / baseUs, 2) : null,
        lost: rs.reduce((a, r) => a + r.lost, 0),
        duplicatesOrReordered: rs.reduce((a, r) => a + r.duplicatesOrReordered, 0),
        rssKiBPerClient: memory.find((m) => m.design === key)?.rssKiBPerClient ?? null,
      };
    });
    const result = {
      at: new Date().toISOString(),
      scenario: {
        clients: CLIENTS,
        rooms: ROOMS,
        perClient: PER_CLIENT,
        memberships: CLIENTS * PER_CLIENT,
        messages: MESSAGES,
        rate: RATE,
        rounds: ROUNDS,
      },
      machine: {
        cores: cpus().length,
        cpu: cpus()[0]?.model,
        memGiB: round(totalmem() / 2 ** 30, 1),
        node: process.version,
        load: readFileSync("/proc/loadavg", "utf8").trim(),
      },
      summary,
      rounds,
      memory,
    };
    console.table(summary);
    const json = JSON.stringify(result, null, 2);
    if (opt.out) writeFileSync(opt.out, `${json}\n`);
    else console.log(json);
    if (summary.some((s) => s.lost > 0 || s.duplicatesOrReordered > 0)) process.exitCode = 1;
  } finally {
    await server.stop();
  }
}

main().catch(async (err) => {
  console.error(err);
  await server?.stop();
  process.exit(1);
});
