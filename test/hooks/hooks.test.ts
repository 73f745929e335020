// A Room subclass's hooks in a user's Worker (worker.ts: mounted at /rt, bound as CHAT): what
// each decision does to the publisher, the other sockets, history and seq, on a socket and over
// HTTP; onJoin on the upgrade and on the SDK's probe; onLeave once per user; and the Worker's own
// routes left to it.
import { env, exports } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { MessageFrame } from "../../src/protocol";
import { expectFailure } from "../support/edge";
import { connect, upgrade, type TestSocket } from "../support/socket";
import { tokenFor } from "../support/tokens";
import { createRooms } from "../../src/server/index";
import { CONFIG, type HookCall, type HooksEnv } from "./worker";

const BASE = "/rt";
const chat = (env as unknown as HooksEnv).CHAT;
const logOf = (name: string): Promise<HookCall[]> => chat.get(chat.idFromName(name)).hookLog();

async function join(room: string, uid: string, query: Record<string, string | number> = {}): Promise<TestSocket> {
  const s = await connect(room, { token: await tokenFor(uid, room), base: BASE, query });
  await s.next("welcome");
  return s;
}

async function http(method: string, path: string, uid: string, room: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await exports.default.fetch(`http://rooms.test${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${await tokenFor(uid, room)}`, "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json<Record<string, unknown>>() };
}

const messages = (s: TestSocket) => s.frames.filter((f): f is MessageFrame => f.type === "message");
/** The room's history over HTTP, oldest first (the route answers newest first). */
const historyOf = async (room: string) => ((await http("GET", `/rooms/${room}/history`, "reader", room)).body.messages as MessageFrame[]).reverse();

describe("the Worker around the rooms", () => {
  it("answers its own routes: createRooms returns null for every path outside /rt", async () => {
    const own = await exports.default.fetch("http://rooms.test/own");
    expect([own.status, await own.text()]).toEqual([200, "own route"]);
    for (const path of ["/rooms/r/ws", "/health", "/rtx/health", "/"]) {
      const res = await exports.default.fetch(`http://rooms.test${path}`);
      expect([path, res.status, await res.text()]).toEqual([path, 404, "not mine"]);
    }
    const health = await exports.default.fetch("http://rooms.test/rt/health");
    expect(await health.json()).toEqual({ ok: true });
    // Under the prefix, a path of the rooms' own namespace is theirs to refuse.
    await expectFailure(await exports.default.fetch("http://rooms.test/rt/rooms/r/bogus"), 404, "not_found");
  });
});

describe("a subclass", () => {
  it("is refused as it starts when it redefines a method edgerooms calls on its rooms, naming them", async () => {
    const clash = (env as unknown as HooksEnv).CLASH;
    const stub = clash.get(clash.idFromName("clash"));
    await expect(stub.fetch("https://room.internal/ws")).rejects.toThrow("ClashingRoom redefines stats, range: edgerooms calls these on every room");
  });
});

describe("createRooms' config", () => {
  it("reaches the rooms: HISTORY_LIMIT 5 in code wins over the env's 50", async () => {
    const room = "config";
    for (let n = 1; n <= 7; n++) expect((await http("POST", `/rooms/${room}/messages`, "alice", room, { data: { n } })).status).toBe(201);
    expect((await historyOf(room)).map((m) => m.seq)).toEqual([3, 4, 5, 6, 7]);
  });

  it("is checked at start-up: an unknown name, a bad value, or a second, different config throws", () => {
    expect(() => createRooms({ room: "CHAT", config: { HISTORY_LIMITS: 5 } as never })).toThrow(/unknown setting HISTORY_LIMITS/);
    expect(() => createRooms({ room: "CHAT", config: { HISTORY_LIMIT: 0 } })).toThrow(/config\.HISTORY_LIMIT/);
    expect(() => createRooms({ room: "CHAT", config: { HISTORY_LIMIT: 6 } })).toThrow(/one config/);
    expect(() => createRooms({ room: "CHAT", path: "rt" })).toThrow(/path must start with/);
    expect(() => createRooms({ room: "CHAT", path: "/rt", config: { ...CONFIG } })).not.toThrow();
  });
});

describe("onPublish", () => {
  it("refuses a socket publish with an error carrying its id; nobody else sees it, nothing is stored, no seq is taken", async () => {
    const room = "refuse-socket";
    const alice = await join(room, "alice");
    const bob = await join(room, "bob");
    alice.send({ type: "publish", id: "p1", data: { text: "buy spam now" } });
    expect(await alice.next("error", (e) => e.id === "p1")).toEqual({ type: "error", id: "p1", code: "rejected", message: "no spam here" });
    alice.send({ type: "publish", id: "p2", data: { text: "hello" } });
    const echo = await alice.next("message", (m) => m.id === "p2");
    expect(echo.seq).toBe(1);
    await bob.next("message", (m) => m.seq === 1);
    expect(messages(bob).map((m) => m.data)).toEqual([{ text: "hello", checked: "socket" }]);
    expect(messages(alice)).toHaveLength(1);
    expect((await historyOf(room)).map((m) => m.seq)).toEqual([1]);
  });

  it("refuses an HTTP publish with 422 rejected, stores nothing, and decides a retry with the same key again", async () => {
    const room = "refuse-http";
    const key = { "idempotency-key": "k-1" };
    for (let attempt = 0; attempt < 2; attempt++) {
      const refused = await http("POST", `/rooms/${room}/messages`, "alice", room, { data: { text: "spam" } }, key);
      expect(refused).toEqual({ status: 422, body: { error: { code: "rejected", message: "no spam here" } } });
    }
    expect(await historyOf(room)).toEqual([]);
    const accepted = await http("POST", `/rooms/${room}/messages`, "alice", room, { data: { text: "fine" } });
    expect([accepted.status, accepted.body.seq]).toEqual([201, 1]);
    // Both refusals reached the hook: the refused key was not kept.
    expect((await logOf(room)).filter((c) => c.hook === "publish").map((c) => c.via)).toEqual(["http", "http", "http"]);
  });

  it("stores and sends the rewritten payload: on every socket, in history, and in a resume's replay", async () => {
    const room = "rewrite";
    const alice = await join(room, "alice");
    const bob = await join(room, "bob");
    const { epoch } = await alice.next("welcome");
    alice.send({ type: "publish", id: "a", data: { text: "from a socket" } });
    await alice.next("message", (m) => m.id === "a");
    expect((await http("POST", `/rooms/${room}/messages`, "carol", room, { data: { text: "over http" } })).status).toBe(201);
    const want = [
      { text: "from a socket", checked: "socket" },
      { text: "over http", checked: "http" },
    ];
    for (const s of [alice, bob]) {
      await s.collect("message", 2);
      expect(messages(s).map((m) => m.data)).toEqual(want);
    }
    expect((await historyOf(room)).map((m) => m.data)).toEqual(want);
    const late = await join(room, "dave", { since: 0, epoch });
    await late.collect("message", 2);
    expect(messages(late).map((m) => m.data)).toEqual(want);
  });

  it("accepts a publish as it is when the hook returns nothing", async () => {
    const alice = await join("keep", "alice");
    alice.send({ type: "publish", id: "k", data: { keep: true, n: 1 } });
    expect((await alice.next("message", (m) => m.id === "k")).data).toEqual({ keep: true, n: 1 });
  });

  it("refuses with internal when the hook throws, answers nonsense or grows the payload past the limit, and the room goes on", async () => {
    const room = "hook-bug";
    const alice = await join(room, "alice");
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      alice.send({ type: "publish", id: "t", data: { fail: true } });
      alice.send({ type: "publish", id: "j", data: { junk: true } });
      // MAX_MESSAGE_BYTES is 4096 in this project, so the limit on a rewrite is 65,536 bytes.
      alice.send({ type: "publish", id: "g", data: { grow: 70_000 } });
      for (const id of ["t", "j", "g"]) {
        expect(await alice.next("error", (e) => e.id === id)).toMatchObject({ code: "internal", message: "the room's onPublish hook failed" });
      }
      const overHttp = await http("POST", `/rooms/${room}/messages`, "alice", room, { data: { fail: true } });
      expect(overHttp).toEqual({ status: 500, body: { error: { code: "internal", message: "the room's onPublish hook failed" } } });
      expect(errors.mock.calls.map((c) => String(c[0]))).toEqual(Array(4).fill(`edgerooms: onPublish in room ${room} failed:`));
    } finally {
      errors.mockRestore();
    }
    alice.send({ type: "publish", id: "ok", data: { grow: 60_000 } });
    const stored = await alice.next("message", (m) => m.id === "ok");
    expect([stored.seq, (stored.data as { text: string }).text.length]).toEqual([1, 60_000]);
    expect(messages(alice)).toHaveLength(1);
  });

  it("refuses with internal a hook that never answers, once HOOK_TIMEOUT_MS (500 here) has passed, and the publishes behind it go on", async () => {
    const room = "hang";
    const alice = await join(room, "alice");
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const sent = Date.now();
      alice.send({ type: "publish", id: "h", data: { hang: true } });
      alice.send({ type: "publish", id: "after", data: { n: 1 } });
      expect(await alice.next("error", (e) => e.id === "h", 5000)).toMatchObject({ code: "internal" });
      expect(Date.now() - sent).toBeGreaterThanOrEqual(450);
      expect((await alice.next("message", (m) => m.id === "after")).seq).toBe(1);
      expect(String(errors.mock.calls[0]?.[1])).toContain("no answer within 500 ms");
    } finally {
      errors.mockRestore();
    }
  });

  it("keeps deciding after a bad answer that does not even serialize, given while others wait behind a pending one", async () => {
    const room = "bigint";
    const alice = await join(room, "alice");
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      alice.send({ type: "publish", id: "1", data: { n: 1, wait: 100 } });
      alice.send({ type: "publish", id: "2", data: { bigint: true } });
      alice.send({ type: "publish", id: "3", data: { n: 3 } });
      alice.send({ type: "publish", id: "4", data: { bigint: true } });
      await alice.next("message", (m) => m.id === "3");
      // With nothing pending, the same bad answer is refused at once, and the room goes on.
      alice.send({ type: "publish", id: "5", data: { n: 5 } });
      await alice.next("message", (m) => m.id === "5");
      for (const id of ["2", "4"]) expect((await alice.next("error", (e) => e.id === id)).code).toBe("internal");
      expect(messages(alice).map((m) => [m.seq, m.id])).toEqual([
        [1, "1"],
        [2, "3"],
        [3, "5"],
      ]);
    } finally {
      errors.mockRestore();
    }
  });

  it("refuses the pending publishes of a user banned while their decision waited: nothing stored, nobody sees them", async () => {
    const room = "ban-pending";
    const alice = await join(room, "alice");
    const bob = await join(room, "bob");
    alice.send({ type: "publish", id: "1", data: { n: 1, wait: 200 } });
    alice.send({ type: "publish", id: "2", data: { n: 2 } });
    await vi.waitFor(async () => expect((await logOf(room)).filter((c) => c.hook === "publish")).toHaveLength(1), { timeout: 3000 });
    expect((await http("POST", `/rooms/${room}/kick`, "admin", room, { user: "alice", banSec: 60 })).status).toBe(200);
    // Both decided (the second at once, after the first's 200 ms): then nothing may have been stored.
    await vi.waitFor(async () => expect((await logOf(room)).filter((c) => c.hook === "publish")).toHaveLength(2), { timeout: 3000 });
    expect(await historyOf(room)).toEqual([]);
    bob.send({ type: "publish", id: "b", data: { n: 3 } });
    expect((await bob.next("message", (m) => m.id === "b")).seq).toBe(1);
    expect(messages(bob)).toHaveLength(1);
  });

  it("publishes once for two HTTP publishes with one Idempotency-Key that arrive while the first is being decided", async () => {
    const room = "key-pending";
    const post = () => http("POST", `/rooms/${room}/messages`, "alice", room, { data: { n: 1, wait: 150 } }, { "idempotency-key": "same" });
    const [a, b] = await Promise.all([post(), post()]);
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.body.seq).toBe(a.body.seq);
    expect((await historyOf(room)).map((m) => m.seq)).toEqual([1]);
    expect((await logOf(room)).filter((c) => c.hook === "publish")).toHaveLength(1);
  });

  it("keeps arrival order while an async decision is pending: later publishes wait behind it", async () => {
    const room = "order";
    const alice = await join(room, "alice");
    alice.send({ type: "publish", id: "1", data: { n: 1, wait: 150 } });
    alice.send({ type: "publish", id: "2", data: { n: 2 } });
    alice.send({ type: "publish", id: "3", data: { text: "spam", n: 3 } });
    alice.send({ type: "publish", id: "4", data: { n: 4, wait: 20 } });
    alice.send({ type: "publish", id: "5", data: { n: 5 } });
    await alice.next("message", (m) => m.id === "5");
    expect(messages(alice).map((m) => [m.seq, (m.data as { n: number }).n])).toEqual([
      [1, 1],
      [2, 2],
      [3, 4],
      [4, 5],
    ]);
    expect((await alice.next("error", (e) => e.id === "3")).code).toBe("rejected");
  });
});

