import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// The secret used by every Workers-pool test to sign its tokens (test/helpers.ts reads it too).
export const TEST_SECRET = "test-secret-for-the-workers-pool-only";

/** A Workers-pool project: the real runtime, wrangler.toml's bindings, these vars on top. */
function pool(name: string, include: string[], bindings: Record<string, string>) {
  return {
    plugins: [cloudflareTest({ wrangler: { configPath: "./wrangler.toml" }, miniflare: { bindings } })],
    test: { name, include },
  };
}

export default defineConfig({
  test: {
    projects: [
      pool("room", ["test/room/**/*.test.ts"], {
        AUTH_SECRET: TEST_SECRET,
        ALLOWED_ORIGINS: "https://app.example",
        UPGRADE_LIMIT: "1000",
        IDLE_TIMEOUT_SEC: "2",
        HISTORY_LIMIT: "50",
        MAX_MESSAGE_BYTES: "4096",
      }),
      pool("no-key", ["test/no-key/**/*.test.ts"], {}),
      pool("upgrade-limit", ["test/upgrade-limit/**/*.test.ts"], { AUTH_SECRET: TEST_SECRET, UPGRADE_LIMIT: "5" }),
    ],
  },
});
