// The markdown table: every figure beside the floor's, with the ratio and the target it answers
// (the room with an onPublish hook beside the room, issue #21's 5% line);
// then many small rooms beside both floors; then the giant room's, beside the same room unsharded,
// and what it says for the edge.
import { EDGE, edgeRate, shardUsPerMessage } from "./giant.mjs";

const fmt = (x) => (x === undefined || x === null || Number.isNaN(x) ? "—" : typeof x === "number" ? x.toLocaleString("en-US") : String(x));
const ratio = (a, b, digits = 2) => (typeof a === "number" && typeof b === "number" && b !== 0 ? `${(a / b).toFixed(digits)}×` : "—");
// Rounded again: the median of an even number of rounds is the mean of two.
const cpu = (x) => (x?.cpu ? `${fmt(round2(x.cpu.gen))} / ${fmt(round2(x.cpu.workerd))}` : undefined);
const round2 = (x) => (Number.isFinite(x) ? Math.round(x * 100) / 100 : x);
const elu = (x) => (x?.elu ? Math.max(...x.elu) : undefined);

/** target: [op, factor] — "≥" for rates, "≤" for times and memory. */
function verdict(room, floor, target) {
  return judge(typeof room === "number" && typeof floor === "number" ? room / floor : NaN, target);
}

/** A ratio against its target line. */
function judge(r, target) {
  if (!target) return "";
  const line = `${target[0]} ${Number(target[1].toFixed(3))}×`;
  if (!Number.isFinite(r)) return `${line} —`;
  const ok = target[0] === "≥" ? r >= target[1] : r <= target[1];
  return `${line} ${ok ? "✅" : "❌"}`;
}