describe("onJoin", () => {
  it("refuses an upgrade with 403 rejected, and the SDK's probe (GET /rooms/:room/join) hears the same", async () => {
    const room = "join-refuse";
    const refused = await upgrade(room, { token: await tokenFor("blocked-1", room), base: BASE });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toEqual({ error: { code: "rejected", message: "blocked users stay out" } });
    expect(await http("GET", `/rooms/${room}/join`, "blocked-1", room)).toEqual({
      status: 403,
      body: { error: { code: "rejected", message: "blocked users stay out" } },
    });
    expect(await http("GET", `/rooms/${room}/join`, "alice", room)).toEqual({ status: 200, body: { ok: true } });
    // The probe checks what the upgrade checks, in its order: the origin before the hook.
    const foreign = await http("GET", `/rooms/${room}/join`, "alice", room, undefined, { origin: "https://evil.example" });
    expect([foreign.status, (foreign.body.error as { code: string }).code]).toEqual([403, "forbidden"]);
    const alice = await join(room, "slow-alice");
    expect((await alice.next("welcome")).user.id).toBe("slow-alice");
    expect((await logOf(room)).filter((c) => c.hook === "join").map((c) => [c.user, c.probe])).toEqual([
      ["blocked-1", false],
      ["blocked-1", true],
      ["alice", true],
      ["slow-alice", false],
    ]);
  });

  it("refuses with 500 internal when onJoin throws", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const res = await upgrade("join-bug", { token: await tokenFor("joinbug", "join-bug"), base: BASE });
      await expectFailure(res, 500, "internal");
      expect(errors).toHaveBeenCalledTimes(1);
    } finally {
      errors.mockRestore();
    }
  });

  it("is not asked about a banned user: the ban refuses first", async () => {
    const room = "join-ban";
    const kicked = await http("POST", `/rooms/${room}/kick`, "admin", room, { user: "mallory", banSec: 60 });
    expect(kicked.status).toBe(200);
    await expectFailure(await upgrade(room, { token: await tokenFor("mallory", room), base: BASE }), 403, "banned");
    const probe = await http("GET", `/rooms/${room}/join`, "mallory", room);
    expect([probe.status, (probe.body.error as { code: string }).code]).toEqual([403, "banned"]);
    expect((await logOf(room)).filter((c) => c.hook === "join")).toEqual([]);
  });
});

describe("onLeave", () => {
  it("runs once per user, after the last of its connections has gone", async () => {
    const room = "leave";
    const tabs = [await join(room, "alice"), await join(room, "alice")];
    const connections = async () => (await http("GET", `/rooms/${room}/stats`, "admin", room)).body.connections;
    tabs[0]!.close();
    await vi.waitFor(async () => expect(await connections()).toBe(1), { timeout: 3000 });
    expect((await logOf(room)).filter((c) => c.hook === "leave")).toEqual([]);
    tabs[1]!.close();
    await vi.waitFor(async () => expect((await logOf(room)).filter((c) => c.hook === "leave")).toEqual([{ hook: "leave", user: "alice", room }]), {
      timeout: 3000,
    });
  });
});
