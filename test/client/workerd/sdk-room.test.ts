// The SDK against the real Worker and Room in workerd. Sockets come from the Worker's fetch
// handler (a `new WebSocket()` to the Worker is not reachable inside the pool), through the
// SDK's `socket` factory; the handshake probe goes the same way through its `fetch` option.
import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RoomClient, type RoomClientOptions, type WebSocketLike } from "../../../src/client/index";
import type { MessageFrame, RoomStats } from "../../../src/protocol";
import { connect } from "../../support/socket";
import { token, tokenFor } from "../../support/tokens";

const opened: RoomClient[] = [];
afterEach(() => {
  for (const c of opened.splice(0)) c.close();
});

/**
 * The client's outgoing network: `pass` delivers frames, `hold` keeps them until `release()`,
 * `lose` drops them, as a congested or failing link would.
 */
class Link {
  mode: "pass" | "hold" | "lose" = "pass";
  #held: (() => void)[] = [];
  wrap(ws: WebSocket): WebSocketLike {
    return {
      get readyState() {
        return ws.readyState;
      },
      send: (text) => {
        if (this.mode === "pass") ws.send(text);
        else if (this.mode === "hold") this.#held.push(() => ws.send(text));
      },
      close: (code, reason) => ws.close(code, reason),
      addEventListener: (type, listener) => ws.addEventListener(type, listener),
    };
  }
  release(): void {
    this.mode = "pass";
    for (const send of this.#held.splice(0)) send();
  }
}

/** Every socket a client opened, so a test can cut one as the network would. */
function client(room: string, tok: RoomClientOptions["token"], extra: Partial<RoomClientOptions> = {}) {
  const sockets: WebSocketLike[] = [];
  const link = new Link();
  const c = new RoomClient({
    url: "http://rooms.test",
    room,
    token: tok,
    socket: async (url) => {
      const res = await exports.default.fetch(url.replace(/^ws/, "http"), { headers: { upgrade: "websocket" } });
      if (!res.webSocket) {
        await res.body?.cancel();
        throw new Error(`upgrade refused with ${res.status}`);
      }
      res.webSocket.accept();
      sockets.push(res.webSocket);
      return link.wrap(res.webSocket);
    },
    fetch: (input, init) => exports.default.fetch(input, init),
    backoff: { baseMs: 50, capMs: 400 },
    pingIntervalMs: 500, // the pool's IDLE_TIMEOUT_SEC is 2
    ...extra,
  });
  opened.push(c);
  const messages: MessageFrame[] = [];
  c.on("message", (m) => messages.push(m));
  return { c, sockets, link, messages };
}

/** vi.waitFor with a readable failure. */
const until = (check: () => boolean, what: string, timeout = 5_000) =>
  vi.waitFor(
    () => {
      if (!check()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout, interval: 10 },
  );

/**
 * Cuts the client's socket as the network would and resolves once the SDK has noticed, by its
 * `status` event: polling `status` can miss "reconnecting" when the jittered retry is quick.
 */
async function cut(x: ReturnType<typeof client>, what: string): Promise<void> {
  let noticed = false;
  const off = x.c.on("status", (s) => {
    if (s.status === "reconnecting") noticed = true;
  });
  x.sockets[0]!.close(1000, "cut");
  try {
    await until(() => noticed, what);
  } finally {
    off();
  }
}

describe("SDK against the room", () => {
  it("two clients see each other in presence and exchange messages; publish resolves with the seq", async () => {
    const room = "sdk-chat";
    const alice = client(room, await tokenFor("alice", room));
    await until(() => alice.c.status === "open", "alice open");
    const bob = client(room, () => tokenFor("bob", room));
    await until(() => bob.c.status === "open" && alice.c.presence.has("bob"), "bob seen by alice");
    expect([...bob.c.presence.keys()].sort()).toEqual(["alice", "bob"]);

    const seq = await alice.c.publish({ text: "hi bob" });
    expect(seq).toBe(1);
    await until(() => bob.messages.length === 1, "bob's copy");
    expect(bob.messages[0]).toMatchObject({ seq: 1, from: { id: "alice" }, data: { text: "hi bob" } });
    expect(alice.messages.map((m) => m.seq)).toEqual([1]); // the echo, delivered once

    bob.c.setPresence({ typing: true });
    await until(() => alice.c.presence.get("bob")?.state.typing === true, "bob typing");
    bob.c.close();
    await until(() => !alice.c.presence.has("bob"), "bob's leave");
  });

  it("reconnects after its socket is cut and resumes every message published meanwhile, once each", async () => {
    const room = "sdk-resume";
    const alice = client(room, () => tokenFor("alice", room), { backoff: { baseMs: 300, capMs: 300, random: () => 0.99 } });
    const bob = client(room, await tokenFor("bob", room));
    await until(() => alice.c.status === "open" && bob.c.status === "open", "both open");
    await bob.c.publish("before");
    await until(() => alice.messages.length === 1, "alice has 1");

    let reconnectedAt = 0;
    const cutAt = Date.now();
    alice.c.on("welcome", (w) => {
      reconnectedAt = Date.now();
      expect(w.recovered).toBe(true);
    });
    await cut(alice, "alice reconnecting"); // the room sees a close; alice waits ~300 ms
    const meanwhile = await Promise.all([bob.c.publish("m1"), bob.c.publish("m2"), bob.c.publish("m3")]);
    const offline = alice.c.publish("from alice while offline");
    expect(alice.c.pending).toBe(1);

    const seqOfOffline = await offline;
    await until(() => alice.messages.length === 5, "alice has all 5");
    expect(alice.messages.map((m) => m.seq)).toEqual([1, ...meanwhile, seqOfOffline]);
    expect(alice.sockets).toHaveLength(2);
    expect(reconnectedAt - cutAt).toBeLessThan(2000);
  });

  it("resumes a subscribe-only reader gap-free: it sends back the room's resume token", async () => {
    const room = "sdk-resume-reader";
    const carol = client(room, () => tokenFor("carol", room, ["subscribe"]));
    const bob = client(room, await tokenFor("bob", room));
    await until(() => carol.c.status === "open" && bob.c.status === "open", "both open");
    const resyncs: number[] = [];
    carol.c.on("resync", (w) => resyncs.push(w.seq));
    await bob.c.publish("live");
    await until(() => carol.messages.length === 1, "carol has 1");
    await cut(carol, "carol reconnecting");
    const meanwhile = await Promise.all([bob.c.publish("m1"), bob.c.publish("m2")]);
    await until(() => carol.messages.length === 3, "carol has all 3");
    expect(carol.messages.map((m) => m.seq)).toEqual([1, ...meanwhile]);
    expect(resyncs).toEqual([]);
  });

  it("announces resync when the room no longer holds everything it missed (recovered:false)", async () => {
    const room = "sdk-resync";
    let gate: Promise<void> = Promise.resolve();
    const alice = client(room, async () => (await gate, tokenFor("alice", room)));
    const resyncs: number[] = [];
    alice.c.on("resync", (w) => resyncs.push(w.seq));
    await until(() => alice.c.status === "open", "open");
    await alice.c.publish("seen");

    let open!: () => void;
    gate = new Promise((r) => (open = r));
    await cut(alice, "away");
    const auth = { authorization: `Bearer ${await tokenFor("ops", room, ["publish"])}` };
    for (let n = 0; n < 55; n++) {
      // HISTORY_LIMIT is 50 in this pool: the room keeps fewer than alice missed.
      const res = await exports.default.fetch(`http://rooms.test/rooms/${room}/messages`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ data: n }),
      });
      expect(res.status).toBe(201);
    }
    open();
    await until(() => resyncs.length === 1, "resync");
    expect(resyncs).toEqual([56]);
    expect(alice.c.position.seq).toBe(56);
    expect(alice.messages.map((m) => m.seq)).toEqual([1]); // nothing replayed: the app refetches
    await alice.c.publish("after");
    await until(() => alice.messages.length === 2, "the next message");
    expect(alice.messages[1]!.seq).toBe(57);
  });

