#!/usr/bin/env node
// Builds what the Worker does not: the demo page's script (public/chat.ts + the SDK, one file,
// no zod) into public/app.js, and the SDK as plain ESM in dist/client/ for the package's
// `./client` export (its declarations are scripts/build-types.mjs's; `npm run build` runs both).
// wrangler.toml's [build] runs only this, before `wrangler dev` and `deploy`, so the bundle is
// generated, never committed. Uses the esbuild wrangler already depends on.
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const common = { bundle: true, format: "esm", target: "es2022", logLevel: "warning", absWorkingDir: root };

const [demo] = await Promise.all([
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
]);

// The SDK imports only types from src/protocol.ts; a runtime import would drag zod into every page.
const leaked = Object.keys(demo.metafile.inputs).filter((p) => p.includes("node_modules/zod") || p.endsWith("src/protocol.ts"));
if (leaked.length > 0) throw new Error(`the demo bundle pulled in ${leaked.join(", ")}`);
