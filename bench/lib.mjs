// Shared pieces of the benchmark: a mergeable latency histogram, the wire helpers both the
// room and the floor are driven with, and /proc readings of the workerd processes.
import { readFileSync, readdirSync } from "node:fs";

// ---- latency histogram ---------------------------------------------------------------------
// Log buckets 1% wide over microseconds: p50/p99 within 1%, mergeable across worker threads,
// constant memory however many deliveries a scenario makes. The max is kept exactly.
const GROWTH = Math.log(1.01);
const BUCKETS = 2000; // 1.01^2000 µs ≈ 4e8 µs: anything longer lands in the last bucket

export function newHistogram() {
  return { counts: new Float64Array(BUCKETS), n: 0, max: 0 };
}

export function record(h, ms) {
  const us = Math.max(1, ms * 1000);
  const i = Math.min(BUCKETS - 1, Math.floor(Math.log(us) / GROWTH));
  h.counts[i]++;
  h.n++;
  if (ms > h.max) h.max = ms;
}

export function merge(into, from) {
  for (let i = 0; i < BUCKETS; i++) into.counts[i] += from.counts[i];
  into.n += from.n;
  into.max = Math.max(into.max, from.max);
  return into;
}

/** The q-quantile in ms (the upper edge of its bucket). */
export function quantile(h, q) {
  if (h.n === 0) return NaN;
  const target = q * h.n;
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += h.counts[i];
    if (seen >= target) return Math.exp((i + 1) * GROWTH) / 1000;
  }
  return h.max;
}

// ---- wire ----------------------------------------------------------------------------------

/** Epoch milliseconds with sub-millisecond precision, comparable across worker threads. */
export const now = () => performance.timeOrigin + performance.now();

/**
 * The publish frame for message `k`. Its `data` serializes to PAYLOAD_BYTES, so the room and
 * the floor carry the same 1 KiB: the floor echoes the frame as is, the room wraps `data` in
 * its `message` frame. `t` (send time) gives the latency, `k` the order check.
 */
export function publishFrame(k, payloadBytes, chat = false) {
  const head = `{"k":${k},"t":${now().toFixed(3)},"p":"`;
  const space = Math.max(0, payloadBytes - head.length - 2);
  const pad = chat ? chatText(k, space) : "x".repeat(space);
  return `{"type":"publish","data":${head}${pad}"}}`;
}

// Chat-like text for the deflate scenario: a run of one letter compresses to nothing and would
// flatter deflate; words drawn per message, with a number or two, compress about as chat does.
const WORDS = (
  "the a to and of is it you that in for on this we be with have are not but can just so what " +
  "was do at if me my about all get like will up out one time how when now there meeting deploy " +
  "build room message sure thanks ok yes no maybe later today tomorrow review merge test fix bug " +
  "link call team check looks good great idea why where who need want think know see let push"
).split(" ");

/** Deterministic per message: `len` characters of words and numbers (JSON-safe, ASCII). */
export function chatText(k, len) {
  let x = (k + 1) * 2654435761;
  const next = () => ((x = (x ^ (x << 13)) >>> 0), (x = (x ^ (x >>> 17)) >>> 0), (x = (x ^ (x << 5)) >>> 0), x);
  let out = "";
  while (out.length < len) {
    const r = next();
    out += (out ? " " : "") + (r % 11 === 0 ? String(r % 10_000) : WORDS[r % WORDS.length]);
  }
  return out.slice(0, len);
}

// ---- workerd processes ---------------------------------------------------------------------

const TICK_MS = 10; // USER_HZ is 100 on Linux

function readStat(pid) {
  // comm may hold spaces or parentheses; the fields after the last ")" are fixed.
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const close = text.lastIndexOf(")");
  const comm = text.slice(text.indexOf("(") + 1, close);
  const f = text.slice(close + 2).split(" ");
  return { comm, ppid: Number(f[1]), cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS };
}

