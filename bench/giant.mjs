// The giant-room scenario's arithmetic: whose CPU a profile sample is (the root's or a shard's),
// and what the measured figures say a 100,000-socket room could sustain at the edge.
//
// Locally every Durable Object runs in one isolate on one workerd thread, so the thread's CPU is
// the sum of the root's and the shards' and cannot be split by process. It is split by code: each
// sample of a CPU profile of the isolate (the inspector's, as in profile.mjs) is given to the side
// whose entry point is outermost on its stack. The root only sequences and fans out; the shards
// only hold sockets; so the sides do not share an entry point:
//   root   shardPublish (#publish: seq, SQLite history, serialization), the Fanout's flush timer
//          (one `stream` RPC per shard), snapshot/range/shardMembers and the other calls shards make
//   intake webSocketMessage on the publisher's shard: parse and check the frame, forward it to the
//          root (one shard, per message)
//   shard  stream/#take (tail, head write, presence mirror) and Delivery/Outbox (the per-socket sends)
// Samples with no JavaScript on the stack (`(program)`: workerd's own code such as RPC decoding,
// socket writes and SQLite commits, `(garbage collector)`, and native entry glue) name no side;
// they are shared out in proportion to the named samples, and their share is reported. The
// absolute CPU is the isolate thread's (from /proc), split by those sample shares: the profile's
// sampling is uneven on a loaded machine (a sample's interval is not a fixed cost), but which code
// it lands in does not depend on that.

/** Labels call frames `Class.method` (`Class.method→` for a closure inside it); `sources` by scriptId. */
export function labeler(sources) {
  const perScript = new Map();
  return (frame) => {
    if (!frame.url || frame.functionName.startsWith("(")) return frame.functionName || "(native)";
    let label = perScript.get(frame.scriptId);
    if (!label) perScript.set(frame.scriptId, (label = scriptLabeler(sources.get(frame.scriptId) ?? "")));
    return label(frame);
  };
}

/**
 * For esbuild's output: classes start at column 0 (`var X = class`), their methods at column 2. A
 * line at column 0 that starts no statement continues a template literal and is skipped.
 */
function scriptLabeler(source) {
  const lines = source.split("\n");
  const indent = (l) => l.length - l.trimStart().length;
  const statement = /^(?:var|let|const|class|function|async function|export|import|__name|\}|\/\/)/;
  const classAt = (line) => {
    for (let i = line; i >= 0; i--) {
      const l = lines[i];
      if (!l || !l.trim() || indent(l) > 0 || !statement.test(l)) continue;
      return /^(?:var|let|const) ([\w$]+) = class\b|^class ([\w$]+)/.exec(l)?.slice(1).find(Boolean) ?? "";
    }
    return "";
  };
  const methodAt = (line) => {
    for (let i = line; i >= 0; i--) {
      const l = lines[i];
      if (!l || !l.trim()) continue;
      if (indent(l) === 0) {
        if (!statement.test(l)) continue;
        return /^(?:async )?function\*? ([\w$]+)/.exec(l)?.[1] ?? "(top)";
      }
      const m = indent(l) === 2 && /^ {2}(?:static )?(?:async )?(?:get |set )?(#?[\w$]+)\s*\(/.exec(l);
      if (m) return m[1];
    }
    return "(top)";
  };
  return (frame) => {
    const cls = classAt(frame.lineNumber);
    const name = frame.functionName || `${methodAt(frame.lineNumber)}→`;
    return cls ? `${cls}.${name}` : name;
  };
}

