// The room's memory can vanish at any moment between events (hibernation, eviction). These
// tests really evict the object — a fresh instance over the same storage and the same
// hibernated sockets — and check that nothing the clients rely on changed.
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

const stubFor = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));

describe("hibernation and eviction", () => {
  it("keeps identities, capabilities and seq continuity across an eviction", async () => {
    const room = "hib-seq";
    const a = await connect(room, { token: await tokenFor("alice", room, ["subscribe", "publish"], "Alice") });
    const b = await connect(room, { token: await tokenFor("bob", room, ["subscribe"]) });
    const welcome = await a.next("welcome");
    await b.next("welcome");
    a.send({ type: "publish", data: 1 });
    await b.next("message", (m) => m.seq === 1);

    await evictDurableObject(stubFor(room), { webSockets: "hibernate" });

    a.send({ type: "publish", data: 2, id: "after" });
    const echoed = await b.next("message", (m) => m.seq === 2);
    expect(echoed).toMatchObject({ from: { id: "alice", name: "Alice" }, id: "after" });
    // bob still has no publish capability after the wake-up
    b.send({ type: "publish", data: "nope", id: "b1" });
    expect(await b.next("error", (e) => e.id === "b1")).toMatchObject({ code: "forbidden" });
    // a new joiner sees the same epoch and the continued seq
    const c = await connect(room, { token: await tokenFor("carol", room) });
    const cw = await c.next("welcome");
    expect(cw.epoch).toBe(welcome.epoch);
    expect(cw.seq).toBe(2);
  });

  it("rebuilds presence from the sockets after an eviction, with states kept", async () => {
    const room = "hib-presence";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    const a2 = await connect(room, { token: await tokenFor("alice", room) });
    const b = await connect(room, { token: await tokenFor("bob", room) });
    await b.next("welcome");
    a.send({ type: "presence", state: { typing: true } });
    await b.next("presence", (p) => p.event === "update");

    await evictDurableObject(stubFor(room), { webSockets: "hibernate" });

    const c = await connect(room, { token: await tokenFor("carol", room) });
    const { presence } = await c.next("welcome");
    const byId = Object.fromEntries(presence.map((p) => [p.id, p]));
    expect(byId.alice).toMatchObject({ connections: 2, state: { typing: true } });
    expect(byId.bob).toMatchObject({ connections: 1, state: {} });
    expect(Object.keys(byId).sort()).toEqual(["alice", "bob", "carol"]);

    // leave still announced exactly when alice's last connection goes, after the wake-up
    a.close();
    b.send({ type: "publish", data: "marker" });
    await c.next("message");
    expect(c.frames.some((f) => f.type === "presence" && f.event === "leave")).toBe(false);
    a2.close();
    expect(await c.next("presence", (p) => p.event === "leave")).toMatchObject({ user: { id: "alice" } });
  });

  it("delivers to every socket after an eviction without missing one (index rebuilt)", async () => {
    const room = "hib-index";
    const socks = await Promise.all(Array.from({ length: 8 }, async (_, i) => connect(room, { token: await tokenFor(`u${i}`, room) })));
    await Promise.all(socks.map((s) => s.next("welcome")));
    await evictDurableObject(stubFor(room), { webSockets: "hibernate" });
    socks[3]!.send({ type: "publish", data: "hello" });
    for (const s of socks) expect(await s.next("message")).toMatchObject({ seq: 1, data: "hello" });
  });

  it("announces one leave when a user's sockets are all closing as the room wakes", async () => {
    const room = "hib-closing";
    const a1 = await connect(room, { token: await tokenFor("alice", room) });
    const a2 = await connect(room, { token: await tokenFor("alice", room) });
    const b = await connect(room, { token: await tokenFor("bob", room) });
    await Promise.all([a1.next("welcome"), a2.next("welcome"), b.next("welcome")]);

    await evictDurableObject(stubFor(room), { webSockets: "hibernate" });
    // both close while no instance is running: the next one wakes with both already closing
    a1.close();
    a2.close();
    await Promise.all([a1.closed, a2.closed]);
    b.send({ type: "publish", data: "marker" });
    await b.next("message", (m) => m.data === "marker");
    const leaves = b.frames.filter((f) => f.type === "presence" && f.event === "leave");
    expect(leaves).toHaveLength(1);
    expect(leaves[0]).toMatchObject({ user: { id: "alice" } });
  });
});
