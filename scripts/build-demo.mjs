#!/usr/bin/env node
// Builds what the Worker does not: the demo page's script (public/chat.ts + the SDK, one file,
// no zod) into public/app.js, the SDK as plain ESM in dist/client/ for the package's `./client`
// export, and the rooms as a library in dist/server/ for its `./server` export (the declarations
// of both are scripts/build-types.mjs's; `npm run build` runs both).
// wrangler.toml's [build] runs only this, before `wrangler dev` and `deploy`, so the bundle is
// generated, never committed. Uses the esbuild wrangler already depends on.
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const common = { bundle: true, format: "esm", target: "es2022", logLevel: "warning", absWorkingDir: root };

const [demo, , server] = await Promise.all([
  build({
    ...common,
    entryPoints: ["public/chat.ts"],
    outfile: "public/app.js",
    platform: "browser",
    minify: true,
    sourcemap: "linked",
    metafile: true,
  }),
  build({ ...common, entryPoints: ["src/client/index.ts"], outfile: "dist/client/index.js", platform: "neutral" }),
  // The server's own code in one file; its dependencies (package.json's `dependencies`) are the
  // user's install, and `cloudflare:workers` is the runtime's, so the user's bundler (wrangler)
  // resolves them: one copy of zod and jose per Worker, whatever else imports them.
  build({
    ...common,
    entryPoints: ["src/server/index.ts"],
    outfile: "dist/server/index.js",
    platform: "neutral",
    external: ["cloudflare:workers", "jose", "zod"],
    metafile: true,
  }),
]);

// The SDK imports only types from src/protocol.ts; a runtime import would drag zod into every page.
const leaked = Object.keys(demo.metafile.inputs).filter((p) => p.includes("node_modules/zod") || p.endsWith("src/protocol.ts"));
if (leaked.length > 0) throw new Error(`the demo bundle pulled in ${leaked.join(", ")}`);

// Whatever the server imports from a package must be a dependency the user installs, not a copy
// inlined here (a second zod beside the user's would not know the first one's schemas).
const inlined = Object.keys(server.metafile.inputs).filter((p) => !p.startsWith("src/"));
if (inlined.length > 0) throw new Error(`the server bundle inlined ${inlined.join(", ")}: mark them external (and dependencies)`);
