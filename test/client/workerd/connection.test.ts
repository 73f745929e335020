// The SDK's Connection against the real Worker and rooms in workerd: many rooms over one socket
// (GET /connect), each room a RoomHandle with RoomClient's behaviour. Sockets come from the
// Worker's fetch handler through the `socket` option, as in sdk-room.test.ts.
import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Connection, RoomError, type ConnectionOptions, type MessageFrame, type RoomHandle, type Status } from "../../../src/client/index";
import { call, fill } from "../../support/http";
import { token } from "../../support/tokens";

const opened: Connection[] = [];
afterEach(() => {
  for (const c of opened.splice(0)) c.close();
});

/** A Connection whose every socket is kept, so a test can count them and cut one as the network would. */
function connection(tok: ConnectionOptions["token"]) {
  const sockets: WebSocket[] = [];
  const conn = new Connection({
    url: "http://rooms.test",
    token: tok,
    socket: async (url) => {
      const res = await exports.default.fetch(url.replace(/^ws/, "http"), { headers: { upgrade: "websocket" } });
      if (!res.webSocket) throw new Error(`upgrade refused with ${res.status}`);
      res.webSocket.accept();
      sockets.push(res.webSocket);
      return res.webSocket;
    },
    fetch: (input, init) => exports.default.fetch(input, init),
    backoff: { baseMs: 20, capMs: 100 },
    pingIntervalMs: 500, // the pool's IDLE_TIMEOUT_SEC is 2
  });
  opened.push(conn);
  return { conn, sockets };
}

/** Every message event of a handle, and its statuses. */
function watch(handle: RoomHandle) {
  const messages: MessageFrame[] = [];
  const statuses: Status[] = [];
  const errors: RoomError[] = [];
  handle.on("message", (m) => messages.push(m));
  handle.on("status", (s) => statuses.push(s.status));
  handle.on("error", (e) => errors.push(e));
  return { messages, statuses, errors };
}

const open = (h: RoomHandle) => vi.waitFor(() => expect(h.status).toBe("open"), { timeout: 10_000 });
const seqs = (w: { messages: MessageFrame[] }) => w.messages.map((m) => m.seq);

