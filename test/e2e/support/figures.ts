// What each abuse/fault suite measured, kept for the README's reliability table: every suite
// merges its row into artifacts/reliability.json (scripts/reliability-table.mjs renders it) and
// prints a one-line summary, so the figures come from a run and are never typed by hand.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
export const FIGURES_FILE = process.env.RELIABILITY_FILE ?? join(root, "artifacts/reliability.json");

/** The figures at `E2E_SCALE=full`; a shorter CI mode that still exercises each guarantee otherwise. */
export const FULL = process.env.E2E_SCALE === "full";
export const SCALE = FULL ? "full" : "ci";

export interface Figures {
  /** what the suite guards, one line */
  guarantee: string;
  /** clients (logical users or sockets) taking part */
  clients: number;
  /** frames, publishes or actions the suite pushed at the server */
  inputs: number;
  /** connections dropped (by the client, the server or a restart) */
  dropped: number;
  /** connections resumed with since/epoch */
  resumed: number;
  /** messages some client should have had and did not (must be 0) */
  lost: number;
  /** messages a client got twice or out of order (must be 0) */
  duplicated: number;
  /** server processes that died unasked, or sockets closed 1011 (must be 0) */
  crashes: number;
  /** free-form measurements: latencies, ratios, close codes */
  extra?: Record<string, number | string | boolean>;
}

export interface Row extends Figures {
  suite: string;
  scale: string;
  seconds: number;
  passed: boolean;
  at: string;
}

/** Starts a suite's clock; `record` writes its row. */
export function stopwatch(): () => number {
  const t0 = performance.now();
  return () => Math.round((performance.now() - t0) / 100) / 10;
}

export function record(suite: string, figures: Figures, seconds: number, passed: boolean): Row {
  const row: Row = { suite, scale: SCALE, seconds, passed, at: new Date().toISOString(), ...figures };
  let all: Record<string, Row> = {};
  try {
    all = JSON.parse(readFileSync(FIGURES_FILE, "utf8")) as Record<string, Row>;
  } catch {
    // first suite of the run, or an unreadable file: start over
  }
  all[suite] = row;
  mkdirSync(dirname(FIGURES_FILE), { recursive: true });
  writeFileSync(FIGURES_FILE, `${JSON.stringify(all, null, 2)}\n`);
  const extra = Object.entries(figures.extra ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  console.log(
    `[reliability] ${suite} (${SCALE}, ${seconds}s, ${passed ? "pass" : "FAIL"}): clients=${row.clients} inputs=${row.inputs} ` +
      `dropped=${row.dropped} resumed=${row.resumed} lost=${row.lost} duplicated=${row.duplicated} crashes=${row.crashes} ${extra}`,
  );
  return row;
}

/** The q-quantile (0..1) by nearest rank. */
export function quantile(samples: number[], q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/** A suite's figures, all counts at zero. */
export function figuresFor(guarantee: string, clients: number): Figures {
  return { guarantee, clients, inputs: 0, dropped: 0, resumed: 0, lost: 0, duplicated: 0, crashes: 0 };
}

/** Runs a suite's body and records its row whether it passed or not (a failing run's figures say why). */
export async function measured(suite: string, figures: Figures, body: () => Promise<void>): Promise<void> {
  const elapsed = stopwatch();
  let passed = false;
  try {
    await body();
    passed = true;
  } finally {
    record(suite, figures, elapsed(), passed);
  }
}
