// Presence never shows ghosts: one entry per user, join on the first connection, leave on the
// last however it ends, update on state changes; and the idle sweep ends silent sockets.
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { call } from "../support/http";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

const stubFor = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));

describe("presence", () => {
  it("announces join to the others on a user's first connection only, and leave on the last", async () => {
    const room = "presence-joins";
    const watcher = await connect(room, { token: await tokenFor("watcher", room) });
    await watcher.next("welcome");
    const a1 = await connect(room, { token: await tokenFor("alice", room, ["*"], "Alice") });
    const w1 = await a1.next("welcome");
    expect(w1.presence.map((p) => p.id).sort()).toEqual(["alice", "watcher"]);
    const a2 = await connect(room, { token: await tokenFor("alice", room) });
    await a2.next("welcome");
    expect(await watcher.next("presence")).toMatchObject({ event: "join", user: { id: "alice", name: "Alice", state: {} } });
    a1.close();
    await a1.closed;
    a2.send({ type: "publish", data: "still here" });
    await watcher.next("message");
    a2.close();
    expect(await watcher.next("presence", (p) => p.event === "leave")).toMatchObject({ user: { id: "alice" } });
    const events = watcher.frames.filter((f) => f.type === "presence");
    expect(events.map((e) => e.type === "presence" && e.event)).toEqual(["join", "leave"]);
    // the joiner gets no join for itself
    expect(a1.frames.some((f) => f.type === "presence" && f.event === "join" && f.user.id === "alice")).toBe(false);
  });

  it("counts connections per user in welcome and GET /presence", async () => {
    const room = "presence-count";
    const a1 = await connect(room, { token: await tokenFor("alice", room) });
    const a2 = await connect(room, { token: await tokenFor("alice", room) });
    await a1.next("welcome");
    await a2.next("welcome");
    const res = await call("GET", `/rooms/${room}/presence`, { token: await tokenFor("viewer", room, ["subscribe"]) });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ users: [{ id: "alice", name: "alice", state: {}, connections: 2 }], count: 1 });
  });

  it("broadcasts state updates, keeps the latest per user, and rejects oversized state", async () => {
    const room = "presence-state";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    const b = await connect(room, { token: await tokenFor("bob", room) });
    await b.next("welcome");
    a.send({ type: "presence", state: { typing: true } });
    a.send({ type: "presence", state: { typing: false, status: "away" } });
    const updates = await b.collect("presence", 2); // bob joined second, so he saw no join
    expect(updates.map((u) => u.event)).toEqual(["update", "update"]);
    expect(updates.at(-1)).toMatchObject({ user: { id: "alice", state: { typing: false, status: "away" } } });
    a.send({ type: "presence", state: { blob: "x".repeat(1100) }, id: "big" });
    expect(await a.next("error", (e) => e.id === "big")).toMatchObject({ code: "bad_request" });
    a.send({ type: "presence", state: ["not", "an", "object"], id: "arr" });
    expect(await a.next("error", (e) => e.id === "arr")).toMatchObject({ code: "bad_request" });
    const c = await connect(room, { token: await tokenFor("carol", room) });
    const { presence } = await c.next("welcome");
    expect(presence.find((p) => p.id === "alice")!.state).toEqual({ typing: false, status: "away" });
  });

  it("forgets a user's state when they leave", async () => {
    const room = "presence-forget";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    await a.next("welcome");
    a.send({ type: "presence", state: { mood: "busy" } });
    await a.next("presence", (p) => p.event === "update");
    a.close();
    await a.closed;
    const again = await connect(room, { token: await tokenFor("alice", room) });
    const { presence } = await again.next("welcome");
    expect(presence).toEqual([{ id: "alice", name: "alice", state: {}, connections: 1 }]);
  });
});

describe("idle sweep (IDLE_TIMEOUT_SEC is 2 here)", () => {
  it("closes a socket silent past the timeout with 4408 and announces its leave; pings keep one alive", async () => {
    const room = "idle-sweep";
    const silent = await connect(room, { token: await tokenFor("silent", room) });
    const pinger = await connect(room, { token: await tokenFor("pinger", room) });
    await silent.next("welcome");
    await pinger.next("welcome");
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 500));
      pinger.send("ping"); // answered by the auto-response, never reaching the room's handler
    }
    await runDurableObjectAlarm(stubFor(room)); // the sweep, unless the alarm already fired by itself
    expect(await silent.closed).toMatchObject({ code: 4408 });
    expect(await pinger.next("presence", (p) => p.event === "leave")).toMatchObject({ user: { id: "silent" } });
    expect(pinger.isClosed()).toBe(false);
    const res = await call("GET", `/rooms/${room}/presence`, { token: await tokenFor("v", room) });
    expect(res.json.users.map((u: { id: string }) => u.id)).toEqual(["pinger"]);
  });

  it("keeps the alarm scheduled only while sockets exist", async () => {
    const room = "idle-alarm";
    const s = await connect(room, { token: await tokenFor("solo", room) });
    await s.next("welcome");
    const alarm = () => runInDurableObject(stubFor(room), (_room, state) => state.storage.getAlarm());
    expect(await alarm()).not.toBeNull();
    s.close();
    await s.closed;
    await runDurableObjectAlarm(stubFor(room)); // the sweep finds nobody...
    expect(await alarm()).toBeNull(); // ...and does not reschedule, so an empty room stays asleep
  });
  it("deletes a leaving user's state row only when there is one: a stateless leave writes nothing", async () => {
    const room = "presence-leave-writes";
    const stub = stubFor(room);
    const watcher = await connect(room, { token: await tokenFor("watcher", room) });
    await watcher.next("welcome");
    // Every statement the room runs from here on (the room's sql is the state's own object).
    const statements: string[] = [];
    await runInDurableObject(stub, (_room, state) => {
      const sql = state.storage.sql;
      const exec = sql.exec.bind(sql);
      sql.exec = ((query: string, ...bindings: unknown[]) => {
        statements.push(query);
        return exec(query, ...bindings);
      }) as typeof sql.exec;
    });
    const quiet = await connect(room, { token: await tokenFor("quiet", room) });
    await quiet.next("welcome");
    const typing = await connect(room, { token: await tokenFor("typing", room) });
    await typing.next("welcome");
    typing.send({ type: "presence", state: { typing: true } });
    await watcher.next("presence", (p) => p.event === "update" && p.user.id === "typing");

    quiet.close();
    await watcher.next("presence", (p) => p.event === "leave" && p.user.id === "quiet");
    typing.close();
    await watcher.next("presence", (p) => p.event === "leave" && p.user.id === "typing");

    const deletes = statements.filter((q) => q.startsWith("DELETE FROM presence"));
    expect(deletes).toHaveLength(1); // typing's; quiet never had a row
    const rows = await runInDurableObject(stub, (_room, state) => state.storage.sql.exec(`SELECT uid FROM presence`).toArray());
    expect(rows).toEqual([]);
  });
});