describe("Connection", () => {
  it("opens one WebSocket for 30 rooms and gets every message of every room once, in each room's order", async () => {
    const { conn, sockets } = connection(await token({ sub: "alice", rooms: { "sdk-c30-*": ["subscribe"] } }));
    const rooms = Array.from({ length: 30 }, (_, i) => `sdk-c30-${i}`);
    const handles = rooms.map((r) => conn.room(r));
    const watched = handles.map(watch);
    for (const h of handles) await open(h);
    for (let round = 0; round < 3; round++) for (const r of rooms) await fill(r, 1, round);
    for (const w of watched) await vi.waitFor(() => expect(seqs(w)).toEqual([1, 2, 3]), { timeout: 10_000 });
    expect(watched.map((w) => w.messages.map((m) => m.data))).toEqual(rooms.map(() => [0, 1, 2]));
    expect(sockets).toHaveLength(1);
    expect(conn.room(rooms[0]!)).toBe(handles[0]);
  }, 60_000);

  it("resumes every room from its own position after the socket drops: nothing lost or repeated, one new socket", async () => {
    const { conn, sockets } = connection(await token({ sub: "alice", rooms: { "sdk-cres-*": ["subscribe"] } }));
    const rooms = ["sdk-cres-a", "sdk-cres-b", "sdk-cres-c"];
    const handles = rooms.map((r) => conn.room(r));
    const watched = handles.map(watch);
    for (const h of handles) await open(h);
    // Different positions per room: 1, 2 and 3 messages.
    for (const [i, r] of rooms.entries()) await fill(r, i + 1);
    for (const [i, w] of watched.entries()) await vi.waitFor(() => expect(w.messages).toHaveLength(i + 1));
    sockets[0]!.close(1000, "cut");
    for (const r of rooms) await fill(r, 2, 10);
    await vi.waitFor(() => expect(sockets).toHaveLength(2), { timeout: 10_000 });
    for (const h of handles) await open(h);
    for (const r of rooms) await fill(r, 1, 20);
    for (const [i, w] of watched.entries()) {
      await vi.waitFor(() => expect(seqs(w)).toEqual(Array.from({ length: i + 4 }, (_, k) => k + 1)), { timeout: 10_000 });
    }
    expect(handles.map((h) => watched[handles.indexOf(h)]!.errors)).toEqual([[], [], []]);
  }, 30_000);

  it("ends a refused room's handle with its error, and only that handle", async () => {
    const { conn } = connection(await token({ sub: "alice", rooms: { "sdk-cref-ok": ["subscribe"], "sdk-cref-no": ["history"] } }));
    const ok = conn.room("sdk-cref-ok");
    const no = conn.room("sdk-cref-no");
    const okw = watch(ok);
    const now = watch(no);
    await vi.waitFor(() => expect(no.status).toBe("closed"), { timeout: 10_000 });
    expect(now.errors.map((e) => e.code)).toEqual(["forbidden"]);
    await open(ok);
    await fill("sdk-cref-ok", 1);
    await vi.waitFor(() => expect(seqs(okw)).toEqual([1]));
    expect(conn.status).toBe("open");
  }, 20_000);

  it("leave() stops delivery for that room only", async () => {
    const { conn } = connection(await token({ sub: "alice", rooms: { "sdk-cleave-*": ["subscribe"] } }));
    const a = conn.room("sdk-cleave-a");
    const b = conn.room("sdk-cleave-b");
    const aw = watch(a);
    const bw = watch(b);
    await open(a);
    await open(b);
    a.leave();
    expect(a.status).toBe("closed");
    const ops = await token({ sub: "ops", rooms: { "sdk-cleave-a": ["admin"] } });
    await vi.waitFor(async () => expect((await call("GET", "/rooms/sdk-cleave-a/stats", { token: ops })).json.connections).toBe(0));
    await fill("sdk-cleave-a", 1);
    await fill("sdk-cleave-b", 1);
    await vi.waitFor(() => expect(seqs(bw)).toEqual([1]));
    expect(aw.messages).toEqual([]);
    // Joining it again is a new handle on the same socket.
    const again = conn.room("sdk-cleave-a");
    expect(again).not.toBe(a);
    await open(again);
  }, 20_000);

  it("renews every room with one refresh from the token function: no room drops at the old expiry", async () => {
    const rooms = { "sdk-cfresh-*": ["subscribe"] };
    let minted = 0;
    const { conn, sockets } = connection(() => (minted++, token({ sub: "alice", rooms, exp: Math.floor(Date.now() / 1000) + 3 })));
    const handles = ["sdk-cfresh-a", "sdk-cfresh-b"].map((r) => conn.room(r));
    const watched = handles.map(watch);
    for (const h of handles) await open(h);
    // Past the first token's expiry (3 s): refreshed at 80% of its life.
    await new Promise((r) => setTimeout(r, 4500));
    expect(minted).toBeGreaterThanOrEqual(2);
    expect(watched.map((w) => w.statuses.filter((s) => s !== "open"))).toEqual([["connecting"], ["connecting"]]);
    expect(sockets).toHaveLength(1);
    await fill("sdk-cfresh-b", 1);
    await vi.waitFor(() => expect(seqs(watched[1]!)).toEqual([1]));
  }, 20_000);

  it("refuses the room past MAX_ROOMS_PER_CONNECTION (32 here) on its handle with too_many_rooms", async () => {
    const { conn } = connection(await token({ sub: "alice", rooms: { "sdk-cmax-*": ["subscribe"] } }));
    const handles = Array.from({ length: 32 }, (_, i) => conn.room(`sdk-cmax-${i}`));
    for (const h of handles) await open(h);
    const extra = conn.room("sdk-cmax-32");
    const w = watch(extra);
    await vi.waitFor(() => expect(extra.status).toBe("closed"), { timeout: 10_000 });
    expect(w.errors.map((e) => e.code)).toEqual(["too_many_rooms"]);
    expect(handles.every((h) => h.status === "open")).toBe(true);
  }, 60_000);
});