const ROOT = /^(Room\.(shardPublish|snapshot|range|shardMembers|shardState|shardDirect|historyFrames)|Fanout\.)/;
const INTAKE = /^Room\.(webSocketMessage|#viaRoot)/;
const SHARD = /^(Room\.(stream|#take|#repair|#deliverMessage|#deliverEvent|#sendReports|shardStats)|Outbox\.|Delivery\.)/;

/** Which side a stack (outermost first) is: root, intake, shard, native (no JS), or other. */
export function sideOf(labels) {
  for (const l of labels) {
    if (ROOT.test(l)) return "root";
    if (INTAKE.test(l)) return "intake";
    if (SHARD.test(l)) return "shard";
  }
  return labels.some((l) => !l.startsWith("(")) ? "other" : "native";
}

/**
 * Sample counts of a profile by side; `sends`: samples in the per-socket sends (under
 * Delivery.broadcast or the Outbox), whichever side; `rootFanout`: the root's stream calls.
 */
export function attribute(profile, label) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map();
  const classify = (id) => {
    if (memo.has(id)) return memo.get(id);
    const labels = [];
    for (let x = id; x !== undefined; x = parent.get(x)) labels.unshift(label(nodes.get(x).callFrame));
    labels.shift(); // (root)
    const side = labels[0] === "(idle)" ? "idle" : sideOf(labels);
    const send = labels.some((l) => /^(Delivery\.broadcast|Outbox\.)/.test(l));
    const fanout = side === "root" && labels.some((l) => l.startsWith("Fanout."));
    const out = { side, send, fanout };
    memo.set(id, out);
    return out;
  };
  const n = { idle: 0, root: 0, rootFanout: 0, intake: 0, shard: 0, shardSends: 0, sends: 0, native: 0, other: 0 };
  for (const id of profile.samples) {
    const { side, send, fanout } = classify(id);
    n[side]++;
    if (send) n.sends++;
    if (send && side === "shard") n.shardSends++;
    if (fanout) n.rootFanout++;
  }
  return n;
}

/**
 * The scenario's figures from one profiled run: `cpuMs` the isolate thread's CPU over the run,
 * `samples` attribute()'s counts, `messages` published, `deliveries` received, `shards` the
 * sockets on each shard (empty for an unsharded room). The shards run the same code in the same
 * isolate, so the profile cannot tell them apart: a shard's CPU per message is derived from these,
 * its share of the per-message work plus a send per socket it holds (shardUsPerMessage).
 */
export function figures({ cpuMs, samples, messages, deliveries, shards }) {
  const named = samples.root + samples.intake + samples.shard + samples.other;
  const busy = named + samples.native;
  // CPU of one sample's worth of named work, the unnamed shared out in proportion.
  const perSample = named > 0 ? cpuMs / named : 0;
  const us = (count, per) => (per > 0 ? (count * perSample * 1000) / per : NaN);
  const fixed = samples.shard - samples.shardSends;
  const out = {
    messages,
    deliveries,
    cpuUsPerDelivery: (cpuMs * 1000) / deliveries,
    /** every send, per delivered socket: the part of the work that grows with the sockets */
    sendUsPerDelivery: us(samples.sends, deliveries),
    /** everything else, per message (for an unsharded room: its whole per-message work) */
    restUsPerMessage: us(named - samples.sends, messages),
    rootUsPerMessage: us(samples.root, messages),
    /** the part of it that is the stream calls to the shards, per shard */
    rootFanoutUsPerShard: shards.length ? us(samples.rootFanout, messages) / shards.length : NaN,
    intakeUsPerMessage: us(samples.intake, messages),
    shardUsPerDelivery: us(samples.shard, deliveries),
    shardSendUsPerDelivery: us(samples.shardSends, deliveries),
    shardFixedUsPerMessage: shards.length ? us(fixed, messages) / shards.length : NaN,
    unnamedShare: busy > 0 ? samples.native / busy : NaN,
    otherShare: busy > 0 ? samples.other / busy : NaN,
    samples: busy,
  };
  return out;
}

/** One shard's CPU per message: its per-message work, and a send for each of its `sockets`. */
export function shardUsPerMessage(f, sockets) {
  return f.shardFixedUsPerMessage + f.shardSendUsPerDelivery * sockets;
}

/** The edge's limits (see RESULTS.md): what one object may hold, and one core each. */
export const EDGE = { sockets: 100_000, maxSocketsPerObject: 32_768, coreUs: 1_000_000 };

/**
 * The message rate a room of `sockets` on `shards` shards could sustain at the edge, from
 * measured figures: the root's CPU per message bounds it, and so does the busiest shard's (the
 * publisher's: its per-message work, the intake, and a send per socket). The root's stream calls
 * are taken to grow linearly with the shards it feeds (`measuredShards` is how many it fed).
 * Returns the arithmetic.
 */
export function edgeRate(f, measuredShards, shards, sockets = EDGE.sockets) {
  const perShard = Math.ceil(sockets / shards);
  if (perShard > EDGE.maxSocketsPerObject) return { shards, perShard, fits: false };
  const rootUs = f.rootUsPerMessage + f.rootFanoutUsPerShard * (shards - measuredShards);
  const rootRate = EDGE.coreUs / rootUs;
  const shardUs = shardUsPerMessage(f, perShard) + f.intakeUsPerMessage;
  const shardRate = EDGE.coreUs / shardUs;
  return {
    shards,
    perShard,
    fits: true,
    rootUs,
    rootRate,
    shardUs,
    shardRate,
    rate: Math.min(rootRate, shardRate),
    bound: rootRate < shardRate ? "root" : "shard",
    deliveriesPerSec: Math.min(rootRate, shardRate) * sockets,
  };
}