  it("settles an in-doubt publish when the replay's newest message was deleted: its delete holds the place", async () => {
    const room = "sdk-replay-deleted";
    let gate: Promise<void> = Promise.resolve();
    const alice = client(room, async () => (await gate, tokenFor("alice", room)));
    await until(() => alice.c.status === "open", "open");
    await alice.c.publish("seen");
    const deletes: number[] = [];
    alice.c.on("delete", (d) => deletes.push(d.seq));

    let open!: () => void;
    gate = new Promise((r) => (open = r));
    alice.link.mode = "lose"; // sent, never arrives: in doubt once the socket drops
    let outcome: { seq: number } | { code: string } | undefined;
    void alice.c.publish("lost").then(
      (seq) => (outcome = { seq }),
      (e: { code: string }) => (outcome = { code: e.code }),
    );
    await cut(alice, "away");
    alice.link.mode = "pass";
    const ops = await tokenFor("ops", room, ["publish", "admin"]);
    const auth = { authorization: `Bearer ${ops}` };
    const posted = await exports.default.fetch(`http://rooms.test/rooms/${room}/messages`, {
      method: "POST",
      headers: auth,
      body: '{"data":"gone"}',
    });
    const { seq } = await posted.json<{ seq: number }>();
    const deleted = await exports.default.fetch(`http://rooms.test/rooms/${room}/messages/${seq}`, { method: "DELETE", headers: auth });
    expect(deleted.status).toBe(200);
    open();
    // The replay is [delete 2]: without it the SDK would wait for seq 2 to hold the publish in doubt.
    await until(() => outcome !== undefined, "the in-doubt publish settled", 3_000);
    expect(outcome).toEqual({ code: "connection_lost" });
    expect(deletes).toEqual([seq]);
    expect(alice.c.position.seq).toBe(seq);
    expect(alice.messages.map((m) => m.seq)).toEqual([1]);
  });