/** Every workerd process descended from `rootPid` (wrangler runs one or more). */
export function workerdPids(rootPid) {
  const parent = new Map();
  const comm = new Map();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = readStat(name);
      parent.set(Number(name), s.ppid);
      comm.set(Number(name), s.comm);
    } catch {
      // exited while we looked
    }
  }
  const out = [];
  for (const [pid, c] of comm) {
    if (c !== "workerd") continue;
    for (let p = parent.get(pid); p; p = parent.get(p)) {
      if (p === rootPid) {
        out.push(pid);
        break;
      }
    }
  }
  return out.sort((a, b) => a - b);
}

/** CPU time (ms) used so far by each pid. */
export function cpuMs(pids) {
  const out = {};
  for (const pid of pids) {
    try {
      out[pid] = readStat(pid).cpuMs;
    } catch {
      out[pid] = 0;
    }
  }
  return out;
}

/** VmRSS and VmHWM in KiB, per pid. */
export function memKiB(pids) {
  const out = {};
  for (const pid of pids) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
      out[pid] = { rss: get("VmRSS"), hwm: get("VmHWM") };
    } catch {
      out[pid] = { rss: 0, hwm: 0 };
    }
  }
  return out;
}

/**
 * The workerd process that runs the Worker's isolate: wrangler dev runs two, a proxy that owns
 * the public port (`entry=<ip>:<port>`) and the Worker's own, whose entry socket is internal.
 */
export function isolatePid(pids, publicPort) {
  const own = pids.filter((pid) => {
    try {
      return !readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(`entry=127.0.0.1:${publicPort}\0`);
    } catch {
      return false;
    }
  });
  return own.length === 1 ? own[0] : undefined;
}

/** CPU time (ms) of a process's main thread: where workerd runs its isolates, JS and native work alike. */
export function mainThreadCpuMs(pid) {
  return readStatPath(`/proc/${pid}/task/${pid}/stat`).cpuMs;
}

function readStatPath(path) {
  const text = readFileSync(path, "utf8");
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS };
}

// ---- the Worker's CPU profile --------------------------------------------------------------

/**
 * Every inspector step is bounded. A full bench run was once seen stalled in the giant scenario's
 * first round, where these were the only steps without a bound (the run's own deadline is 20
 * minutes): a step that hangs now fails the run within a minute, naming itself.
 */
const INSPECTOR_MS = 60_000;

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`inspector: no answer to ${what} within ${INSPECTOR_MS / 1000} s`)), INSPECTOR_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * workerd's inspector (Chrome DevTools protocol): CPU profiles of the Worker's isolate, and the
 * bundled script's source, to name the anonymous functions a profile holds (see giant.mjs).
 */
export async function openProfiler(inspectorPort, intervalUs = 100) {
  const [target] = await within(
    (async () => (await fetch(`http://127.0.0.1:${inspectorPort}/json`, { signal: AbortSignal.timeout(INSPECTOR_MS) })).json())(),
    "the inspector's target list",
  );
  const { default: WebSocket } = await import("ws");
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await within(new Promise((r, j) => ws.once("open", r).once("error", j)), "the inspector's socket");
  let id = 0;
  const pending = new Map();
  ws.on("message", (d) => {
    const m = JSON.parse(d.toString());
    pending.get(m.id)?.(m.result);
    pending.delete(m.id);
  });
  const call = (method, params = {}) =>
    within(
      new Promise((r) => {
        pending.set(++id, r);
        ws.send(JSON.stringify({ id, method, params }));
      }),
      method,
    );
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: intervalUs });
  const sources = new Map();
  return {
    start: () => call("Profiler.start"),
    stop: async () => (await call("Profiler.stop")).profile,
    /** The source of `scriptId` (the Debugger is on only while it is read). */
    async source(scriptId) {
      if (!sources.has(scriptId)) {
        await call("Debugger.enable");
        sources.set(scriptId, (await call("Debugger.getScriptSource", { scriptId }))?.scriptSource ?? "");
        await call("Debugger.disable");
      }
      return sources.get(scriptId);
    },
    close: () => ws.close(),
  };
}
