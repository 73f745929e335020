#!/usr/bin/env node
// `npm run bench:profile -- <handshakes|fanout> [--floor]`: where the room's time goes. Starts
// `wrangler dev`, puts one bench-shaped load on a room (or on the floor), and records a CPU
// profile of the Worker's isolate through workerd's inspector for just that load. Prints the
// functions with the most self time and the isolate's busy time per operation, and writes the
// .cpuprofile (open it in Chrome DevTools) to bench/results/.
//
// "(program)" is time in workerd's own code (sockets, the event loop); native calls made from
// JavaScript (`send`, `fetch`, `setAlarm`) appear under their own names. The proxy process
// wrangler runs in front of the Worker is not in the profile.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { startDevServer } from "../scripts/devserver.mjs";
import { openProfiler } from "./lib.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const SCENARIO = argv.find((a) => !a.startsWith("--")) ?? "handshakes";
const FLOOR = argv.includes("--floor");
const JOINS = { n: 500, concurrency: 20 };
const FANOUT = { subscribers: 500, messages: 400, window: 32, payloadBytes: 1024 };
if (!["handshakes", "fanout"].includes(SCENARIO)) {
  console.error("usage: npm run bench:profile -- <handshakes|fanout> [--floor]");
  process.exit(2);
}

const server = await startDevServer({
  config: "bench/wrangler.toml",
  vars: { RATE_LIMIT_PER_SEC: "1000000", RATE_LIMIT_BURST: "1000000", UPGRADE_LIMIT: "1000000" },
});
const room = `profile-${Date.now().toString(36)}`;

async function open(user, onFrame = () => {}) {
  const url = FLOOR
    ? `${server.wsUrl}/floor/${room}/ws`
    : `${server.wsUrl}/rooms/${room}/ws?token=${await server.token({ sub: user, rooms: { [room]: ["*"] } })}`;
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

async function joinAll(n, concurrency, onFrame) {
  const sockets = [];
  let next = 0;
  const lane = async () => {
    while (next < n) sockets.push(await open(`u${next++}`, onFrame));
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
    operations = { count: total, what: "delivery" };
  }
  const profile = await profiler.stop();
  report(profile, operations);
} finally {
  profiler.close();
  for (const ws of sockets) ws.terminate();
  await server.stop();
}

function report(profile, { count, what }) {
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
    `${SCENARIO} on the ${FLOOR ? "floor" : "room"}: ${count} ${what === "delivery" ? "deliveries" : `${what}s`} in ${Math.round(spanMs)} ms`,
  );
  console.log(`isolate busy ${Math.round(busyMs)} ms = ${((busyMs * 1000) / count).toFixed(1)} µs per ${what}\n`);
  console.log("| self % of busy | function |\n|---:|---|");
  for (const [k, v] of [...self]
    .filter(([k]) => !k.startsWith("(idle)"))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)) {
    console.log(`| ${((100 * v) / (samples - idle)).toFixed(1)} | ${k} |`);
  }
  const out = join(here, "results", `profile-${SCENARIO}-${FLOOR ? "floor" : "room"}.cpuprofile`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(profile));
  console.log(`\nwrote ${out}`);
}
