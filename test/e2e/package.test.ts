// The SDK as a user gets it: `npm pack` (which builds), installed from the tarball into a scratch
// project, type-checked there under Node ESM (nodenext) and bundler resolution without zod in its
// program (zod is installed, as a dependency of the server, but the SDK's types never reach it),
// bundled for the browser, and run in Node against `wrangler dev`. The server's export is
// server-package.test.ts's; arethetypeswrong here checks both.
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevServer, type DevServer } from "../../scripts/devserver.mjs";
import { bin, packAndInstall, run, typecheck, type Packed } from "./support/package";

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

let packed: Packed;
let work: string;
let tarball: string;
let consumer: string;

beforeAll(async () => {
  // What the consumer brings itself, taken from this checkout.
  packed = await packAndInstall(["ws", "@types/ws", "@types/node"]);
  ({ work, tarball, consumer } = packed);
  writeFileSync(join(consumer, "node.ts"), NODE_CONSUMER);
  writeFileSync(join(consumer, "browser.ts"), BROWSER_CONSUMER);
  writeFileSync(join(consumer, "tsconfig.node.json"), JSON.stringify(TSCONFIG_NODE));
  writeFileSync(join(consumer, "tsconfig.browser.json"), JSON.stringify(TSCONFIG_BROWSER));
});

afterAll(() => packed?.remove());

/** The files of a type-check's program that are zod's or jose's: none, since the SDK's declarations need neither. */
const zodOrJose = (files: string[]) => files.filter((f) => /node_modules\/(zod|jose)\//.test(f));

describe("the SDK package", () => {
  it("holds the built SDK and server, their declarations, and no source", async () => {
    const listing = await run("tar", ["-tzf", tarball], work);
    const files = listing.trim().split("\n").sort();
    expect(files).toContain("package/dist/client/index.js");
    expect(files).toContain("package/dist/types/client/index.d.ts");
    expect(files).toContain("package/dist/types/protocol.d.ts");
    const other = files.filter((f) => !f.startsWith("package/dist/types/"));
    expect(other).toEqual(["package/README.md", "package/dist/client/index.js", "package/dist/server/index.js", "package/package.json"]);
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
    expect(Object.keys(report.analysis.entrypoints).sort()).toEqual(["./client", "./server"]);
    for (const kind of ["node16-esm", "bundler"]) {
      for (const entry of ["client", "server"]) {
        const resolved = report.analysis.entrypoints[`./${entry}`]!.resolutions[kind];
        expect(resolved?.resolution?.fileName, `${entry} ${kind}`).toBe(`/node_modules/edgerooms/dist/types/${entry}/index.d.ts`);
        expect(resolved?.implementationResolution?.fileName, `${entry} ${kind}`).toBe(`/node_modules/edgerooms/dist/${entry}/index.js`);
      }
      expect(
        report.analysis.problems.filter((p) => p.resolutionKind === kind || !p.resolutionKind),
        kind,
      ).toEqual([]);
    }
  });

  it("type-checks a browser consumer under bundler resolution without zod's types and bundles it without zod", async () => {
    expect(zodOrJose(await typecheck(consumer, "tsconfig.browser.json"))).toEqual([]);
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
      expect(zodOrJose(await typecheck(consumer, "tsconfig.node.json"))).toEqual([]);
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
