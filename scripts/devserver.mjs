// Starts a real `wrangler dev` on loopback for end-to-end tests, the browser test and the
// benchmark: a free port, its own inspector port, a persisted state folder (so a restart keeps
// room storage, as an edge restart would), readiness by polling /health, and stop by PID.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SignJWT } from "jose";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Signs an HS256 token as the server's dev secret would verify it. */
export async function mintToken(secret, { sub, name, rooms, ttlSec = 3600 }) {
  let jwt = new SignJWT({ rooms, ...(name ? { name } : {}) })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSec);
  return jwt.sign(new TextEncoder().encode(secret));
}

/**
 * @param {{ vars?: Record<string,string>, config?: string, cwd?: string, health?: string, port?: number, persistTo?: string, log?: (line: string) => void }} [opts]
 *   `config`: a wrangler config other than ./wrangler.toml, relative to the repo (the bench's).
 *   `cwd`: run wrangler there (with its wrangler.toml) instead of in the repo: another project's Worker.
 *   `health`: the path readiness is polled on (default /health; under createRooms' `path`, that prefix's).
 */
export async function startDevServer(opts = {}) {
  const secret = opts.vars?.AUTH_SECRET ?? `e2e-${randomBytes(12).toString("hex")}`;
  const vars = { AUTH_SECRET: secret, ...opts.vars };
  const port = opts.port ?? (await freePort());
  const persistTo = opts.persistTo ?? mkdtempSync(join(tmpdir(), "edgerooms-dev-"));
  // Storage outlives stop(): a test may stop the server, then restart it over the same storage
  // (the browser test does). A folder made here goes when the process exits normally.
  if (!opts.persistTo) process.once("exit", () => rmSync(persistTo, { recursive: true, force: true }));
  const url = `http://127.0.0.1:${port}`;
  let child;
  let output = "";
  let inspector;

  async function start() {
    inspector = await freePort();
    const args = [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(inspector),
      "--persist-to",
      persistTo,
      "--log-level",
      "warn",
      ...(opts.config ? ["--config", opts.config] : []),
      ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
    ];
    child = spawn(join(root, "node_modules/.bin/wrangler"), args, {
      cwd: opts.cwd ?? root,
      detached: true, // its own process group, so stop() takes workerd down with it
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" },
    });
    const onData = (d) => {
      const text = d.toString();
      output = (output + text).slice(-20_000);
      if (opts.log) for (const line of text.split("\n")) if (line.trim()) opts.log(line);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`wrangler dev exited (${child.exitCode}):\n${output}`);
      try {
        const res = await fetch(`${url}${opts.health ?? "/health"}`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    await stop();
    throw new Error(`wrangler dev did not become ready on ${url}:\n${output}`);
  }

  async function stop() {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  }

  await start();
  return {
    url,
    wsUrl: url.replace(/^http/, "ws"),
    port,
    secret,
    persistTo,
    /** the last 20 kB wrangler printed */
    output: () => output,
    token: (claims) => mintToken(secret, claims),
    stop,
    /** Stops and starts again on the same port over the same storage: every socket drops. */
    async restart() {
      await stop();
      await start();
    },
    pid: () => child?.pid,
    /** workerd's inspector (Chrome DevTools protocol), for CPU profiles of the Worker's isolate */
    inspectorPort: () => inspector,
  };
}
