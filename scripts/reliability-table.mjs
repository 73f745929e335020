// Renders the figures the abuse and fault suites wrote (artifacts/reliability.json, see
// test/e2e/support/figures.ts) as the README's reliability table, so its numbers come from a run.
// Usage: node scripts/reliability-table.mjs [figures.json]   (prints markdown to stdout)
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const file = process.argv[2] ?? process.env.RELIABILITY_FILE ?? join(root, "artifacts/reliability.json");
const ORDER = ["flood", "storm", "restart", "hibernation", "slow-peers", "giant"];

/** The measurements worth a column of their own, per suite; the rest stay in the JSON. */
const HIGHLIGHTS = {
  flood: (x) =>
    `echo p99 ${x.quietEchoP99Ms} → ${x.floodEchoP99Ms} ms (×${x.echoP99Ratio}, bound ×2, ${x.echoSamplesPerPhase} samples a phase in ${x.rounds ?? 1} round(s)); ${x.floodFrames} flood frames over ${x.floodConnections} connections, ${x.closed1008} closed 1008`,
  storm: (x) =>
    `${x.messages} messages, ${x.deliveries} deliveries, ${x.replayed} replayed on resume; not recovered: ${x.notRecovered}; presence events contradicting a client's view: ${x.presenceFaults}`,
  restart: (x) =>
    `${x.restarts} restart(s); recovered ${x.recovered}/${x.resumedCovered} resumes inside history, ${x.staleDetected} stale views reported; seq repeated: ${x.seqRepeated}; ghosts: ${x.ghosts}`,
  hibernation: (x) =>
    `${x.silenceSec} s silence (pings only); room evicted and woken with its sockets (object starts ${x.startsBefore} → ${x.startsAfter}): ${x.evicted}; identities, presence, seq and rate limit held after the wake-up: ${x.held}`,
  "slow-peers": (x) =>
    `others got ${x.pushedWhilePausedMB} MB in ${Math.round(x.pausedTotalMs)} ms past a paused reader (${Math.round(x.quietTotalMs)} ms with none); hung peer swept ${x.vanishedClose} after ${x.hungRemovedSec} s (idle ${x.idleCloseSec} s), dead one dropped in ${x.deadRemovedMs} ms; leaves announced: ${x.leaveAnnounced}`,
  giant: (x) =>
    `one room on 4 shards (sockets per shard ${x.shardsBefore}, after the restart ${x.shardsAfter}): ${x.messages} messages from sockets on every shard and HTTP, ${x.deliveries} deliveries, ${x.replayed} replayed on resume; not recovered: ${x.notRecovered}; seq repeated: ${x.seqRepeated}; every socket resumed after the restart in ${x.restartResumeSec} s`,
};

const rows = Object.values(JSON.parse(readFileSync(file, "utf8"))).sort((a, b) => ORDER.indexOf(a.suite) - ORDER.indexOf(b.suite));
const lines = [
  "| suite | scale | clients | inputs tried | connections dropped / resumed | messages lost | duplicated or out of order | crashes | what was measured | time | result |",
  "|---|---|--:|--:|--:|--:|--:|--:|---|--:|---|",
];
for (const r of rows) {
  const x = r.extra ?? {};
  const highlight =
    HIGHLIGHTS[r.suite]?.(x) ??
    Object.entries(x)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
  lines.push(
    `| ${r.suite} | ${r.scale} | ${r.clients} | ${r.inputs} | ${r.dropped} / ${r.resumed} | ${r.lost} | ${r.duplicated} | ${r.crashes} | ${highlight} | ${r.seconds} s | ${r.passed ? "pass" : "**FAIL**"} |`,
  );
}
const sum = (k) => rows.reduce((n, r) => n + r[k], 0);
lines.push(
  `| **all** | | | ${sum("inputs")} | ${sum("dropped")} / ${sum("resumed")} | ${sum("lost")} | ${sum("duplicated")} | ${sum("crashes")} | | ${Math.round(sum("seconds"))} s | ${rows.every((r) => r.passed) ? "pass" : "**FAIL**"} |`,
);
const when = rows
  .map((r) => r.at)
  .sort()
  .at(-1);
lines.push("", `Figures from the run of ${when?.slice(0, 10) ?? "?"} (\`node scripts/reliability-table.mjs\` renders artifacts/reliability.json).`);
console.log(lines.join("\n"));
