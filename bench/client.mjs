// A load-generator thread: holds a share of the benchmark's WebSocket clients, publishes for the
// rooms whose publisher it holds, and checks every message every client receives (order, no
// loss, no error frame). The main thread (run.mjs) only coordinates; see there for the protocol.
import { parentPort } from "node:worker_threads";
import WebSocket from "ws";
import { newHistogram, now, publishFrame, record } from "./lib.mjs";

/** @type {Map<string, Group>} rooms with at least one client on this thread */
const groups = new Map();
/** @type {Client[]} */
let clients = [];
let run = null; // the current publish run's settings and counters
const errors = [];
const fail = (msg) => {
  if (errors.length < 20) errors.push(msg);
};

/**
 * A room as this thread sees it. `prefix` is how many messages every local client has received
 * (order per client is checked, so the k-th arrival count says when message k is complete).
 */
class Group {
  constructor(key, kind, spans) {
    this.key = key;
    this.kind = kind;
    this.spans = spans; // clients on other threads too: completion goes through the main thread
    this.local = [];
    this.publisher = null;
    this.reset(1);
  }
  reset(window) {
    const size = 2 ** Math.ceil(Math.log2(window * 4 + 64));
    this.arrivals = new Int32Array(size);
    this.mask = size - 1;
    this.prefix = 0; // complete on this thread
    this.global = 0; // complete everywhere (spanning rooms: told by the main thread)
    this.sent = 0;
    this.total = undefined; // known once the publisher has stopped
    this.firstSend = undefined;
    this.stopped = false;
    this.done = false;
    clearTimeout(this.timer);
    this.timer = null;
  }
}

function onFrame(client, f) {
  const g = client.group;
  if (f.type === "welcome") {
    client.lastSeq = f.seq;
    client.welcomed?.();
    return;
  }
  if (f.type === "error") return fail(`${client.id}: error frame ${JSON.stringify(f)}`);
  let data;
  if (g.kind === "room") {
    if (f.type !== "message") return; // presence
    if (f.seq !== client.lastSeq + 1) fail(`${client.id}: seq ${f.seq} after ${client.lastSeq}`);
    client.lastSeq = f.seq;
    data = f.data;
  } else {
    if (f.type !== "publish") return fail(`${client.id}: unexpected floor frame ${f.type}`);
    data = f.data;
  }
  if (!run) return fail(`${client.id}: message outside a run`);
  if (data.k !== client.nextK) fail(`${client.id}: message ${data.k}, expected ${client.nextK}`);
  client.nextK = data.k + 1;
  run.deliveries++;
  const t = now();
  record(run.hist, t - data.t);
  if (t > run.lastReceipt) run.lastReceipt = t;
  const slot = data.k & g.mask;
  if (++g.arrivals[slot] === g.local.length) advance(g);
}

function advance(g) {
  while (g.arrivals[g.prefix & g.mask] === g.local.length) {
    g.arrivals[g.prefix & g.mask] = 0;
    g.prefix++;
  }
  if (g.spans) {
    dirty.add(g);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushProgress);
    }
  } else {
    g.global = g.prefix;
    pump(g);
  }
  checkDone(g);
}

const dirty = new Set();
let flushScheduled = false;
function flushProgress() {
  flushScheduled = false;
  const updates = {};
  for (const g of dirty) updates[g.key] = g.prefix;
  dirty.clear();
  parentPort.postMessage({ ev: "progress", updates });
}

/** Sends while the room's in-flight window has room, until the count or the time is used up. */
function pump(g) {
  const p = g.publisher;
  if (!p || !run || g.stopped) return;
  while (g.sent - g.global < run.window) {
    if (g.sent >= run.count || now() > run.deadline) {
      g.stopped = true;
      parentPort.postMessage({ ev: "published", key: g.key, total: g.sent });
      return;
    }
    if (g.firstSend === undefined) g.firstSend = now();
    // A steady rate (`rate` messages/s) when set: message k is due k/rate seconds after the first.
    const due = run.rate ? g.firstSend + (g.sent * 1000) / run.rate : 0;
    if (due > now()) {
      if (!g.timer) g.timer = setTimeout(() => ((g.timer = null), pump(g)), due - now());
      return;
    }
    p.ws.send(publishFrame(g.sent, run.payloadBytes, run.chat));
    g.sent++;
  }
}

function checkDone(g) {
  if (g.done || g.total === undefined || g.prefix < g.total) return;
  g.done = true;
  for (const x of groups.values()) if (!x.done) return;
  parentPort.postMessage({ ev: "done", stats: stats() });
}

function stats() {
  let firstSend = Infinity;
  for (const g of groups.values()) if (g.firstSend !== undefined) firstSend = Math.min(firstSend, g.firstSend);
  return {
    deliveries: run?.deliveries ?? 0,
    frames: run?.frames ?? 0,
    // What came off the wire since the run was armed: frame headers and, when negotiated, compressed.
    wireBytes: clients.reduce((sum, c) => sum + (c.ws._socket?.bytesRead ?? c.bytesAtArm) - c.bytesAtArm, 0),
    hist: run?.hist ?? newHistogram(),
    firstSend,
    lastReceipt: run?.lastReceipt ?? 0,
    elu: run ? performance.eventLoopUtilization(run.elu).utilization : 0,
    // Messages each room published in the run: how evenly the server served the rooms.
    perRoom: [...groups.values()].filter((g) => g.publisher).map((g) => g.sent),
    incomplete: [...groups.values()]
      .filter((g) => !g.done)
      .map((g) => `${g.key}: ${g.prefix}/${g.total ?? "?"}`)
      .slice(0, 5),
    errors: errors.splice(0),
  };
}