  it("stops for good, without retrying, when the token is rejected (401) or lacks subscribe (403)", async () => {
    const room = "sdk-auth";
    for (const [tok, code] of [
      ["not-a-jwt", "unauthorized"],
      [await token({ sub: "eve", rooms: { other: ["*"] } }), "forbidden"],
    ] as const) {
      let attempts = 0;
      const eve = client(room, () => (attempts++, tok));
      const errors: string[] = [];
      eve.c.on("error", (e) => errors.push(e.code));
      await until(() => eve.c.status === "closed", `closed after ${code}`);
      // A client whose token source fails retries on the same backoff: by its 4th attempt eve
      // has had several backoff windows in which to retry.
      let tries = 0;
      client(room, () => (tries++, Promise.reject(new Error("identity provider down"))));
      await until(() => tries >= 4, "a failing client's 4th attempt");
      expect({ attempts, errors }).toEqual({ attempts: 1, errors: [code] });
    }
  });

  it("keeps the connection past the room's idle timeout with its heartbeat", { timeout: 10_000 }, async () => {
    const room = "sdk-idle";
    const alice = client(room, await tokenFor("alice", room));
    await until(() => alice.c.status === "open", "open");
    // A later client without heartbeat is swept once idle: by then alice was idle just as long.
    const idler = client(room, await tokenFor("idler", room), { pingIntervalMs: 60_000 });
    await until(() => idler.sockets.length === 2, "the idle client's sweep and reconnect", 8000);
    expect(alice.sockets).toHaveLength(1);
    expect(alice.c.status).toBe("open");
  });

  it("reconnects by itself after the room closes an idle socket (no heartbeat)", async () => {
    const room = "sdk-idle-close";
    const alice = client(room, await tokenFor("alice", room), { pingIntervalMs: 60_000 });
    await until(() => alice.sockets.length === 2 && alice.c.status === "open", "a second connection", 8000);
  });

  it("pages history and sends direct messages, answered by id", async () => {
    const room = "sdk-history";
    const alice = client(room, await tokenFor("alice", room));
    const bob = client(room, await tokenFor("bob", room));
    await until(() => alice.c.status === "open" && alice.c.presence.has("bob"), "both in");
    for (const n of [1, 2, 3]) await alice.c.publish(n);
    expect(await alice.c.history({ limit: 2 })).toMatchObject({ messages: [{ seq: 3 }, { seq: 2 }], more: true });

    const directs: unknown[] = [];
    bob.c.on("direct", (d) => directs.push(d.data));
    await alice.c.direct("bob", { psst: 1 });
    await until(() => directs.length === 1, "bob's direct");
    await expect(alice.c.direct("nobody", 1)).rejects.toMatchObject({ code: "not_found" });
  });

