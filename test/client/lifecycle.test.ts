// The RoomClient's state machine against scripted sockets and fake timers: heartbeat, batching,
// handshake failures, outbox across a reconnect, resync.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RoomClient, type StatusEvent, type WebSocketLike } from "../../src/client/index";

type Listener = (e: unknown) => void;

class FakeSocket implements WebSocketLike {
  readyState = 0;
  readonly sent: string[] = [];
  readonly #listeners = new Map<string, Listener[]>();
  constructor(readonly url: string) {}
  send(text: string) {
    this.sent.push(text);
  }
  close() {
    this.readyState = 3;
  }
  addEventListener(type: string, fn: Listener) {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), fn]);
  }
  emit(type: string, e: unknown = {}) {
    for (const fn of this.#listeners.get(type) ?? []) fn(e);
  }
  // ---- the server's side
  accept(welcome: object = {}) {
    this.readyState = 1;
    this.emit("open");
    this.receive({
      type: "welcome",
      room: "r",
      connectionId: "c",
      user: { id: "me", name: "Me" },
      epoch: "e1",
      seq: 0,
      presence: [],
      resume: "r1.0.x",
      ...welcome,
    });
  }
  receive(frame: unknown) {
    this.emit("message", { data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.emit("close", { code, reason: "" });
  }
  publishes() {
    return this.sent
      .filter((t) => t.startsWith("{"))
      .map((t) => JSON.parse(t))
      .filter((f) => f.type === "publish");
  }
}

/** A message; with an id it is the echo of a frame of this client's user ("me", as welcomed). */
const msg = (seq: number, id?: string) => ({
  type: "message",
  seq,
  ts: 0,
  from: id ? { id: "me", name: "Me" } : { id: "x", name: "X" },
  data: seq,
  ...(id ? { id } : {}),
});

const CODE_FOR: Record<number, string> = { 400: "bad_request", 401: "unauthorized", 403: "forbidden", 429: "rate_limited", 503: "auth_unavailable" };

/** `probeStatus` is what the probe's GET answers; `probeCode` overrides the error code in its body. */
function setup(probeStatus: number | "down" = 200, probeCode?: string) {
  const sockets: FakeSocket[] = [];
  const statuses: StatusEvent[] = [];
  const fetch = vi.fn(() => {
    if (probeStatus === "down") return Promise.reject(new TypeError("fetch failed"));
    const code = probeCode ?? CODE_FOR[probeStatus] ?? "internal";
    return Promise.resolve(
      new Response(JSON.stringify(probeStatus === 200 ? { users: [] } : { error: { code, message: "" } }), { status: probeStatus }),
    );
  });
  const client = new RoomClient({
    url: "https://rooms.test",
    room: "r",
    token: "t",
    socket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    fetch: fetch,
    backoff: { random: () => 0.5 },
  });
  client.on("status", (s) => statuses.push(s));
  const latest = () => sockets[sockets.length - 1]!;
  return { client, sockets, statuses, fetch, latest };
}

/** Welcomed at seq 0, with the app's `message` and `delete` events logged in the order it got them. */
async function welcomedLogging() {
  const s = setup();
  const seen: string[] = [];
  s.client.on("message", (m) => seen.push(`message ${m.seq}`));
  s.client.on("delete", (d) => seen.push(`delete ${d.seq}`));
  await vi.advanceTimersByTimeAsync(0);
  s.latest().accept();
  return { ...s, seen };
}

beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

describe("RoomClient", () => {
  it("connects with the token, then resumes with since/epoch/resume after a drop", async () => {
    const { client, sockets, latest, statuses } = setup();
    await vi.advanceTimersByTimeAsync(0);
    expect(latest().url).toBe("wss://rooms.test/rooms/r/ws?token=t");
    latest().accept({ seq: 4 });
    latest().receive(msg(5));
    latest().drop();
    expect(client.status).toBe("reconnecting");
    expect(statuses.at(-1)?.retryAt).toBeTypeOf("number");
    await vi.advanceTimersByTimeAsync(250); // 0.5 × the 500 ms window
    expect(sockets).toHaveLength(2);
    expect(latest().url).toBe("wss://rooms.test/rooms/r/ws?token=t&since=5&epoch=e1&resume=r1.0.x");
    client.close();
  });

  it("reads a batched array of frames in order", async () => {
    const { client, latest } = setup();
    const seen: number[] = [];
    client.on("message", (m) => seen.push(m.seq));
    await vi.advanceTimersByTimeAsync(0);
    latest().accept();
    latest().receive([msg(1), msg(2), msg(3)]);
    latest().receive(msg(4));
    expect(seen).toEqual([1, 2, 3, 4]);
    client.close();
  });

  it("emits delete for a deleted message, in order with the messages around it", async () => {
    const { client, latest, seen } = await welcomedLogging();
    latest().receive([msg(1), { type: "delete", seq: 1 }, msg(2)]);
    expect(seen).toEqual(["message 1", "delete 1", "message 2"]);
    client.close();
  });

  it("delivers the messages a live delete overtook in a batch, but not the deleted one", async () => {
    const { client, latest, seen } = await welcomedLogging();
    latest().receive([{ type: "delete", seq: 3 }, msg(1), msg(2), msg(3)]);
    expect(seen).toEqual(["delete 3", "message 1", "message 2"]);
    expect(client.position.seq).toBe(3);
    latest().receive(msg(4));
    expect(seen.at(-1)).toBe("message 4");
    client.close();
  });

  it("passes a delete that arrives in its message's place", async () => {
    const { client, latest, seen } = await welcomedLogging();
    latest().receive([msg(1), { type: "delete", seq: 2 }]);
    expect(client.position.seq).toBe(2); // as a replay's delete: message 2 will not come
    latest().receive(msg(3));
    expect(seen).toEqual(["message 1", "delete 2", "message 3"]);
    expect(client.position.seq).toBe(3);
    client.close();
  });

  it("stops after a kick (4403) and says so", async () => {
    const { client, sockets, latest } = setup();
    const errors: { code: string; message: string }[] = [];
    client.on("error", (e) => errors.push(e));
    await vi.advanceTimersByTimeAsync(0);
    latest().accept();
    latest().readyState = 3;
    latest().emit("close", { code: 4403, reason: "kicked: spam" });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(client.status).toBe("closed");
    expect(sockets).toHaveLength(1);
    expect(errors).toMatchObject([{ code: "forbidden", message: "kicked: spam" }]);
  });

  it("pings every 25 s and reconnects when no pong comes within 10 s", async () => {
    const { client, sockets, latest } = setup();
    await vi.advanceTimersByTimeAsync(0);
    latest().accept();
    await vi.advanceTimersByTimeAsync(25_000);
    expect(latest().sent).toContain("ping");
    latest().receive("pong");
    await vi.advanceTimersByTimeAsync(25_000 + 9_999);
    expect(sockets).toHaveLength(1);
    expect(client.status).toBe("open");
    await vi.advanceTimersByTimeAsync(1);
    expect(client.status).toBe("reconnecting");
    expect(sockets[0]!.readyState).toBe(3);
    await vi.advanceTimersByTimeAsync(250);
    expect(sockets).toHaveLength(2);
    client.close();
  });

  it("gives up after a handshake the probe shows was a 401", async () => {
    const { client, sockets, latest, fetch, statuses } = setup(401);
    const errors: string[] = [];
    client.on("error", (e) => errors.push(e.code));
    await vi.advanceTimersByTimeAsync(0);
    latest().drop(1006);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fetch).toHaveBeenCalledWith("https://rooms.test/rooms/r/join?token=t", expect.anything());
    expect(sockets).toHaveLength(1);
    expect(client.status).toBe("closed");
    expect(statuses.at(-1)).toMatchObject({ status: "closed", reason: "unauthorized" });
    expect(errors).toEqual(["unauthorized"]);
    await expect(client.publish(1)).rejects.toMatchObject({ code: "closed" });
  });

  it.each([400, 403])("gives up after a handshake the probe shows was a %i", async (status) => {
    const { sockets, latest, statuses } = setup(status);
    await vi.advanceTimersByTimeAsync(0);
    latest().drop(1006);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(1);
    expect(statuses.at(-1)).toMatchObject({ status: "closed", reason: CODE_FOR[status] });
  });

  // A key-server outage (503 auth_unavailable), a rate limit, a failing server: the server's
  // problem, over when it is over. A fatal code in a body with such a status (a proxy's page,
  // a confused server) does not make it final either: only 400/401/403 do.
  it.each([
    [503, undefined],
    [429, undefined],
    [500, undefined],
    [502, undefined],
    [503, "unauthorized"],
    [429, "forbidden"],
  ])("keeps retrying with growing delays while the probe answers %i (%s)", async (status, code) => {
    const { client, sockets, latest, fetch } = setup(status, code);
    await vi.advanceTimersByTimeAsync(0);
    for (let n = 0; n < 4; n++) {
      latest().drop(1006);
      await vi.advanceTimersByTimeAsync(0);
      expect(client.status).toBe("reconnecting");
      await vi.advanceTimersByTimeAsync(Math.min(30_000, 500 * 2 ** n) / 2);
    }
    expect(fetch).toHaveBeenCalledTimes(4);
    expect(sockets).toHaveLength(5);
    client.close();
  });

  it("keeps retrying with growing delays while the server is down", async () => {
    const { client, sockets, latest } = setup("down");
    await vi.advanceTimersByTimeAsync(0);
    for (let n = 0; n < 4; n++) {
      latest().drop(1006);
      await vi.advanceTimersByTimeAsync(0);
      expect(client.status).toBe("reconnecting");
      await vi.advanceTimersByTimeAsync(Math.min(30_000, 500 * 2 ** n) / 2);
    }
    expect(sockets).toHaveLength(5);
    client.close();
  });

  it("sends publishes made offline once, in order, after the welcome, and resolves them on echo", async () => {
    const { client, latest } = setup();
    await vi.advanceTimersByTimeAsync(0);
    const a = client.publish("a");
    const b = client.publish("b");
    expect(latest().publishes()).toEqual([]);
    latest().accept();
    const [pa, pb] = latest().publishes();
    expect([pa.data, pb.data]).toEqual(["a", "b"]);
    latest().receive([msg(1, pa.id), msg(2, pb.id)]);
    await expect(a).resolves.toBe(1);
    await expect(b).resolves.toBe(2);
    client.close();
  });

  it("settles a publish in doubt from the resume replay, and rejects one the replay does not show", async () => {
    const { client, latest } = setup();
    await vi.advanceTimersByTimeAsync(0);
    latest().accept({ seq: 0 });
    const a = client.publish("a");
    const b = client.publish("b").catch((e: { code: string }) => e.code);
    const [pa, pb] = latest().publishes();
    latest().drop();
    await vi.advanceTimersByTimeAsync(250);
    latest().accept({ seq: 2, recovered: true });
    expect(latest().publishes()).toEqual([]); // nothing sent twice
    latest().receive(msg(1, pa.id));
    latest().receive(msg(2)); // someone else's: the replay ends without b
    await expect(a).resolves.toBe(1);
    expect(await b).toBe("connection_lost");
    expect(pb.id).toBeTypeOf("string");
    client.close();
  });

  it("does not end a resume replay at a delete that overtook the replay's messages", async () => {
    const { client, latest } = setup();
    await vi.advanceTimersByTimeAsync(0);
    latest().accept({ seq: 0 });
    const b = client.publish("b");
    const [pb] = latest().publishes();
    latest().drop();
    await vi.advanceTimersByTimeAsync(250);
    latest().accept({ seq: 2, recovered: true });
    latest().receive([{ type: "delete", seq: 2 }, msg(1), msg(2, pb.id)]);
    await expect(b).resolves.toBe(2); // accepted, then deleted: not rejected as lost
    expect(client.position.seq).toBe(2);
    client.close();
  });

  it("announces resync when the room cannot resume, and rebuilds presence from the welcome", async () => {
    const { client, latest } = setup();
    const resyncs: number[] = [];
    client.on("resync", (w) => resyncs.push(w.seq));
    await vi.advanceTimersByTimeAsync(0);
    latest().accept({ presence: [{ id: "me", name: "Me", state: {}, connections: 1 }] });
    latest().receive({ type: "presence", event: "join", user: { id: "bo", name: "Bo", state: {} } });
    expect([...client.presence.keys()]).toEqual(["me", "bo"]);
    latest().drop();
    await vi.advanceTimersByTimeAsync(250);
    latest().accept({ seq: 80, recovered: false, presence: [{ id: "me", name: "Me", state: {}, connections: 1 }] });
    expect(resyncs).toEqual([80]);
    expect([...client.presence.keys()]).toEqual(["me"]);
    client.close();
  });

  it("re-applies its presence state after a reconnect that lost it", async () => {
    const { client, latest } = setup();
    await vi.advanceTimersByTimeAsync(0);
    latest().accept();
    client.setPresence({ typing: true });
    latest().drop();
    await vi.advanceTimersByTimeAsync(250);
    latest().accept({ presence: [{ id: "me", name: "Me", state: {}, connections: 1 }] });
    expect(latest().sent).toContain(JSON.stringify({ type: "presence", state: { typing: true } }));
    client.close();
  });

  it("does not reconnect after close()", async () => {
    const { client, sockets, latest } = setup();
    await vi.advanceTimersByTimeAsync(0);
    latest().accept();
    const pending = client.publish("x").catch((e: { code: string }) => e.code);
    client.close();
    latest().drop(1000);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(1);
    expect(await pending).toBe("closed");
  });
});
