// `edgerooms/server` as a user gets it (#21's "done when"): a scratch project installs only the
// packed tarball (its dependencies, zod and jose, linked from this checkout so no network is
// needed) and the Workers runtime's types, writes a Worker with a Room subclass and its own route,
// type-checks it under bundler and Node ESM resolution without zod's or jose's types in the
// program, and runs it under `wrangler dev`: its route, and the rooms mounted under /rt with the
// subclass's onPublish rewriting and refusing publishes, over real sockets and HTTP.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevServer, type DevServer } from "../../scripts/devserver.mjs";
import type { HistoryPage, HttpError, PresenceEntry, PublishResult } from "../../src/protocol";
import { api, RoomClient } from "./support/client";
import { packAndInstall, run, typecheck, type Packed } from "./support/package";

// The user's Worker, as the issue writes it, with the types it leans on checked for real.
const WORKER = `
import { createRooms, Room, type PublishEvent, type PublishDecision, type RoomEnv } from "edgerooms/server";

export type Env = RoomEnv & { CHAT: DurableObjectNamespace<ChatRoom> };

export class ChatRoom extends Room<Env> {
  override onPublish({ data }: PublishEvent): PublishDecision {
    const text = (data as { text?: unknown }).text;
    if (typeof text === "string" && text.includes("spam")) return { reject: "no spam" };
    return { data: { ...(data as object), filtered: true } };
  }
}

const rooms = createRooms({ room: "CHAT", path: "/rt" });

export default {
  async fetch(req, env, ctx) {
    return (await rooms.fetch(req, env, ctx)) ?? new Response("own route");
  },
} satisfies ExportedHandler<Env>;
`;

// What must not compile: the declarations are the real types, not \`any\`.
const MISUSE = `
import { createRooms, Room, type JoinEvent } from "edgerooms/server";

// A bound var is a string, as wrangler gives it; the subclass reads its env typed.
interface Env {
  CHAT: DurableObjectNamespace<Wrong>;
  AUTH_SECRET: string;
}
export class Wrong extends Room<Env> {
  // @ts-expect-error a refusal's reason is a string
  override onPublish() {
    return { reject: 42 };
  }
  override onJoin({ user, capabilities }: JoinEvent) {
    const id: string = user.id;
    // @ts-expect-error capabilities are the protocol's, not any string
    const cap: "everything" = capabilities[0]!;
    return id === cap ? { reject: "no" } : undefined;
  }
  secret(): string {
    return this.env.AUTH_SECRET;
  }
}
// @ts-expect-error config takes the settings' names only
createRooms({ room: "CHAT", config: { NO_SUCH_SETTING: 1 } });
createRooms({ room: "CHAT", config: { HISTORY_LIMIT: 10, ALLOWED_ORIGINS: ["https://app.example"] } });
// @ts-expect-error an env must be an object of bindings
export class NotAnEnv extends Room<number> {}
`;

const WRANGLER_TOML = `
name = "edgerooms-consumer"
main = "worker.ts"
compatibility_date = "2026-05-01"

[[durable_objects.bindings]]
name = "CHAT"
class_name = "ChatRoom"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["ChatRoom"]
`;

const compilerOptions = {
  target: "es2022",
  lib: ["es2023"],
  types: ["@cloudflare/workers-types"],
  strict: true,
  skipLibCheck: false,
  noImplicitOverride: true,
  noEmit: true,
};
const TSCONFIGS = {
  "tsconfig.bundler.json": {
    compilerOptions: { ...compilerOptions, module: "esnext", moduleResolution: "bundler" },
    files: ["worker.ts", "misuse.ts"],
  },
  "tsconfig.nodenext.json": {
    compilerOptions: { ...compilerOptions, module: "nodenext", moduleResolution: "nodenext" },
    files: ["worker.ts", "misuse.ts"],
  },
};

const ROOM = "pkg-chat";
let packed: Packed;

beforeAll(async () => {
  packed = await packAndInstall(["@cloudflare/workers-types"]);
  const { consumer } = packed;
  writeFileSync(join(consumer, "worker.ts"), WORKER);
  writeFileSync(join(consumer, "misuse.ts"), MISUSE);
  writeFileSync(join(consumer, "wrangler.toml"), WRANGLER_TOML);
  for (const [name, config] of Object.entries(TSCONFIGS)) writeFileSync(join(consumer, name), JSON.stringify(config));
});

afterAll(() => packed?.remove());

