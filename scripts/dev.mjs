#!/usr/bin/env node
// `npm run dev`: the room server on http://localhost:8787 for local use. The dev-only secret
// and the /dev/token route are passed here with --var, never in wrangler.toml, so a deploy
// cannot inherit them. Extra arguments go to wrangler, and win over this script's defaults:
// `npm run dev -- --port 9000 --ip 0.0.0.0` (wrangler refuses a flag given twice).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

const given = process.argv.slice(2);
/** True when the user passed `--name value` or `--name=value`. */
const has = (name) => given.some((a) => a === name || a.startsWith(`${name}=`));

const secret = process.env.AUTH_SECRET ?? `dev-${randomBytes(16).toString("hex")}`;
const args = [
  "wrangler",
  "dev",
  ...(has("--ip") ? [] : ["--ip", process.env.DEV_IP ?? "127.0.0.1"]),
  ...(has("--port") ? [] : ["--port", process.env.PORT ?? "8787"]),
  "--var",
  `AUTH_SECRET:${secret}`,
  "--var",
  "DEV_TOKENS:true",
  ...given,
];
const child = spawn("npx", args, {
  stdio: "inherit",
  env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(signal ? 1 : (code ?? 0)));
