import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { exportJWK, generateKeyPair } from "jose";
import { defineConfig } from "vitest/config";

// The secret every Workers-pool test signs its tokens with (test/support/tokens.ts reads it from env).
const TEST_SECRET = "test-secret-for-the-workers-pool-only";
export const JWKS_URL = "https://idp.test/.well-known/jwks.json";

/** A Workers-pool project: the real runtime, a wrangler config's bindings (the server's unless given), these vars on top. */
function pool(
  name: string,
  include: string[],
  bindings: Record<string, string>,
  outbound?: (request: Request) => Response | Promise<Response>,
  configPath = "./wrangler.toml",
) {
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath },
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

/** The Workers-pool room project's vars (other projects vary one of them). */
const ROOM_VARS = {
  AUTH_SECRET: TEST_SECRET,
  ALLOWED_ORIGINS: "https://app.example",
  UPGRADE_LIMIT: "100000",
  IDLE_TIMEOUT_SEC: "2",
  HISTORY_LIMIT: "50",
  MAX_MESSAGE_BYTES: "4096",
  // Slow refill so a test's burst reliably runs dry; a burst above the 120 that the
  // history fixtures (test/support/http.ts fill) post from one sender.
  PUBLISH_RATE_PER_SEC: "2",
  PUBLISH_BURST: "150",
  // Above the 30 rooms of the connection tests, low enough that one test can pass it.
  MAX_ROOMS_PER_CONNECTION: "32",
};

/** Where the webhooks project's events go: the outbound handler below stands in for the customer's backend. */
export const WEBHOOK_URL = "https://hooks.test/in";
export const WEBHOOK_SECRET = "webhook-secret-for-the-workers-pool-only";

/** The README's receiver check (its "Verify the signature" block). */
type Verify = (rawBody: string, header: string | null, secret: string, toleranceSec?: number) => boolean;

/**
 * The README's receiver code, run as written (it is Node code; this config runs in Node): the
 * webhooks project's receiver checks every delivery exactly as a customer following the README
 * does, so a signature it would refuse (a wrong HMAC, a `t` in ms or off by minutes) fails the tests.
 */
async function readmeVerify(): Promise<Verify> {
  const readme = readFileSync(new URL("./README.md", import.meta.url), "utf8");
  const code = /^Verify the signature[^\n]*\n\n```js\n([\s\S]*?)\n```/m.exec(readme)?.[1];
  if (!code) throw new Error("README.md: no ```js block after 'Verify the signature'");
  return ((await import(`data:text/javascript,${encodeURIComponent(code)}`)) as { verify: Verify }).verify;
}

/**
 * The customer's receiver, for the webhooks project: every POST to /in is checked with the
 * README's verify() against this process's clock, answered 401 if it fails, and kept (signature
 * header, body, verified, the status answered). `/fail?room=R&n=k` makes the next k deliveries
 * holding room R's events answer 500; `/received?room=R` lists the deliveries holding R's events;
 * POST `/verify` answers whether its body and signature header pass, and keeps nothing.
 */
function webhookReceiver(verify: Verify) {
  type Delivery = { signature: string | null; body: string; verified: boolean; status: number; at: number };
  const deliveries: Delivery[] = [];
  const failing = new Map<string, number>();
  const rooms = (body: string) => new Set((JSON.parse(body) as { events: { room: string }[] }).events.map((e) => e.room));
  return async (request: Request) => {
    const url = new URL(request.url);
    const room = url.searchParams.get("room") ?? "";
    if (url.pathname === "/received") return Response.json(deliveries.filter((d) => rooms(d.body).has(room)));
    if (url.pathname === "/fail") return (failing.set(room, Number(url.searchParams.get("n"))), new Response("ok"));
    const signature = request.headers.get("x-edgerooms-signature");
    if (url.pathname === "/verify") return Response.json(verify(await request.text(), signature, WEBHOOK_SECRET));
    if (url.pathname !== "/in") return new Response("no such receiver route", { status: 404 });
    const body = await request.text();
    const verified = verify(body, signature, WEBHOOK_SECRET);
    const failFor = verified ? [...rooms(body)].find((r) => (failing.get(r) ?? 0) > 0) : undefined;
    if (failFor !== undefined) failing.set(failFor, failing.get(failFor)! - 1);
    const status = !verified ? 401 : failFor === undefined ? 204 : 500;
    deliveries.push({ signature, body, verified, status, at: Date.now() });
    return new Response(null, { status });
  };
}

