// The README's configuration table is read by people deploying; it must not drift from the code.
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { ConfigSchema } from "../../src/config";

it("documents every config field with the default the code uses", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const rows = new Map<string, string>();
  for (const m of readme.matchAll(/^\| `([A-Z_]+)` \| ([^|]+?) \|/gm)) rows.set(m[1]!, m[2]!.trim());
  const defaults = ConfigSchema.parse({}) as Record<string, unknown>;
  const shown = (v: unknown) =>
    v === undefined || (Array.isArray(v) && v.length === 0) ? "none" : String(v);
  expect(Object.fromEntries(rows)).toEqual(
    Object.fromEntries(Object.keys(ConfigSchema.shape).map((k) => [k, shown(defaults[k])])),
  );
});