function connectOne(spec, group) {
  return new Promise((resolve) => {
    const t0 = now();
    // `perMessageDeflate: true` offers what browsers offer: permessage-deflate; client_max_window_bits.
    const ws = new WebSocket(spec.url, { perMessageDeflate: spec.deflate === true });
    const client = { id: spec.id, ws, group, nextK: 0, lastSeq: 0, welcomed: null, open: false };
    const timer = setTimeout(() => {
      fail(`${spec.id}: no welcome within 30 s`);
      ws.terminate();
      resolve(null);
    }, 30_000);
    client.welcomed = () => {
      client.welcomed = null;
      clearTimeout(timer);
      // A deflate scenario that silently ran uncompressed would report the wrong trade-off.
      if (spec.deflate && !ws.extensions.includes("permessage-deflate"))
        fail(`${spec.id}: deflate offered, not negotiated (${ws.extensions || "none"})`);
      client.open = true;
      resolve({ client, ms: now() - t0 });
    };
    ws.on("message", (data, isBinary) => {
      if (isBinary) return fail(`${client.id}: binary frame`);
      if (run) run.frames++;
      let parsed;
      try {
        parsed = JSON.parse(data.toString());
      } catch {
        return fail(`${client.id}: not JSON: ${String(data).slice(0, 80)}`);
      }
      // A server message is one frame or, when the room batches, an array of frames in order.
      if (Array.isArray(parsed)) for (const f of parsed) onFrame(client, f);
      else onFrame(client, parsed);
    });
    ws.on("unexpected-response", (_req, res) => {
      fail(`${spec.id}: upgrade answered ${res.statusCode}`);
      clearTimeout(timer);
      resolve(null);
    });
    ws.on("error", (err) => {
      if (!client.open) {
        clearTimeout(timer);
        resolve(null);
      }
      fail(`${spec.id}: ${err.message}`);
    });
    ws.on("close", (code) => {
      if (client.open && !client.closing) fail(`${spec.id}: closed by the server (${code})`);
    });
  });
}

async function connect({ specs, groupDefs, concurrency }) {
  for (const d of groupDefs) groups.set(d.key, new Group(d.key, d.kind, d.spans));
  const handshakes = [];
  let next = 0;
  let failed = 0;
  async function lane() {
    while (next < specs.length) {
      const spec = specs[next++];
      const g = groups.get(spec.group);
      const r = await connectOne(spec, g);
      if (!r) {
        failed++;
        continue;
      }
      handshakes.push(r.ms);
      clients.push(r.client);
      g.local.push(r.client);
      if (spec.publisher) g.publisher = r.client;
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
  return { handshakes, failed, errors: errors.splice(0) };
}

async function closeAll() {
  const closing = clients.map(
    (c) =>
      new Promise((resolve) => {
        c.closing = true;
        if (c.ws.readyState === WebSocket.CLOSED) return resolve();
        const timer = setTimeout(() => {
          c.ws.terminate();
          resolve();
        }, 5000);
        c.ws.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
        c.ws.close(1000);
      }),
  );
  await Promise.all(closing);
  clients = [];
  groups.clear();
  run = null;
}

parentPort.on("message", async (msg) => {
  switch (msg.cmd) {
    case "connect":
      parentPort.postMessage({ ev: "connected", ...(await connect(msg)) });
      break;
    case "publish": {
      run = {
        count: msg.count,
        window: msg.window,
        rate: msg.rate,
        payloadBytes: msg.payloadBytes,
        chat: msg.chat === true,
        deadline: now() + msg.durationMs,
        deliveries: 0,
        frames: 0,
        hist: newHistogram(),
        lastReceipt: 0,
        elu: performance.eventLoopUtilization(),
      };
      for (const c of clients) {
        c.nextK = 0;
        c.bytesAtArm = c.ws._socket?.bytesRead ?? 0;
      }
      for (const g of groups.values()) g.reset(msg.window);
      parentPort.postMessage({ ev: "armed" });
      break;
    }
    case "go":
      // Every thread is armed before any publisher sends, so no delivery lands outside a run.
      if (groups.size === 0) parentPort.postMessage({ ev: "done", stats: stats() });
      for (const g of groups.values()) pump(g);
      break;
    case "progress":
      for (const [key, prefix] of Object.entries(msg.updates)) {
        const g = groups.get(key);
        if (g) {
          g.global = prefix;
          pump(g);
        }
      }
      break;
    case "total": {
      const g = groups.get(msg.key);
      if (g) {
        g.total = msg.total;
        checkDone(g);
      }
      break;
    }
    case "status":
      parentPort.postMessage({ ev: "status", stats: stats() });
      break;
    case "close":
      await closeAll();
      parentPort.postMessage({ ev: "closed" });
      break;
  }
});
