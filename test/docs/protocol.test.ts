// docs/protocol.md is the contract clients are written against; whatever of it can be read off the
// code (schemas, error and close codes, config, limits, routes) must not drift from the code.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigSchema, type Config } from "../../src/config";
import {
  ClientFrame,
  CloseCode,
  ConnectionFrame,
  ConnectionServerFrame,
  ConnectionLimits,
  ErrorCode,
  HISTORY_PAGE_DEFAULT,
  HISTORY_PAGE_MAX,
  MAX_CONTROL_BYTES,
  MAX_EARLY_FRAMES,
  MAX_ID_LENGTH,
  OPENING_AT_ONCE,
  MAX_BAN_SEC,
  MAX_PRESENCE_STATE_BYTES,
  PING,
  PONG,
  ServerFrame,
  WebhookBody,
  WebhookEvent,
  WelcomeFrame,
} from "../../src/protocol";
import { holdMs } from "../../src/room/announcements";
import { COUNT_INTERVAL_MS } from "../../src/room/crowd";
import { KEEP_MS, KEEP_NEWEST } from "../../src/room/idempotency";
import { MAX_BATCH_CHARS, MIN_BATCH_FANOUT } from "../../src/room/outbox";
import { MAX_RESUME_TOKEN_LENGTH } from "../../src/room/resume-token";
import { REJECT_LIMIT, REJECT_WINDOW_MS } from "../../src/room/session";
import { KEYS_RETRY_SEC, KEYS_TIMEOUT_MS, MAX_TOKEN_LENGTH } from "../../src/auth";
import { DEV_TOKEN_TTL_SEC } from "../../src/worker/devtoken";
import { MAX_RETRY_DELAY_SEC, WEBHOOK_TIMEOUT_MS } from "../../src/worker/webhooks";
import { MAX_EVENT_BYTES, RESEND_AFTER_MS, SENDS_PER_ROUND } from "../../src/room/webhooks";
import { STATUS } from "../../src/http";
import { UpgradeLimiter } from "../../src/worker/upgrade-limit";

const doc = readFileSync(new URL("../../docs/protocol.md", import.meta.url), "utf8");

/** The text under a heading, up to the next heading of the same or a higher level. */
function section(title: string): string {
  const lines = doc.split("\n");
  // A `#` line inside a fenced block (the example session's comments) is not a heading.
  let fenced = false;
  const level = lines.map((l) => {
    if (l.startsWith("```")) fenced = !fenced;
    return fenced ? 0 : (/^(#+) /.exec(l)?.[1]?.length ?? 0);
  });
  const start = lines.findIndex((l, i) => level[i]! > 0 && l.replace(/^#+ /, "") === title);
  if (start < 0) throw new Error(`docs/protocol.md has no heading "${title}"`);
  const end = level.findIndex((n, i) => i > start && n > 0 && n <= level[start]!);
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** A markdown table's body rows as cells (header and separator rows left out). */
function rows(text: string): string[][] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("|") && !/^\|[-| ]+\|$/.test(l))
    .slice(1)
    .map((l) =>
      l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim()),
    );
}

/** `name` and `name`? in a cell: each name, and whether it is marked optional. */
function fields(cell: string): Record<string, boolean> {
  return Object.fromEntries([...cell.matchAll(/`(\w+)`(\?)?/g)].map((m) => [m[1]!, m[2] === "?"]));
}

type Obj = z.ZodObject<z.ZodRawShape>;
const literals = (s: z.ZodType): string[] => (s instanceof z.ZodEnum ? (s.options as string[]) : [...(s as z.ZodLiteral<string>).values]);
/** A frame schema's fields as the doc lists them: the discriminators left out, optional marked. */
function schemaFields(schema: Obj): Record<string, boolean> {
  return Object.fromEntries(
    Object.entries(schema.shape)
      .filter(([k]) => k !== "type" && k !== "event")
      .map(([k, v]) => [k, v instanceof z.ZodOptional]),
  );
}
/** Frame schemas, nested unions flattened, keyed as the doc's first column names them. */
function frames(union: { options: readonly z.ZodType[] }): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const option of union.options) {
    if ("options" in option) {
      for (const [k, v] of frames(option as unknown as { options: z.ZodType[] })) out.set(k, v);
      continue;
    }
    const o = option as Obj;
    const names = literals(o.shape.type as z.ZodType);
    if (o.shape.event) names.push(...literals(o.shape.event as z.ZodType));
    out.set(names.join(" "), o);
  }
  return out;
}
const firstColumn = (cell: string) => [...cell.matchAll(/`(\w+)`/g)].map((m) => m[1]).join(" ");

