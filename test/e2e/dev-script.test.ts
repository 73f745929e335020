// `npm run dev` as users call it: the arguments they give after `--` win over the script's own
// defaults (wrangler refuses a flag given twice), and the dev-only token route works.
import { spawn, type ChildProcess } from "node:child_process";
import { afterEach, expect, it } from "vitest";
import { freePort } from "../../scripts/devserver.mjs";

let child: ChildProcess | undefined;
afterEach(async () => {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child!.once("exit", r));
  process.kill(-child.pid!, "SIGTERM");
  await exited;
});

async function ready(url: string, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (child?.exitCode !== null) throw new Error(`npm run dev exited with ${child?.exitCode}`);
    try {
      if ((await fetch(`${url}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`no answer on ${url} within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

for (const form of ["separate", "joined"] as const) {
  it(`npm run dev -- --port P --ip 127.0.0.1 (${form}) serves on that port, with dev tokens`, async () => {
    const port = await freePort();
    const flags = form === "separate" ? ["--port", String(port), "--ip", "127.0.0.1"] : [`--port=${port}`, "--ip=127.0.0.1"];
    let output = "";
    child = spawn("npm", ["run", "dev", "--", ...flags, "--inspector-port", String(await freePort())], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CI: "true", NO_COLOR: "1" },
    });
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    const url = `http://127.0.0.1:${port}`;
    await ready(url, 90_000).catch((err) => {
      throw new Error(`${err.message}\n${output.slice(-3000)}`);
    });
    const res = await fetch(`${url}/dev/token?user=ada&room=lobby`);
    expect(res.status).toBe(200);
    expect(await res.json<{ token: string }>()).toMatchObject({ token: expect.any(String) });
    expect(output).not.toContain("expects a single value");
  });
}
