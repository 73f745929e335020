// docs/architecture.md is the map of src/: these keep it and the code's shape true together.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const src = join(root, "src");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : name.endsWith(".ts") ? [path] : [];
  });
}

const sources = files(src);
const rel = (path: string) => relative(root, path);

/** Every file under src/ a file imports (type-only imports and re-exports included). */
function importsOf(path: string): string[] {
  const text = readFileSync(path, "utf8");
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*)"(\.[^"]+)"/g)].map((m) => m[1]!);
  return specs.map((spec) => {
    const base = resolve(dirname(path), spec);
    const found = [`${base}.ts`, join(base, "index.ts")].find((p) => sources.includes(p));
    if (!found) throw new Error(`${rel(path)} imports ${spec}, which is no file under src/`);
    return found;
  });
}

const graph = new Map(sources.map((path) => [path, importsOf(path)]));

describe("the shape of src/ (docs/architecture.md)", () => {
  it("names every file under src/ in docs/architecture.md", () => {
    const map = readFileSync(join(root, "docs/architecture.md"), "utf8");
    const missing = sources.filter((path) => {
      const name = rel(path).replace(/^src\//, "");
      const file = name.split("/").pop()!;
      // a file is named by its path under src/, or by its name in its folder's rows
      return !map.includes(name) && !map.includes(`\`${file}\``);
    });
    expect(missing.map(rel)).toEqual([]);
  });

  it("has no file over 500 lines", () => {
    const long = sources.map((path) => [rel(path), readFileSync(path, "utf8").split("\n").length] as const).filter(([, n]) => n > 500);
    expect(long).toEqual([]);
  });

  it("keeps the rooms independent of the Worker: nothing under src/room/ imports src/worker/", () => {
    const crossing = [...graph].flatMap(([from, to]) =>
      rel(from).startsWith("src/room/") ? to.filter((t) => rel(t).startsWith("src/worker/")).map((t) => `${rel(from)} → ${rel(t)}`) : [],
    );
    expect(crossing).toEqual([]);
  });

  it("has no import cycle", () => {
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const walk = (path: string, trail: string[]) => {
      if (state.get(path) === "done") return;
      if (state.get(path) === "open") {
        cycles.push([...trail.slice(trail.indexOf(path)), path].map(rel).join(" → "));
        return;
      }
      state.set(path, "open");
      for (const next of graph.get(path)!) walk(next, [...trail, path]);
      state.set(path, "done");
    };
    for (const path of sources) walk(path, []);
    expect(cycles).toEqual([]);
  });
});