describe("the server package", () => {
  it("installs with its dependencies and nothing nested", async () => {
    const tree = JSON.parse(await run("npm", ["ls", "--all", "--json"], packed.consumer)) as {
      dependencies: Record<string, { version: string; dependencies?: Record<string, { version: string }> }>;
    };
    const edgerooms = tree.dependencies.edgerooms!;
    expect(Object.keys(edgerooms.dependencies ?? {}).sort()).toEqual(["jose", "zod"]);
    expect(tree.dependencies.zod?.version).toBe(edgerooms.dependencies!.zod!.version);
  });

  for (const tsconfig of Object.keys(TSCONFIGS)) {
    it(`type-checks the Worker under ${tsconfig} with only the Workers types beside it`, async () => {
      const files = await typecheck(packed.consumer, tsconfig);
      expect(files.filter((f) => /node_modules\/(zod|jose)\//.test(f))).toEqual([]);
      expect(files.some((f) => f.endsWith("node_modules/edgerooms/dist/types/server/index.d.ts"))).toBe(true);
    });
  }

  describe("under wrangler dev", () => {
    let server: DevServer;
    /** the rooms' routes, under createRooms' path */
    let rt: { url: string; wsUrl: string };
    let alice: RoomClient;
    let bob: RoomClient;
    let aliceToken: string;

    beforeAll(async () => {
      server = await startDevServer({ cwd: packed.consumer, health: "/rt/health" });
      rt = { url: `${server.url}/rt`, wsUrl: `${server.wsUrl}/rt` };
      aliceToken = await server.token({ sub: "alice", rooms: { [ROOM]: ["*"] } });
      alice = new RoomClient(rt, ROOM, aliceToken);
      bob = new RoomClient(rt, ROOM, await server.token({ sub: "bob", rooms: { [ROOM]: ["*"] } }));
    });
    afterAll(async () => {
      alice?.close();
      bob?.close();
      await server?.stop();
    });

    /** The room's history over HTTP, as [seq, data], newest first (docs/protocol.md). */
    const history = async () => (await api<HistoryPage>(rt, aliceToken, `/rooms/${ROOM}/history`)).body.messages.map((m) => [m.seq, m.data]);

    it("answers the Worker's own route, and the rooms' under /rt", async () => {
      const own = await fetch(`${server.url}/`);
      expect(own.status).toBe(200);
      expect(await own.text()).toBe("own route");
      // Outside the prefix, even the rooms' paths are the Worker's.
      expect(await (await fetch(`${server.url}/rooms/${ROOM}/history`)).text()).toBe("own route");
      const health = await fetch(`${rt.url}/health`);
      expect(await health.json()).toEqual({ ok: true });
      // Under it, a room route without a token is refused by the rooms' auth.
      expect((await fetch(`${rt.url}/rooms/${ROOM}/history`)).status).toBe(401);
    });

    it("welcomes, fans out the hook's rewrite, and keeps it in history", async () => {
      const welcome = await alice.connect();
      expect(welcome).toMatchObject({ type: "welcome", room: ROOM, user: { id: "alice" }, seq: 0 });
      await bob.connect();
      alice.publish({ text: "hello" }, "p1");
      const echo = await alice.next("message", (m) => m.id === "p1");
      expect(echo).toMatchObject({ seq: 1, from: { id: "alice" }, data: { text: "hello", filtered: true } });
      expect((await bob.next("message", (m) => m.seq === 1)).data).toEqual({ text: "hello", filtered: true });
      expect(await history()).toEqual([[1, { text: "hello", filtered: true }]]);
    });

    it("refuses what the hook rejects, over the socket and over HTTP, storing and numbering nothing", async () => {
      alice.publish({ text: "buy spam" }, "p2");
      const error = await alice.next("error", (e) => e.id === "p2");
      expect(error).toEqual({ type: "error", id: "p2", code: "rejected", message: "no spam" });

      const refused = await api<HttpError>(rt, aliceToken, `/rooms/${ROOM}/messages`, { method: "POST", body: { data: { text: "more spam" } } });
      expect(refused).toEqual({ status: 422, body: { error: { code: "rejected", message: "no spam" } } });
      expect(await history()).toEqual([[1, { text: "hello", filtered: true }]]);

      // The next publish takes the next seq: the refusals skipped none.
      const accepted = await api<PublishResult>(rt, aliceToken, `/rooms/${ROOM}/messages`, { method: "POST", body: { data: { text: "via http" } } });
      expect(accepted.status).toBe(201);
      expect(accepted.body.seq).toBe(2);
      expect((await bob.next("message", (m) => m.seq === 2)).data).toEqual({ text: "via http", filtered: true });
      expect(await history()).toEqual([
        [2, { text: "via http", filtered: true }],
        [1, { text: "hello", filtered: true }],
      ]);
      // Neither refusal reached a socket as a message.
      expect(bob.seqs()).toEqual([1, 2]);
    });

    it("tells presence over HTTP", async () => {
      const { status, body } = await api<{ users: PresenceEntry[]; count: number }>(rt, aliceToken, `/rooms/${ROOM}/presence`);
      expect(status).toBe(200);
      expect(body.count).toBe(2);
      expect(body.users.map((u) => u.id).sort()).toEqual(["alice", "bob"]);
    });

    it("replays what a client missed when it comes back with since and epoch from its welcome", async () => {
      const { seq, epoch } = bob.welcome!;
      bob.drop();
      alice.publish({ text: "while bob was away" }, "p3");
      await alice.next("message", (m) => m.id === "p3");
      const back = new RoomClient(rt, ROOM, bob.token);
      await back.connect({ since: seq, epoch });
      await back.seen(3);
      expect(back.messages.map((m) => [m.seq, m.data])).toEqual([
        [1, { text: "hello", filtered: true }],
        [2, { text: "via http", filtered: true }],
        [3, { text: "while bob was away", filtered: true }],
      ]);
      back.close();
    });
  });
});