describe("docs/protocol.md", () => {
  it("is the project's own contract, and says its version", () => {
    expect(doc).not.toMatch(/\.\.\/shared|PROTOCOL\.md/);
    expect(doc).toMatch(/^\*\*Versioning:\*\* v1\.3 /m);
  });

  it("lists every error code with the HTTP status the Worker answers it with", () => {
    const documented = Object.fromEntries(rows(section("Errors")).map((r) => [r[0]!.replace(/`/g, ""), Number(r[1])]));
    expect(documented).toEqual(STATUS);
    expect(Object.keys(documented).sort()).toEqual([...ErrorCode.options].sort());
  });

  it("lists exactly the close codes the server defines", () => {
    const documented = rows(section("Close codes")).map((r) => Number(r[0]));
    expect(documented.sort()).toEqual(Object.values(CloseCode).sort());
  });

  it("describes every client frame with exactly its fields and which are optional", () => {
    const table = rows(section("Client → server"));
    const schemas = frames(ClientFrame);
    const documented = new Map(table.filter((r) => r[0] !== `\`${PING}\``).map((r) => [firstColumn(r[0]!), r[1]!]));
    expect([...documented.keys()].sort()).toEqual([...schemas.keys()].sort());
    for (const [name, schema] of schemas) expect(fields(documented.get(name)!), name).toEqual(schemaFields(schema));
    const ping = table.find((r) => r[0] === `\`${PING}\``)?.join(" ") ?? "";
    expect(ping).toContain(`\`${PONG}\``);
  });

  it("describes every server frame and presence event with exactly its fields and which are optional", () => {
    const schemas = frames(ServerFrame);
    const documented = new Map(rows(section("Server → client")).map((r) => [firstColumn(r[0]!), r[1]!]));
    expect([...documented.keys()].sort()).toEqual([...schemas.keys()].sort());
    for (const [name, schema] of schemas) expect(fields(documented.get(name)!), name).toEqual(schemaFields(schema));
  });

  it("describes every frame of a connection (GET /connect), both ways, with exactly its fields", () => {
    const tables = section("Connection frames")
      .split(/\n(?=\| server → client)/)
      .map((t) => new Map(rows(t).map((r) => [firstColumn(r[0]!), r[1]!])));
    for (const [table, union] of [
      [tables[0]!, ConnectionFrame],
      [tables[1]!, ConnectionServerFrame],
    ] as const) {
      const schemas = frames(union);
      table.delete(PING);
      expect([...table.keys()].sort()).toEqual([...schemas.keys()].sort());
      for (const [name, schema] of schemas) expect(fields(table.get(name)!), name).toEqual(schemaFields(schema));
    }
  });

  it("explains every welcome field and connection limit", () => {
    const welcome = section("welcome");
    const keys = [...Object.keys(WelcomeFrame.shape), ...Object.keys(ConnectionLimits.shape)].filter((k) => k !== "type");
    for (const k of keys) expect(welcome, k).toContain(`\`${k}\``);
  });

  it("documents every config field with the default the code uses and the range it accepts", () => {
    const table = rows(section("Configuration"));
    const defaults: Record<string, Config[keyof Config]> = ConfigSchema.parse({});
    const shown = (v: Config[keyof Config]) =>
      v === undefined || (Array.isArray(v) && v.length === 0) ? "none" : Array.isArray(v) ? JSON.stringify(v) : String(v);
    const documented = Object.fromEntries(table.map((r) => [r[0]!.replace(/`/g, ""), r[1]]));
    expect(documented).toEqual(Object.fromEntries(Object.keys(ConfigSchema.shape).map((k) => [k, shown(defaults[k])])));
    for (const [cell, , accepted] of table) {
      const name = cell!.replace(/`/g, "");
      if (typeof defaults[name] !== "number") continue;
      const range = /^([\d,]+)–([\d,]+)$/.exec(accepted!);
      expect(range, `${name}'s accepted range`).not.toBeNull();
      const [min, max] = [range![1]!, range![2]!].map((n) => Number(n.replace(/,/g, "")));
      const ok = (v: number) => ConfigSchema.safeParse({ [name]: String(v) }).success;
      expect([ok(min! - 1), ok(min!), ok(max!), ok(max! + 1)], name).toEqual([false, true, true, false]);
    }
  });

  it("states the fixed limits the code uses", () => {
    const constants: Record<string, number> = {
      MAX_ID_LENGTH,
      MAX_PRESENCE_STATE_BYTES,
      HISTORY_PAGE_DEFAULT,
      HISTORY_PAGE_MAX,
      MAX_TOKEN_LENGTH,
      KEYS_TIMEOUT_MS,
      KEYS_RETRY_SEC,
      MAX_RESUME_TOKEN_LENGTH,
      REJECT_LIMIT,
      REJECT_WINDOW_MS,
      "UpgradeLimiter.WINDOW_MS": UpgradeLimiter.WINDOW_MS,
      KEEP_MS,
      KEEP_NEWEST,
      COUNT_INTERVAL_MS,
      MIN_BATCH_FANOUT,
      MAX_BATCH_CHARS,
      DEV_TOKEN_TTL_SEC,
      WEBHOOK_TIMEOUT_MS,
      MAX_RETRY_DELAY_SEC,
      MAX_EVENT_BYTES,
      RESEND_AFTER_MS,
      SENDS_PER_ROUND,
      OPENING_AT_ONCE,
      MAX_EARLY_FRAMES,
      MAX_CONTROL_BYTES,
    };
    const documented: Record<string, number> = {};
    for (const [, value, constant] of rows(section("Fixed limits"))) {
      const name = constant!.replace(/`/g, "");
      const m = /^([\d,]+)\s*(ms|s|h)?\b/.exec(value!);
      expect(m, `${name}: ${value}`).not.toBeNull();
      const n = Number(m![1]!.replace(/,/g, ""));
      const seconds = m![2] === "h" ? n * 3600 : m![2] === "ms" ? n / 1000 : n;
      documented[name] = name.endsWith("_MS") ? seconds * 1000 : seconds;
    }
    expect(documented).toEqual(constants);
  });

  it("repeats those limits in its prose as the code has them", () => {
    const prose = doc.replace(/\s+/g, " ");
    for (const phrase of [
      `token over ${MAX_TOKEN_LENGTH} chars`,
      `no answer in ${KEYS_TIMEOUT_MS / 1000} s`,
      `\`Retry-After: ${KEYS_RETRY_SEC}\``,
      `the ${REJECT_LIMIT + 1}st within ${REJECT_WINDOW_MS / 1000} s`,
      `more than ${REJECT_LIMIT} refused frames within ${REJECT_WINDOW_MS / 1000} s`,
      `at most ${MAX_PRESENCE_STATE_BYTES} bytes serialized`,
      `\`limit\` 1–${HISTORY_PAGE_MAX} (default ${HISTORY_PAGE_DEFAULT})`,
      `a broadcast to ${MIN_BATCH_FANOUT} or more sockets`,
      `in a room of ${MIN_BATCH_FANOUT} or more sockets`,
      `at most ${MAX_BATCH_CHARS} chars`,
      `the number of sockets in ms, ${holdMs(0)}–${holdMs(Infinity)} ms`,
      `{"token","expiresIn":${DEV_TOKEN_TTL_SEC}}`,
      `\`resume\` (at most ${MAX_RESUME_TOKEN_LENGTH} chars`,
      `"banSec"?:0–${MAX_BAN_SEC}`,
      `no answer within ${WEBHOOK_TIMEOUT_MS / 1000} s`,
      `at most ${MAX_RETRY_DELAY_SEC} s between tries`,
      `exceed ${MAX_EVENT_BYTES.toLocaleString("en-US")} bytes`,
      `every ${RESEND_AFTER_MS / 1000} s`,
      `in up to ${SENDS_PER_ROUND} \`sendBatch\` calls at once`,
    ]) {
      expect(prose).toContain(phrase);
    }
  });

  it("gives each room route the method and capability the Worker requires", () => {
    // The Worker's table (src/worker/index.ts cannot be imported outside workerd), read as text.
    const source = readFileSync(new URL("../../src/worker/index.ts", import.meta.url), "utf8");
    // The action's path, where it is not the action's name (`message`: one message of `messages`).
    const paths: Record<string, string> = { message: "messages/:seq" };
    const needs = [...source.matchAll(/(\w+): \{ method: "(\w+)", cap: "(\w+)" \}/g)].map((m) => ({
      route: `${m[2]} /rooms/:room/${paths[m[1]!] ?? m[1]}`,
      cap: m[3],
    }));
    expect(needs.length).toBe(8);
    const table = rows(section("Routes"));
    for (const { route, cap } of needs) {
      const row = table.find((r) => r[0]!.replace(/`/g, "").split("?")[0] === route);
      expect(row?.[1], route).toBe(`\`${cap}\``);
    }
  });

  it("shows only valid frames, with no field the schemas would drop, in its example session", () => {
    const session = /```\n([\s\S]*?)```/.exec(section("Example session"))?.[1] ?? "";
    const sent = new Set<string>();
    let received = 0;
    for (const line of session.split("\n")) {
      const m = /^[AB]([<>]) (.*)$/.exec(line);
      if (!m) continue;
      const [, dir, text] = m as unknown as [string, string, string];
      if (text === (dir === ">" ? PING : PONG)) continue;
      const raw: unknown = JSON.parse(text);
      const schema = dir === ">" ? ClientFrame : ServerFrame;
      for (const frame of Array.isArray(raw) && dir === "<" ? raw : [raw]) {
        const parsed = schema.safeParse(frame);
        expect(parsed.success, line).toBe(true);
        expect(parsed.data, line).toEqual(frame); // zod strips unknown keys: a misspelt field shows here
      }
      if (dir === ">") sent.add((raw as { type: string }).type);
      else received++;
    }
    expect([...sent].sort()).toEqual([...frames(ClientFrame).keys()].sort()); // every client frame shown
    expect(received).toBeGreaterThan(10);
  });

  it("describes every webhook event with exactly its fields, and shows a valid body", () => {
    const schemas = frames(WebhookEvent);
    const documented = new Map(rows(section("Webhook events")).map((r) => [firstColumn(r[0]!), r[1]!]));
    expect([...documented.keys()].sort()).toEqual([...schemas.keys()].sort());
    for (const [name, schema] of schemas) expect(fields(documented.get(name)!), name).toEqual(schemaFields(schema));
    const example = /```json\n(.*)\n```/.exec(section("Webhook events"))![1]!;
    expect(WebhookBody.safeParse(JSON.parse(example)).success).toBe(true);
    expect(doc).not.toContain("Planned (not implemented yet)");
  });
});