  it("rejects a publish with the error frame's code", async () => {
    const room = "sdk-reject";
    const reader = client(room, await tokenFor("rita", room, ["subscribe"]));
    await until(() => reader.c.status === "open", "open");
    await expect(reader.c.publish("no")).rejects.toMatchObject({ code: "forbidden" });
  });
});

// Every copy of a message carries its sender's id, so any member learns a client's id prefix
// and can predict its next ids. Only the room's echo of this user's own frame may settle a publish.
describe("Token lifetime: the SDK refreshes in place", () => {
  it("sends a fresh token before a short one expires, so the connection outlives it without a reconnect", { timeout: 15_000 }, async () => {
    const room = "sdk-refresh";
    const issued: number[] = [];
    const short = async () => {
      const exp = Math.floor(Date.now() / 1000) + 3;
      issued.push(exp);
      return token({ sub: "ada", rooms: { [room]: ["*"] }, exp });
    };
    const ada = client(room, short);
    await until(() => ada.c.status === "open", "open");
    const firstExp = issued[0]!;
    // past the first token's expiry, and the one after it: still the first socket, still open
    await until(() => Date.now() > (firstExp + 4) * 1000, "two expiries passed", 10_000);
    expect(ada.sockets).toHaveLength(1);
    expect(ada.c.status).toBe("open");
    expect(issued.length).toBeGreaterThanOrEqual(3);
    expect(await ada.c.publish("still here")).toBeGreaterThan(0);
  });

  it("reconnects with a fresh token after a refused refresh, when the room closes the expired connection (4401)", { timeout: 15_000 }, async () => {
    const room = "sdk-expired";
    let calls = 0;
    const ada = client(room, async () => {
      calls++;
      // the first token cannot be refreshed in time (its refresh is refused: another user)
      return token({ sub: calls === 2 ? "mallory" : "ada", rooms: { [room]: ["*"] }, exp: Math.floor(Date.now() / 1000) + 2 });
    });
    const errors: string[] = [];
    ada.c.on("error", (e) => errors.push(e.code));
    await until(() => ada.sockets.length >= 2 && ada.c.status === "open", "reconnected after 4401", 10_000);
    expect(errors).toContain("unauthorized");
  });
});

describe("An echo is matched by id and sender (security review, defect 4)", () => {
  /** Alice has published once (so Bob knows her id scheme); returns her next id as Bob predicts it. */
  async function victimAndAttacker(room: string) {
    const alice = client(room, () => tokenFor("alice", room), { backoff: { baseMs: 300, capMs: 300, random: () => 0.99 } });
    await until(() => alice.c.status === "open", "alice open");
    const bob = await connect(room, { token: await tokenFor("bob", room) });
    await alice.c.publish("first");
    const seen = await bob.next("message", (m) => m.from.id === "alice");
    const [prefix, n] = seen.id!.split(/\.(?=\d+$)/);
    return { alice, bob, nextId: `${prefix}.${Number(n) + 1}` };
  }

  it("a forged message with the victim's pending id does not resolve the victim's publish", async () => {
    const { alice, bob, nextId } = await victimAndAttacker("sdk-forge-pending");
    alice.link.mode = "hold"; // alice's publish is slow to reach the room
    const mine = alice.c.publish("mine");
    bob.send({ type: "publish", data: "forged", id: nextId });
    await until(() => alice.messages.some((m) => m.id === nextId), "the forged copy at alice");
    const forgedSeq = alice.messages.find((m) => m.id === nextId)!.seq;
    alice.link.release();
    const seq = await mine;
    expect(seq).not.toBe(forgedSeq);
    expect(alice.messages.find((m) => m.seq === seq)).toMatchObject({ from: { id: "alice" }, data: "mine", id: nextId });
  });

  it("a forged message in the resume replay does not confirm the victim's in-doubt publish", async () => {
    const { alice, bob, nextId } = await victimAndAttacker("sdk-forge-replay");
    alice.link.mode = "lose"; // sent, never arrives
    const mine = alice.c.publish("mine");
    const outcome = mine.then(
      (seq) => ({ seq }),
      (e: { code: string }) => ({ code: e.code }),
    );
    await cut(alice, "alice reconnecting");
    alice.link.mode = "pass";
    bob.send({ type: "publish", data: "forged", id: nextId });
    await bob.next("message", (m) => m.id === nextId);
    await until(() => alice.messages.some((m) => m.id === nextId), "the forged copy replayed to alice");
    expect(await outcome).toEqual({ code: "connection_lost" });
  });
});

