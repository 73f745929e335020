// Every line of docs/protocol.md, once, against a real `wrangler dev` over real sockets — the
// counterpart of the Workers-pool suites, proving the deployed shape (routing, assets, vars,
// hibernation API, SQLite storage, restart) and not just the room in isolation.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, presenceById, RoomClient } from "./support/client";
import { allCaps, devServer, type DevServer } from "./support/server";

let server: DevServer;
beforeAll(async () => {
  server = await devServer({ ALLOWED_ORIGINS: "https://app.example", HISTORY_LIMIT: "100" });
});
afterAll(() => server?.stop());

const room = "protocol-e2e";

describe("the whole protocol against wrangler dev", () => {
  it("serves /health and the demo page, and refuses before any upgrade", async () => {
    expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ ok: true });
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    await page.body?.cancel();

    const token = await allCaps(server, "alice", room);
    const noUpgrade = await fetch(`${server.url}/rooms/${room}/ws?token=${token}`);
    expect(noUpgrade.status).toBe(426);
    expect(await noUpgrade.json()).toMatchObject({ error: { code: "upgrade_required" } });
    expect((await fetch(`${server.url}/rooms/bad%2Fname/presence`)).status).toBe(400);
    expect((await fetch(`${server.url}/rooms/${room}/presence`)).status).toBe(401);
    // the dev-token route exists only when the dev script turns it on
    expect((await fetch(`${server.url}/dev/token?user=a&room=${room}`)).status).toBe(404);

    const stranger = new RoomClient(server, room, await server.token({ sub: "eve", rooms: { other: ["*"] } }));
    await expect(stranger.connect()).rejects.toThrow(/-403/);
    const expired = new RoomClient(server, room, await server.token({ sub: "eve", rooms: { [room]: ["*"] }, ttlSec: -60 }));
    await expect(expired.connect()).rejects.toThrow(/-401/);
  });

  it("welcomes, echoes publishes in seq order, answers ping, presence, direct, history and errors", async () => {
    const alice = new RoomClient(server, room, await allCaps(server, "alice", room, "Alice"));
    const bob = new RoomClient(server, room, await server.token({ sub: "bob", rooms: { "protocol-*": ["subscribe", "publish"] } }));
    const aw = await alice.connect();
    expect(aw).toMatchObject({ room, user: { id: "alice", name: "Alice" }, seq: 0 });
    const bw = await bob.connect();
    expect(bw.presence.map((p) => p.id).sort()).toEqual(["alice", "bob"]);
    expect(await alice.next("presence", (p) => p.event === "join")).toMatchObject({ user: { id: "bob" } });

    alice.publish({ text: "hi" }, "a1");
    bob.publish({ text: "hey" }, "b1");
    await alice.seen(2);
    await bob.seen(2);
    for (const c of [alice, bob]) {
      expect(c.messages.map((m) => [m.seq, m.id])).toEqual([
        [1, "a1"],
        [2, "b1"],
      ]);
    }

    alice.send("ping");
    await alice.until(() => (alice.texts.includes("pong") ? true : undefined), "pong");

    alice.send({ type: "presence", state: { typing: true } });
    expect(await bob.next("presence", (p) => p.event === "update")).toMatchObject({ user: { id: "alice", state: { typing: true } } });

    alice.send({ type: "direct", to: "bob", data: "psst", id: "d1" });
    expect(await alice.next("ack")).toEqual({ type: "ack", id: "d1" });
    expect(await bob.next("direct")).toEqual({ type: "direct", from: { id: "alice", name: "Alice" }, data: "psst", id: "d1" });
    alice.send({ type: "direct", to: "nobody", data: 1, id: "d2" });
    expect(await alice.next("error", (e) => e.id === "d2")).toMatchObject({ code: "not_found" });

    alice.send({ type: "history", limit: 1, id: "h1" });
    expect(await alice.next("history")).toMatchObject({ id: "h1", more: true, messages: [{ seq: 2 }] });
    bob.send({ type: "history", id: "h2" }); // bob's token has no history capability
    expect(await bob.next("error", (e) => e.id === "h2")).toMatchObject({ code: "forbidden" });

    alice.send("{not json");
    expect(await alice.next("error", (e) => e.code === "bad_request")).toBeTruthy();
    alice.ws!.send(Buffer.from([1, 2, 3]), { binary: true });
    await alice.until(
      () => (alice.frames.filter((f) => f.type === "error" && f.code === "bad_request").length >= 2 ? true : undefined),
      "binary rejected",
    );
    alice.send({ type: "publish", data: "x".repeat(70_000), id: "big" });
    expect(await alice.next("error", (e) => e.id === undefined && e.code === "too_large")).toBeTruthy();

    bob.close();
    expect(await alice.next("presence", (p) => p.event === "leave")).toMatchObject({ user: { id: "bob" } });
    alice.close();
  });

  it("publishes over HTTP with idempotency, pages history, shows presence and stats", async () => {
    const admin = await allCaps(server, "ops", room);
    const listener = new RoomClient(server, room, await allCaps(server, "listener", room));
    await listener.connect();
    const post = (key: string) =>
      fetch(`${server.url}/rooms/${room}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${admin}`, "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify({ data: { from: "server" } }),
      });
    const first = await post("once");
    expect(first.status).toBe(201);
    const result = await first.json<{ seq: number; epoch: string }>();
    expect(await (await post("once")).json()).toEqual(result);
    await listener.seen(result.seq);
    expect(listener.messages.filter((m) => m.seq === result.seq)).toHaveLength(1);

    const history = await api<{ messages: { seq: number }[]; more: boolean }>(server, admin, `/rooms/${room}/history?limit=2`);
    expect(history.body.messages.map((m) => m.seq)).toEqual([result.seq, result.seq - 1]);
    const presence = await api<{ users: { id: string; connections: number }[] }>(server, admin, `/rooms/${room}/presence`);
    expect(presenceById(presence.body.users as never)).toMatchObject({ listener: { connections: 1 } });
    const stats = await api<Record<string, unknown>>(server, admin, `/rooms/${room}/stats`);
    expect(stats.body).toMatchObject({ room, connections: 1, users: 1, seq: result.seq, epoch: result.epoch });
    listener.close();
  });

  it("resumes across a dev-server restart: recovered, exactly the missed messages, seq continues", async () => {
    const token = await allCaps(server, "carol", room);
    const carol = new RoomClient(server, room, token);
    const w = await carol.connect();
    const seenBefore = w.seq;
    await server.restart(); // every socket drops; storage persists
    await carol.closed();
    const admin = await allCaps(server, "ops", room);
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${server.url}/rooms/${room}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
        body: JSON.stringify({ data: { missed: i } }),
      });
      expect(r.status).toBe(201);
    }
    const back = await carol.connect(); // resumes with since/epoch from what it saw
    expect(back).toMatchObject({ recovered: true, epoch: w.epoch, seq: seenBefore + 3 });
    await carol.seen(seenBefore + 3);
    expect(carol.messages.map((m) => m.seq)).toEqual([seenBefore + 1, seenBefore + 2, seenBefore + 3]);
    // nobody who did not come back is still listed
    expect(back.presence.map((p) => p.id)).toEqual(["carol"]);
    carol.close();
  });
});
