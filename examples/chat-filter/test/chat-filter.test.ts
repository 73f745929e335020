// The example's room through its own Worker: onPublish refuses a banned word (over a socket and
// over HTTP: nothing stored, sent or numbered) and marks every other message `filtered`, in
// history and on every socket; the Worker's own route answers beside the rooms at /rt.
import { beforeAll, describe, expect, it } from "vitest";
import { call, connect, history, tokenFor, type Frame } from "./client";

const isMessage = (f: Frame) => f.type === "message";

// The first request loads the Worker's modules into the pool (seconds, more on a busy machine):
// paid here, with a deadline of its own, not by whichever test comes first.
beforeAll(async () => {
  await call("/rt/health");
}, 30_000);

describe("the Worker around the rooms", () => {
  it("answers its own route, and the rooms' under /rt", async () => {
    const hello = await call("/hello");
    expect(hello.status).toBe(200);
    expect(await hello.json()).toEqual({ hello: "chat-filter", rooms: "/rt" });
    expect(await (await call("/rt/health")).json()).toEqual({ ok: true });
    // Not the rooms' paths: the Worker's own 404, not edgerooms' JSON error.
    const other = await call("/rooms/lobby/history");
    expect([other.status, await other.text()]).toEqual([404, "not found"]);
  });
});

describe("createRooms' config", () => {
  it("holds for the Worker and for the rooms: 16 KiB messages", async () => {
    const alice = await connect("config-room", "alice");
    expect(alice.frames[0]).toMatchObject({ type: "welcome", limits: { maxMessageBytes: 16_384 } });
    const res = await call("/rt/rooms/config-room/messages", {
      method: "POST",
      token: await tokenFor("server", "config-room"),
      body: JSON.stringify({ data: { text: "x".repeat(16_384) } }),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { code: "too_large" } });
  });
});

describe("ChatRoom.onPublish over sockets", () => {
  it("refuses a banned word to its sender alone, numbers nothing, and marks the next message on every socket", async () => {
    const alice = await connect("sock-room", "alice");
    const bob = await connect("sock-room", "bob");
    alice.send({ type: "publish", id: "bad", data: { text: "cheap SPAM here" } });
    const refusal = await alice.next((f) => f.type === "error");
    expect(refusal).toEqual({ type: "error", id: "bad", code: "rejected", message: '"spam" is not allowed in this room' });
    expect(await history("sock-room")).toEqual([]);

    alice.send({ type: "publish", id: "ok", data: { text: "hello" } });
    const echo = await alice.next(isMessage);
    const seen = await bob.next(isMessage);
    expect(echo).toMatchObject({ seq: 1, id: "ok", from: { id: "alice" }, data: { text: "hello", filtered: true } });
    expect(seen).toMatchObject({ seq: 1, from: { id: "alice" }, data: { text: "hello", filtered: true } });
    // The room sends in order, so a refused publish fanned out would have reached bob before seq 1.
    expect(bob.frames.filter(isMessage)).toHaveLength(1);
    expect(bob.frames.filter((f) => f.type === "error")).toEqual([]);
    expect(alice.frames.filter(isMessage)).toHaveLength(1);

    const stored = await history("sock-room");
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ seq: 1, from: { id: "alice" }, data: { text: "hello", filtered: true } });
  });

  it("refuses a payload that is not a chat message", async () => {
    const alice = await connect("shape-room", "alice");
    alice.send({ type: "publish", id: "n", data: 42 });
    expect(await alice.next((f) => f.type === "error")).toMatchObject({ id: "n", code: "rejected", message: 'a chat message is {"text": "..."}' });
  });
});

describe("ChatRoom.onPublish over HTTP", () => {
  const publish = async (room: string, data: unknown) =>
    call(`/rt/rooms/${room}/messages`, {
      method: "POST",
      token: await tokenFor("server", room),
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ data }),
    });

  it("answers a banned word with 422 rejected and stores nothing; the next publish is seq 1, marked, on every socket", async () => {
    const alice = await connect("http-room", "alice");
    const bob = await connect("http-room", "bob");
    const refused = await publish("http-room", { text: "a scam" });
    expect(refused.status).toBe(422);
    expect(await refused.json()).toEqual({ error: { code: "rejected", message: '"scam" is not allowed in this room' } });
    expect(await history("http-room")).toEqual([]);

    const accepted = await publish("http-room", { text: "scampi for dinner" });
    expect(accepted.status).toBe(201);
    expect(await accepted.json()).toMatchObject({ seq: 1 });
    for (const socket of [alice, bob]) {
      expect(await socket.next(isMessage)).toMatchObject({ seq: 1, from: { id: "server" }, data: { text: "scampi for dinner", filtered: true } });
      expect(socket.frames.filter(isMessage)).toHaveLength(1);
    }
    const stored = await history("http-room");
    expect(stored.map((m) => [m.seq, m.data])).toEqual([[1, { text: "scampi for dinner", filtered: true }]]);
  });
});
