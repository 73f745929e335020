// The SDK as a user gets it: `npm pack` (which builds), installed from the tarball into a scratch
// project, type-checked there under Node ESM (nodenext) and bundler resolution with no zod in
// reach, bundled for the browser, and run in Node against `wrangler dev`.
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevServer, type DevServer } from "../../scripts/devserver.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const bin = (name: string) => join(root, "node_modules/.bin", name);
// npm's variables from an enclosing `npm test` must not steer the npm runs below.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("npm_")));

/** Runs a command to completion; a failure carries everything it printed. */
function run(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, env, timeout: 90_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${cmd} ${args.join(" ")} failed (${error.code ?? error.signal}):\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

// A Node consumer: publishes through the SDK with `ws` and prints its own echo.
const NODE_CONSUMER = `
import { RoomClient, RoomError, type MessageFrame, type Status } from "edgerooms/client";
import { WebSocket } from "ws";

const [url, room, token] = process.argv.slice(2) as [string, string, string];
const client = new RoomClient({ url, room, token, WebSocket });
const echo = new Promise<MessageFrame>((resolve) => client.on("message", resolve));
const seq: number = await client.publish({ text: "hello from the tarball" });
const message = await echo;
const status: Status = client.status;
// @ts-expect-error publish resolves with a number: the types are real, not any
export const wrong: string = seq;
const error = new RoomError("closed", "done");
console.log(JSON.stringify({ seq, echoSeq: message.seq, data: message.data, from: message.from.id, me: client.me?.id, status, error: error instanceof Error && error.code }));
client.close();
`;

// A browser consumer: the global WebSocket, as a page bundles it.
const BROWSER_CONSUMER = `
import { RoomClient, type PresenceEvent } from "edgerooms/client";

const client = new RoomClient({ url: location.origin, room: "lobby", token: async () => "t" });
client.on("presence", (p: PresenceEvent) => (document.title = String(p.count)));
client.on("message", (m) => document.body.append(\`\${m.from.name}: \${m.seq}\`));
// @ts-expect-error "typing" is not an event the room emits
client.on("typing", () => {});
`;

const compilerOptions = { target: "es2022", strict: true, skipLibCheck: false, lib: ["es2023"] };
const TSCONFIG_NODE = {
  compilerOptions: { ...compilerOptions, module: "nodenext", moduleResolution: "nodenext", types: ["node"], outDir: "out" },
  files: ["node.ts"],
};
const TSCONFIG_BROWSER = {
  compilerOptions: { ...compilerOptions, module: "esnext", moduleResolution: "bundler", lib: ["es2023", "dom"], types: [], noEmit: true },
  files: ["browser.ts"],
};

let work: string;
let tarball: string;
let consumer: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "edgerooms-pkg-"));
  await run("npm", ["pack", "--silent", "--pack-destination", work], root);
  tarball = join(
    work,
    readdirSync(work).find((f) => f.endsWith(".tgz"))!,
  );
  consumer = join(work, "consumer");
  mkdirSync(consumer);
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  // A real install of the tarball; it has no dependencies, so nothing needs the network.
  await run("npm", ["install", "--offline", "--no-audit", "--no-fund", tarball], consumer);
  // What the consumer brings itself, taken from this checkout (no zod among them).
  mkdirSync(join(consumer, "node_modules/@types"), { recursive: true });
  for (const dep of ["ws", "@types/ws", "@types/node"]) symlinkSync(join(root, "node_modules", dep), join(consumer, "node_modules", dep), "dir");
  writeFileSync(join(consumer, "node.ts"), NODE_CONSUMER);
  writeFileSync(join(consumer, "browser.ts"), BROWSER_CONSUMER);
  writeFileSync(join(consumer, "tsconfig.node.json"), JSON.stringify(TSCONFIG_NODE));
  writeFileSync(join(consumer, "tsconfig.browser.json"), JSON.stringify(TSCONFIG_BROWSER));
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the SDK package", () => {
  it("holds the built SDK and nothing of the server", async () => {
    const listing = await run("tar", ["-tzf", tarball], work);
    const files = listing.trim().split("\n").sort();
    expect(files).toContain("package/dist/client/index.js");
    expect(files).toContain("package/dist/types/client/index.d.ts");
    expect(files).toContain("package/dist/types/protocol.d.ts");
    const other = files.filter((f) => !f.startsWith("package/dist/client/") && !f.startsWith("package/dist/types/"));
    expect(other).toEqual(["package/README.md", "package/package.json"]);
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
  });

  it("resolves to its built JavaScript and declarations for Node ESM and bundlers (arethetypeswrong)", async () => {
    const report = JSON.parse(await run(bin("attw"), [tarball, "--profile", "esm-only", "--format", "json"], work)) as {
      analysis: {
        entrypoints: Record<
          string,
          { resolutions: Record<string, { resolution?: { fileName: string }; implementationResolution?: { fileName: string } }> }
        >;
        problems: { resolutionKind?: string; kind: string }[];
      };
    };
    const client = report.analysis.entrypoints["./client"]!.resolutions;
    for (const kind of ["node16-esm", "bundler"]) {
      expect(client[kind]?.resolution?.fileName, kind).toBe("/node_modules/edgerooms/dist/types/client/index.d.ts");
      expect(client[kind]?.implementationResolution?.fileName, kind).toBe("/node_modules/edgerooms/dist/client/index.js");
      expect(
        report.analysis.problems.filter((p) => p.resolutionKind === kind || !p.resolutionKind),
        kind,
      ).toEqual([]);
    }
  });

  it("type-checks a browser consumer under bundler resolution and bundles it without zod", async () => {
    await run(process.execPath, [bin("tsc"), "-p", "tsconfig.browser.json"], consumer);
    const result = await build({
      entryPoints: [join(consumer, "browser.ts")],
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      write: false,
      metafile: true,
      absWorkingDir: consumer,
      logLevel: "silent",
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs).toContain("node_modules/edgerooms/dist/client/index.js");
    expect(inputs.filter((p) => p.includes("zod") || p.includes("/src/"))).toEqual([]);
  });

  describe("in Node against wrangler dev", () => {
    let server: DevServer;
    beforeAll(async () => {
      server = await startDevServer();
    });
    afterAll(async () => {
      await server?.stop();
    });

    it("type-checks under nodenext, then publishes and receives its own echo", async () => {
      await run(process.execPath, [bin("tsc"), "-p", "tsconfig.node.json"], consumer);
      const room = "package-consumer";
      const token = await server.token({ sub: "pkg-user", rooms: { [room]: ["*"] } });
      const out = await run(process.execPath, [join(consumer, "out/node.js"), server.url, room, token], consumer);
      expect(JSON.parse(out.trim())).toEqual({
        seq: 1,
        echoSeq: 1,
        data: { text: "hello from the tarball" },
        from: "pkg-user",
        me: "pkg-user",
        status: "open",
        error: "closed",
      });
    });
  });
});
