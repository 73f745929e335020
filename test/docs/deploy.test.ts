// What `wrangler deploy` uploads is the product and nothing else: the benchmark's floor and its
// unbatched room live in bench/ with their own Worker and config, so no deploy creates them in a
// user's account. Configs are read by wrangler itself and entries bundled by esbuild, as a deploy does.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { expect, it } from "vitest";
import { unstable_getDurableObjectClassNameToUseSQLiteMap as liveClasses, unstable_readConfig as readConfig } from "wrangler";
import { ConfigSchema } from "../../src/config";

const root = fileURLToPath(new URL("../../", import.meta.url));
const config = (path: string) => readConfig({ config: join(root, path) }, { hideWarnings: true });

/** The names an entry module exports once bundled, "default" left out. */
async function exportsOf(entry: string): Promise<string[]> {
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "neutral",
    external: ["cloudflare:*"],
    logLevel: "silent",
  });
  const [output] = Object.values(out.metafile.outputs);
  return output!.exports.filter((e) => e !== "default").sort();
}

it("deploys only the production Room: bound, alive after the migrations, and exported", async () => {
  const prod = config("wrangler.toml");
  expect(prod.durable_objects.bindings.map((b: { class_name: string }) => b.class_name)).toEqual(["Room"]);
  expect([...liveClasses(prod.migrations).keys()]).toEqual(["Room"]);
  expect(await exportsOf(prod.main)).toEqual(["Room"]);
});

it("keeps the bench's switches out of src/", () => {
  expect(Object.keys(ConfigSchema.shape).filter((k) => k.startsWith("BENCH"))).toEqual([]);
  const src = join(root, "src");
  const mentions = readdirSync(src, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .filter((f) => /FloorRoom|BENCH_|unbatched|\/floor\//i.test(readFileSync(join(src, f), "utf8")));
  expect(mentions).toEqual([]);
});

it("runs the bench on its own Worker, with the production Room on the production compatibility date", async () => {
  const prod = config("wrangler.toml");
  const bench = config("bench/wrangler.toml");
  expect(bench.name).not.toBe(prod.name);
  expect(bench.compatibility_date).toBe(prod.compatibility_date);
  expect(bench.compatibility_flags).toEqual(prod.compatibility_flags);
  expect(bench.durable_objects.bindings).toContainEqual({ name: "ROOMS", class_name: "Room" });
  const classes = [...liveClasses(bench.migrations).keys()].sort();
  expect(classes).toEqual(["CountedRoom", "DurableFloorRoom", "FloorRoom", "HookedRoom", "Room", "UnbatchedRoom"]);
  expect(await exportsOf(bench.main)).toEqual(classes);
});
