import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { exportJWK, generateKeyPair } from "jose";
import { defineConfig } from "vitest/config";

// The secret every Workers-pool test signs its tokens with (test/support/tokens.ts reads it from env).
const TEST_SECRET = "test-secret-for-the-workers-pool-only";
export const JWKS_URL = "https://idp.test/.well-known/jwks.json";

/** A Workers-pool project: the real runtime, wrangler.toml's bindings, these vars on top. */
function pool(name: string, include: string[], bindings: Record<string, string>, outbound?: () => Response) {
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: { bindings, ...(outbound ? { outboundService: outbound } : {}) },
      }),
    ],
    test: { name, include },
  };
}

/** A Node project: SDK units, and end-to-end tests that start `wrangler dev` themselves. */
function node(name: string, include: string[], extra: object = {}) {
  return { test: { name, include, environment: "node", ...extra } };
}

/** A local identity provider for the JWKS project: fresh keys each run, public set served by the outbound handler. */
async function localKeySet() {
  const algs = ["RS256", "ES256", "EdDSA"] as const;
  const publicKeys = [];
  const privateKeys: Record<string, unknown> = {};
  for (const alg of algs) {
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
    const kid = `test-${alg}`;
    publicKeys.push({ ...(await exportJWK(publicKey)), kid, alg, use: "sig" });
    privateKeys[alg] = { ...(await exportJWK(privateKey)), kid, alg };
  }
  return { publicSet: JSON.stringify({ keys: publicKeys }), privateKeys: JSON.stringify(privateKeys) };
}

export default defineConfig(async () => {
  const jwks = await localKeySet();
  return {
    test: {
      projects: [
        pool("room", ["test/room/**/*.test.ts"], {
          AUTH_SECRET: TEST_SECRET,
          ALLOWED_ORIGINS: "https://app.example",
          UPGRADE_LIMIT: "100000",
          IDLE_TIMEOUT_SEC: "2",
          HISTORY_LIMIT: "50",
          MAX_MESSAGE_BYTES: "4096",
        }),
        // The default HISTORY_LIMIT (1000): history longer than a default page, which the room
        // project's retention of 50 cannot hold.
        pool("history", ["test/history/**/*.test.ts"], { AUTH_SECRET: TEST_SECRET, UPGRADE_LIMIT: "100000" }),
        pool("no-key", ["test/no-key/**/*.test.ts"], {}),
        pool("upgrade-limit", ["test/upgrade-limit/**/*.test.ts"], { AUTH_SECRET: TEST_SECRET, UPGRADE_LIMIT: "5" }),
        pool(
          "jwks",
          ["test/jwks/**/*.test.ts"],
          {
            AUTH_JWKS_URL: JWKS_URL,
            AUTH_ISSUER: "https://idp.test/",
            AUTH_AUDIENCE: "edgerooms",
            TEST_PRIVATE_JWKS: jwks.privateKeys,
          },
          () => new Response(jwks.publicSet, { headers: { "content-type": "application/json" } }),
        ),
        node("node", ["test/node/**/*.test.ts"]),
        // After every other project (groupOrder), one file at a time: these start their own
        // wrangler dev and measure latency, so they must not share 2 cores with the pool.
        node("e2e", ["test/e2e/**/*.test.ts", "test/browser/**/*.test.ts"], {
          sequence: { groupOrder: 1 },
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        }),
      ],
    },
  };
});