/** The room's own count of frames it refused for the rate limit. */
async function rateLimited(room: string): Promise<number> {
  const res = await exports.default.fetch(`http://rooms.test/rooms/${room}/stats`, {
    headers: { authorization: `Bearer ${await tokenFor("ops", room, ["admin"])}` },
  });
  return (await res.json<RoomStats>()).rateLimited;
}

/** seqs the room assigned one after another: nothing refused, nothing reordered. */
const consecutive = (seqs: number[]) => seqs.map((_, i) => seqs[0]! + i);

describe("The SDK stays within the limits the welcome advertises", () => {
  it("rejects at once with too_large a publish or direct beyond MAX_MESSAGE_BYTES, also one queued before the first welcome", async () => {
    const room = "sdk-too-large";
    const alice = client(room, await tokenFor("alice", room));
    const early = alice.c.publish("x".repeat(5000)); // the pool's MAX_MESSAGE_BYTES is 4096
    const errors: string[] = [];
    alice.c.on("error", (e) => errors.push(e.code));
    await expect(early).rejects.toMatchObject({ code: "too_large" });
    await until(() => alice.c.status === "open", "open");
    const late = alice.c.publish("é".repeat(2100)); // 4200 bytes, 2100 UTF-16 units
    expect(alice.c.pending).toBe(0); // refused before anything was queued or sent
    await expect(late).rejects.toMatchObject({ code: "too_large" });
    await expect(alice.c.direct("alice", "x".repeat(5000))).rejects.toMatchObject({ code: "too_large" });
    expect(await alice.c.publish("fits")).toBe(1);
    expect(errors).toEqual([]);
  });

  it("catches up after a reconnect without a frame refused: 20 queued publishes, its presence and the app's history request (defect 7)", async () => {
    const room = "sdk-catch-up";
    let gate: Promise<void> = Promise.resolve();
    const alice = client(room, async () => (await gate, tokenFor("alice", room)));
    await until(() => alice.c.status === "open", "open");
    alice.c.setPresence({ away: false });
    await until(() => alice.c.presence.get("alice")?.state.away === false, "alice's state");
    // A cold room's first publishes are slow enough for its bucket to refill during the burst.
    await alice.c.publish("warm-up");

    let open!: () => void;
    gate = new Promise((r) => (open = r));
    await cut(alice, "away"); // her only connection: the room forgets her state
    const queued = Array.from({ length: 20 }, (_, i) => alice.c.publish(i)); // RATE_LIMIT_BURST is 20 here
    let page: Promise<unknown> | undefined;
    alice.c.on("welcome", () => {
      page ??= alice.c.history({ limit: 5 });
    });
    const errors: string[] = [];
    alice.c.on("error", (e) => errors.push(e.code));
    open();

    const seqs = await Promise.all(queued);
    expect(seqs).toEqual(consecutive(seqs));
    await expect(page).resolves.toMatchObject({ more: false });
    await until(() => alice.sockets.length === 2 && alice.c.presence.get("alice")?.state.away === false, "her state again");
    expect(errors).toEqual([]);
    expect(await rateLimited(room)).toBe(0);
  }, 10_000);

  it("delivers 50 publishes made at once, all of them, in order, at the rate the room allows", async () => {
    const room = "sdk-fifty";
    const alice = client(room, await tokenFor("alice", room));
    await until(() => alice.c.status === "open", "open");
    const errors: string[] = [];
    alice.c.on("error", (e) => errors.push(e.code));
    const seqs = await Promise.all(Array.from({ length: 50 }, (_, i) => alice.c.publish(i)));
    expect(seqs).toEqual(consecutive(seqs));
    await until(() => alice.messages.length === 50, "every echo");
    expect(alice.messages.map((m) => m.data)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(errors).toEqual([]);
    expect(await rateLimited(room)).toBe(0);
  }, 20_000);
});
