// The package as a user gets it: `npm pack` (which builds) into a scratch folder, and a scratch
// project that installs the tarball. The tarball's dependencies (zod, jose) are taken from this
// checkout's node_modules, so the install needs no network: the project names them as `file:`
// links, npm dedupes the tarball's own `dependencies` onto them, and `npm ls` proves the
// versions satisfy what the tarball asks for.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
export const bin = (name: string) => join(root, "node_modules/.bin", name);
/** What the tarball's package.json lists as `dependencies`: the install links these from here. */
const DEPENDENCIES = ["jose", "zod"];
// npm's variables from an enclosing `npm test` must not steer the npm runs below.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("npm_")));

/** Runs a command to completion; a failure carries everything it printed. */
export function run(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, env, timeout: 90_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${cmd} ${args.join(" ")} failed (${error.code ?? error.signal}):\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** tsc in `cwd` on `tsconfig`; resolves with the files its program holds (to tell what a check needed). */
export async function typecheck(cwd: string, tsconfig: string): Promise<string[]> {
  const out = await run(process.execPath, [bin("tsc"), "-p", tsconfig, "--listFiles"], cwd);
  return out.trim().split("\n");
}

export interface Packed {
  /** the scratch folder: the tarball and the consumer in it */
  work: string;
  tarball: string;
  /** the consumer project, the tarball installed */
  consumer: string;
  /** removes the scratch folder */
  remove(): void;
}

/**
 * Packs this repository and installs the tarball into a fresh consumer project, with `links`
 * (packages the consumer brings itself, e.g. `ws`, `@types/node`) symlinked from this checkout.
 */
export async function packAndInstall(links: string[] = []): Promise<Packed> {
  const work = mkdtempSync(join(tmpdir(), "edgerooms-pkg-"));
  const remove = () => rmSync(work, { recursive: true, force: true });
  try {
    await run("npm", ["pack", "--silent", "--pack-destination", work], root);
    const tarball = join(
      work,
      readdirSync(work).find((f) => f.endsWith(".tgz"))!,
    );
    const consumer = join(work, "consumer");
    mkdirSync(consumer);
    const dependencies = {
      edgerooms: `file:${tarball}`,
      ...Object.fromEntries(DEPENDENCIES.map((d) => [d, `file:${realpathSync(join(root, "node_modules", d))}`])),
    };
    writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module", dependencies }));
    await run("npm", ["install", "--offline", "--ignore-scripts", "--no-audit", "--no-fund"], consumer);
    // Every dependency edge satisfied (a version outside the tarball's range fails here), none nested.
    await run("npm", ["ls", "--all"], consumer);
    for (const dep of links) {
      mkdirSync(dirname(join(consumer, "node_modules", dep)), { recursive: true });
      symlinkSync(join(root, "node_modules", dep), join(consumer, "node_modules", dep), "dir");
    }
    return { work, tarball, consumer, remove };
  } catch (err) {
    remove(); // a failed pack or install leaves no scratch folder behind
    throw err;
  }
}
