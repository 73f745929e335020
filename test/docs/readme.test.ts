// The README's figures are read by people deploying; they must not drift from the code.
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { holdMs } from "../../src/room/announcements";
import { ConfigSchema, type Config } from "../../src/config";
import { MIN_BATCH_FANOUT } from "../../src/room/outbox";
import { ACK_TIMEOUT_MS, OUTBOX_LIMIT } from "../../src/client/outbox";
import { SENDS_PER_ROUND } from "../../src/room/webhooks";

it("documents every config field with the default the code uses", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const rows = new Map<string, string>();
  for (const m of readme.matchAll(/^\| `([A-Z_]+)` \| ([^|]+?) \|/gm)) rows.set(m[1]!, m[2]!.trim());
  const defaults: Record<string, Config[keyof Config]> = ConfigSchema.parse({});
  const shown = (v: Config[keyof Config]) =>
    v === undefined || (Array.isArray(v) && v.length === 0) ? "none" : Array.isArray(v) ? JSON.stringify(v) : String(v);
  expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.keys(ConfigSchema.shape).map((k) => [k, shown(defaults[k])])));
});

it("states the presence hold window the code uses", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const para = /\*\*Presence while users churn\.\*\*([\s\S]*?)\n\n/.exec(readme)?.[1] ?? "";
  expect(para).toContain(`a room of ${MIN_BATCH_FANOUT} or more sockets`);
  expect(holdMs(100)).toBe(100); // "the room size in ms"
  expect(para.replace(/\s+/g, " ")).toContain(`the room size in ms, ${holdMs(0)}–${holdMs(Infinity)} ms`);
});

it("states the SDK's outbox bound and how long a full one takes to drain at the room's defaults", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const sdk = (/## Client SDK\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? "").replace(/\s+/g, " ");
  const { RATE_LIMIT_BURST, RATE_LIMIT_PER_SEC } = ConfigSchema.parse({});
  expect(sdk).toContain(`\`outboxLimit\` ${OUTBOX_LIMIT}, \`ackTimeoutMs\` ${ACK_TIMEOUT_MS}`);
  const drainSec = Math.round((OUTBOX_LIMIT - RATE_LIMIT_BURST) / RATE_LIMIT_PER_SEC);
  expect(sdk).toContain(`a full default outbox of ${OUTBOX_LIMIT} drains in about ${drainSec} s at the room's defaults`);
});

it("states how many sendBatch calls a room's webhook round makes", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const hooks = (/## Webhooks\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? "").replace(/\s+/g, " ");
  expect(hooks).toContain(`in rounds of up to ${SENDS_PER_ROUND} \`sendBatch\` calls of 256 KB each`);
});