function median(xs) {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Issue #21: an onPublish that answers at once may cost at most 5% against the room without
 * hooks, in the same run: times at most 1.05× the room's, rates at least 1 / 1.05 of its.
 */
const HOOK_COST = ["≤", 1.05];
const HOOK_RATE = ["≥", 1 / 1.05];

/**
 * The hooked room's column: its figure, the ratio of the medians, and, with several rounds, each
 * round's hooked ÷ room (the two ran back to back in it, so they shared the machine's state of the
 * moment) as range and median. The verdict is on that median: on a machine whose speed swings
 * 2× between rounds, a same-round ratio is the figure that can resolve a 5% line.
 */
function hookedCell(hooked, room, perRound, target) {
  if (hooked === undefined) return "";
  const rounds = perRound.filter(Number.isFinite);
  const r = rounds.length > 1 ? median(rounds) : typeof hooked === "number" && typeof room === "number" ? hooked / room : NaN;
  const spread =
    target && rounds.length > 1 ? `; rounds ${Math.min(...rounds).toFixed(3)}–${Math.max(...rounds).toFixed(3)}×, median ${r.toFixed(3)}×` : "";
  return `${fmt(hooked)} (${ratio(hooked, room, 3)}${spread}${target ? `, ${judge(r, target)}` : ""})`;
}

export function formatTable(report) {
  const R = report.results;
  const rows = [];
  const row = (scenario, metric, get, target, unbatchedTarget, hookedTarget) => {
    const s = R[scenario];
    if (!s) return;
    const floor = get(s.floor);
    const room = get(s.room);
    const un = s["room (unbatched)"] ? get(s["room (unbatched)"]) : undefined;
    // Against the room, not the floor, to three places: its target is a 5% line.
    const hooked = s["room (onPublish)"] ? get(s["room (onPublish)"]) : undefined;
    const rounds = report.everyRound?.fanout;
    const perRound = (rounds?.["room (onPublish)"] ?? []).map((h, i) => get(h?.[scenario]) / get(rounds.room?.[i]?.[scenario]));
    rows.push([
      metric,
      fmt(floor),
      fmt(room),
      ratio(room, floor),
      verdict(room, floor, target),
      un === undefined ? "" : `${fmt(un)} (${ratio(un, floor)}${unbatchedTarget ? `, ${verdict(un, floor, unbatchedTarget)}` : ""})`,
      hookedCell(hooked, room, perRound, hookedTarget),
    ]);
  };
  const hs = report.plan.handshakes.n;
  row("handshakes", `handshakes ×${hs} into one room: per s`, (x) => x?.perSec, ["≥", 0.85]);
  row("handshakes", "handshake to welcome p50 ms", (x) => x?.p50, ["≤", 1.15]);
  row("handshakes", "handshake to welcome p99 ms", (x) => x?.p99);
  row("handshakes", "CPU cores: load / workerd", (x) => cpu(x));
  const L = `latency${report.plan.latency.subscribers}`;
  const sub = (name) => ({
    floor: R.fanout?.floor?.[name],
    room: R.fanout?.room?.[name],
    "room (unbatched)": R.fanout?.["room (unbatched)"]?.[name],
    "room (onPublish)": R.fanout?.["room (onPublish)"]?.[name],
  });
  if (R.fanout) {
    R[L] = sub(L);
    row(L, `1 broadcast to ${report.plan.latency.subscribers}, window 1: p50 ms`, (x) => x?.p50, ["≤", 1.05], ["≤", 1.05], HOOK_COST);
    row(L, "… p99 ms", (x) => x?.p99);
    row(L, "… max ms", (x) => x?.max);
    row(L, "… frames per WebSocket message", (x) => x?.deliveriesPerMessage);
    row(L, "… workerd CPU µs per delivery", (x) => x?.workerdUsPerDelivery);
    for (const f of report.plan.fanout) {
      const k = `fanout${f.subscribers}`;
      R[k] = sub(k);
      const big = f.subscribers === Math.max(...report.plan.fanout.map((x) => x.subscribers));
      row(
        k,
        `fan-out ${f.subscribers} subs, window ${f.window}: messages delivered/s`,
        (x) => x?.perSec,
        big ? ["≥", 3] : undefined,
        big ? ["≥", 1] : undefined,
        HOOK_RATE,
      );
      row(k, "… WebSocket messages received/s", (x) => x?.framesPerSec);
      row(k, "… workerd CPU µs per delivery", (x) => x?.workerdUsPerDelivery);
      row(k, "… latency p50 ms", (x) => x?.p50);
      row(k, "… latency p99 ms", (x) => x?.p99);
      row(k, "… latency max ms", (x) => x?.max);
      row(k, "… CPU cores: load / workerd", (x) => cpu(x));
      row(k, "… busiest load thread (event-loop use)", (x) => elu(x));
    }
  }
  const mem = report.plan.memory;
  row("memory", `idle memory, ${mem.rooms * mem.perRoom} conns: workerd peak RSS KiB per conn`, (x) => x?.peakKiBPerConn, ["≤", 1.1]);
  row("memory", "… RSS KiB per conn (settled)", (x) => x?.rssKiBPerConn);

  const head = ["metric", "floor", "room", "room/floor", "target", "room unbatched (÷ floor)", "room onPublish (÷ room)"];
  const lines = [
    `Bench ${report.smoke ? "(smoke) " : ""}${report.date.slice(0, 16).replace("T", " ")} UTC — ${report.machine.cores} cores (${report.machine.cpu}), Node ${report.machine.node}, ${report.threads} load threads${report.rounds > 1 ? `, median of ${report.rounds} interleaved rounds` : ""}`,
    "",
    ...markdownTable(head, rows),
  ];
  if (rows.length === 0) lines.splice(2);
  if (R.manyRooms) lines.push("", ...formatSmallRooms(report));
  if (R.browser) lines.push("", ...formatBrowser(report));
  if (R.giant) lines.push("", ...formatGiant(report));
  if (report.errors.length) lines.push("", `**${report.errors.length} problem(s)** — see the JSON.`);
  return lines.join("\n");
}

/**
 * Many small rooms against both floors: the bare one, and the durable one (the bare one plus a
 * seq and one INSERT per message), whose cost no room with gap-free resume can skip. The targets
 * are on the room's ratio to the durable floor: they count only what the room adds.
 */
export function formatSmallRooms(report) {
  const m = report.plan.manyRooms;
  const s = report.results.manyRooms;
  const rows = [
    [
      `${m.rooms} rooms × ${m.perRoom}, window ${m.window}, ${m.payloadBytes ?? report.plan.payloadBytes} B: messages delivered/s`,
      (x) => x?.perSec,
      ["≥", 0.9],
    ],
    ["… workerd CPU µs per delivery", (x) => x?.workerdUsPerDelivery],
    ["… latency p50 ms", (x) => x?.p50],
    ["… latency p99 ms", (x) => x?.p99, ["≤", 1.5]],
    ["… latency max ms", (x) => x?.max],
    [
      "… messages per room: fewest / median / most",
      (x) => (x?.roomMessages ? `${fmt(x.roomMessages.min)} / ${fmt(x.roomMessages.median)} / ${fmt(x.roomMessages.max)}` : undefined),
    ],
    ["… CPU cores: load / workerd", cpu],
    ["… busiest load thread (event-loop use)", elu],
    // Joining does no storage work in either floor, so the joins' targets are on the bare floor.
    [`${m.rooms * m.perRoom} joins into ${m.rooms} rooms: per s`, (x) => x?.joins?.perSec, ["≥", 0.85], "floor"],
    ["… handshake to welcome p50 ms", (x) => x?.joins?.p50, ["≤", 1.15], "floor"],
    ["… handshake to welcome p99 ms", (x) => x?.joins?.p99],
  ].map(([metric, get, target, base]) => {
    const [floor, durable, room] = [s.floor, s["durable floor"], s.room].map(get);
    const judged = base === "floor" ? `${verdict(room, floor, target)} (÷ floor)` : verdict(room, durable, target);
    return [metric, fmt(floor), fmt(durable), fmt(room), ratio(room, floor), ratio(room, durable), judged];
  });
  const head = ["small rooms", "floor", "durable floor", "room", "room/floor", "room/durable floor", "target (÷ durable floor)"];
  return markdownTable(head, rows);
}

/**
 * Browser-like clients (permessage-deflate offered, chat-like text): the room beside the floor
 * under the same setting, and beside itself without deflate, which is what deflate costs it.
 */
export function formatBrowser(report) {
  const b = report.plan.browser;
  const s = report.results.browser;
  const [floor, room, plain] = [s["floor, deflate"], s["room, deflate"], s["room, no deflate"]];
  const rows = [
    [`fan-out ${b.subscribers} subs, window ${b.window}: messages delivered/s`, (x) => x?.fanout?.perSec],
    ["… workerd CPU µs per delivery", (x) => x?.fanout?.workerdUsPerDelivery],
    ["… bytes on the wire per delivery", (x) => x?.fanout?.wireBytesPerDelivery],
    ["… latency p50 ms", (x) => x?.fanout?.p50],
    ["… latency p99 ms", (x) => x?.fanout?.p99],
    ["… CPU cores: load / workerd", (x) => cpu(x?.fanout)],
    [`1 broadcast to ${b.subscribers}, window 1: p50 ms`, (x) => x?.latency?.p50],
    ["… workerd CPU µs per delivery", (x) => x?.latency?.workerdUsPerDelivery],
    ["… bytes on the wire per delivery", (x) => x?.latency?.wireBytesPerDelivery],
  ].map(([metric, get]) => {
    const [f, r, p] = [floor, room, plain].map(get);
    return [metric, fmt(f), fmt(r), ratio(r, f), fmt(p), ratio(r, p)];
  });
  const M = report.results.memory;
  if (M?.["room, deflate"]) {
    const [f, r, p] = [M["floor, deflate"], M["room, deflate"], M.room].map((x) => x?.peakKiBPerConn);
    const n = report.plan.memory.rooms * report.plan.memory.perRoom;
    rows.push([`idle memory, ${n} conns: workerd peak RSS KiB per conn`, fmt(f), fmt(r), ratio(r, f), fmt(p), ratio(r, p)]);
  }
  const head = [
    `browser-like clients (deflate offered, ${b.payloadBytes} B chat text)`,
    "floor, deflate",
    "room, deflate",
    "room/floor",
    "room, no deflate",
    "deflate ÷ no deflate (room)",
  ];
  return markdownTable(head, rows);
}

/** A markdown table: the first column left-aligned (names), the others right (figures). */
function markdownTable(head, rows) {
  const align = head.map((_, i) => (i === 0 ? "---" : "---:"));
  return [`| ${head.join(" | ")} |`, `|${align.join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)];
}

const us = (x) => (Number.isFinite(x) ? fmt(Math.round(x * 100) / 100) : "—");

/** The giant room against the same room unsharded, then the edge's rate derived from it. */
export function formatGiant(report) {
  const g = report.plan.giant;
  const [flat, sharded] = Object.values(report.results.giant);
  const shardLabel = Object.keys(report.results.giant)[1];
  const n = sharded?.shards?.length ?? 0;
  const rows = [
    ["messages/s sent (steady)", fmt(flat?.ratePerSec), fmt(sharded?.ratePerSec)],
    ["isolate CPU µs per delivered socket, all work", us(flat?.cpuUsPerDelivery), us(sharded?.cpuUsPerDelivery)],
    ["… in the per-socket sends, µs per delivered socket", us(flat?.sendUsPerDelivery), us(sharded?.shardSendUsPerDelivery)],
    ["… the rest, µs per message (unsharded: the whole room's)", us(flat?.restUsPerMessage), "—"],
    ["root CPU µs per message", "—", us(sharded?.rootUsPerMessage)],
    ["… of it the stream calls, µs per shard fed", "—", us(sharded?.rootFanoutUsPerShard)],
    ["publisher's shard: intake µs per message (parse, forward)", "—", us(sharded?.intakeUsPerMessage)],
    ["shard CPU µs per delivered socket (all shard work)", "—", us(sharded?.shardUsPerDelivery)],
    ["shard per-message work (stream, head, tail), µs per shard", "—", us(sharded?.shardFixedUsPerMessage)],
    ...(sharded?.shards ?? []).map((sockets, i) => [
      `shard ${i}: sockets · µs per message (per-message work + sends × sockets)`,
      "—",
      `${fmt(Math.round(sockets))} · ${us(shardUsPerMessage(sharded, sockets))}`,
    ]),
    ["busy samples with no JavaScript on the stack (shared out)", pct(flat?.unnamedShare), pct(sharded?.unnamedShare)],
    ["frames per WebSocket message", fmt(flat?.framesPerMessage), fmt(sharded?.framesPerMessage)],
    ["latency p50 / p99 ms", `${fmt(flat?.p50)} / ${fmt(flat?.p99)}`, `${fmt(sharded?.p50)} / ${fmt(sharded?.p99)}`],
  ];
  const head = [
    `giant room: ${fmt(g.sockets)} sockets, ${g.rate} msg/s of ${report.plan.payloadBytes} B`,
    "room (unsharded)",
    shardLabel ?? "sharded",
  ];
  const lines = markdownTable(head, rows);
  if (!sharded || report.smoke) return lines;
  lines.push("", `At the edge (derived from the figures above; assumptions in bench/RESULTS.md), ${fmt(EDGE.sockets)} sockets:`);
  for (const shards of [Math.ceil(EDGE.sockets / EDGE.maxSocketsPerObject), 8, 16, 64]) {
    const e = edgeRate(sharded, n, shards);
    if (!e.fits) continue;
    lines.push(
      `- ${shards} shards × ${fmt(e.perShard)} sockets: root ${us(e.rootUs)} µs/msg → ${fmt(Math.round(e.rootRate))} msg/s; ` +
        `shard ${us(sharded.shardFixedUsPerMessage)} + ${us(sharded.intakeUsPerMessage)} + ${us(sharded.shardSendUsPerDelivery)} × ${fmt(e.perShard)} = ${fmt(Math.round(e.shardUs))} µs/msg → ${fmt(Math.round(e.shardRate * 10) / 10)} msg/s; ` +
        `**${fmt(Math.round(e.rate * 10) / 10)} msg/s** (${e.bound}-bound), ${fmt(Math.round(e.deliveriesPerSec))} deliveries/s`,
    );
  }
  return lines;
}

const pct = (x) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : "—");