export default defineConfig(async () => {
  const jwks = await localKeySet();
  const jwksVars = {
    AUTH_JWKS_URL: JWKS_URL,
    AUTH_ISSUER: "https://idp.test/",
    AUTH_AUDIENCE: "edgerooms",
    TEST_PRIVATE_JWKS: jwks.privateKeys,
  };
  // The key server in an outage: every fetch of the set counted, answered 503; `/hits` tells the count.
  let keyFetches = 0;
  const downKeyServer = (request: Request) =>
    new URL(request.url).pathname === "/hits" ? new Response(String(keyFetches)) : (keyFetches++, new Response("key server down", { status: 503 }));
  return {
    test: {
      projects: [
        pool("workers", ["test/worker/*.test.ts", "test/room/*.test.ts", "test/client/workerd/*.test.ts"], ROOM_VARS),
        pool("crowd", ["test/room/crowd/*.test.ts"], { ...ROOM_VARS, PRESENCE_LIMIT: "3" }),
        pool("shards", ["test/room/shards/*.test.ts"], { ...ROOM_VARS, SHARDED_ROOMS: "giant-*:4,pair:2", RATE_LIMIT_BURST: "100" }),
        // The default HISTORY_LIMIT (1000): history longer than a default page, which the workers
        // project's retention of 50 cannot hold.
        pool("history", ["test/room/history/*.test.ts"], { ...ROOM_VARS, HISTORY_LIMIT: "1000" }),
        pool(
          "webhooks",
          ["test/worker/webhooks/*.test.ts"],
          { ...ROOM_VARS, WEBHOOK_URL, WEBHOOK_SECRET, SHARDED_ROOMS: "giant-*:2", MAX_MESSAGE_BYTES: "262144" },
          webhookReceiver(await readmeVerify()),
        ),
        pool("no-key", ["test/worker/no-key/*.test.ts"], {}),
        // A user's Worker (test/hooks/worker.ts): a Room subclass with every hook, mounted at /rt
        // beside a route of its own, bound as CHAT, with no queue and no assets.
        pool(
          "hooks",
          ["test/hooks/*.test.ts"],
          { ...ROOM_VARS, SHARDED_ROOMS: "giant-*:4", HOOK_TIMEOUT_MS: "500" },
          undefined,
          "./test/hooks/wrangler.toml",
        ),
        // The example a user copies (examples/chat-filter): its own Worker and wrangler.toml, its
        // `edgerooms/server` import resolved to the source here, so the tests run without a build.
        {
          ...pool(
            "chat-filter",
            ["examples/chat-filter/test/*.test.ts"],
            { AUTH_SECRET: TEST_SECRET },
            undefined,
            "./examples/chat-filter/wrangler.toml",
          ),
          resolve: { alias: { "edgerooms/server": fileURLToPath(new URL("./src/server/index.ts", import.meta.url)) } },
        },
        pool("upgrade-limit", ["test/worker/upgrade-limit/*.test.ts"], { AUTH_SECRET: TEST_SECRET, UPGRADE_LIMIT: "5" }),
        pool(
          "jwks",
          ["test/worker/jwks/*.test.ts"],
          jwksVars,
          () => new Response(jwks.publicSet, { headers: { "content-type": "application/json" } }),
        ),
        pool("jwks-down", ["test/worker/jwks-down/*.test.ts"], jwksVars, downKeyServer),
        // A key server that accepts the connection and never answers: only the fetch timeout ends it.
        pool("jwks-hang", ["test/worker/jwks-hang/*.test.ts"], jwksVars, () => new Promise<Response>(() => {})),
        node("node", ["test/client/*.test.ts", "test/docs/*.test.ts"]),
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
