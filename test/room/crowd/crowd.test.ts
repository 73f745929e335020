// Presence above PRESENCE_LIMIT users (3 in this project): counts instead of per-user frames,
// at most once a second, a truncated welcome, and one sync back at or below the limit.
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ServerFrame } from "../../../src/protocol";
import { call } from "../../support/http";
import { connect, type TestSocket } from "../../support/socket";
import { tokenFor } from "../../support/tokens";

const LIMIT = Number(env.PRESENCE_LIMIT);

async function join(room: string, user: string): Promise<TestSocket> {
  const s = await connect(room, { token: await tokenFor(user, room) });
  await s.next("welcome");
  return s;
}

const userEvents = (s: TestSocket) => s.frames.filter((f): f is Extract<ServerFrame, { type: "presence" }> => f.type === "presence" && "user" in f);
/** The next `sync` frame, typed as one. */
async function nextSync(s: TestSocket) {
  const f = await s.next("presence", (p) => p.event === "sync", 3000);
  if (f.event !== "sync") throw new Error("not a sync");
  return f;
}
const counts = (s: TestSocket) => s.frames.flatMap((f) => (f.type === "presence" && f.event === "count" ? [f.count] : []));

describe(`presence above PRESENCE_LIMIT (${LIMIT})`, () => {
  it("changes nothing at the limit: a full list in the welcome and per-user joins", async () => {
    const room = "crowd-at-limit";
    const first = await join(room, "u1");
    const rest = [await join(room, "u2"), await join(room, "u3")];
    const w = await rest[1]!.next("welcome");
    expect(w.presence.map((p) => p.id)).toEqual(["u1", "u2", "u3"]);
    expect(w.presenceTruncated).toBeUndefined();
    await first.next("presence", (p) => p.event === "join" && p.user.id === "u3");
    expect(counts(first)).toEqual([]);
  });

  it("above it: a truncated welcome with the count, no per-user frames, counts at most once a second", async () => {
    const room = "crowd-over";
    const early = await join(room, "u1");
    for (const u of ["u2", "u3"]) await join(room, u);
    const joinsBefore = userEvents(early).length;

    const fourth = await join(room, "u4");
    expect(await fourth.next("welcome")).toMatchObject({ presence: [], presenceCount: 4, presenceTruncated: true });
    expect(await early.next("presence", (p) => p.event === "count")).toMatchObject({ count: 4 });
    const firstCountAt = Date.now();
    // two more within the same second: held for the next tick, told as one count
    await join(room, "u5");
    await join(room, "u6");
    await early.next("presence", (p) => p.event === "count" && p.count === 6, 3000);
    expect(Date.now() - firstCountAt).toBeGreaterThanOrEqual(900);
    expect(counts(early)).toEqual([4, 6]);
    expect(userEvents(early)).toHaveLength(joinsBefore); // no join for u4, u5, u6
    await fourth.next("presence", (p) => p.event === "count" && p.count === 6); // the joiner is counted to too
  });

  it("still accepts and stores presence state, and the HTTP list is capped with the room's count", async () => {
    const room = "crowd-http";
    const socks = [];
    for (const u of ["u1", "u2", "u3", "u4", "u5"]) socks.push(await join(room, u));
    socks[4]!.send({ type: "presence", state: { mood: "busy" }, id: "p1" });
    socks[4]!.send({ type: "publish", data: "marker" });
    await socks[0]!.next("message", (m) => m.data === "marker");
    expect(socks[4]!.frames.filter((f) => f.type === "error")).toEqual([]);
    expect(userEvents(socks[0]!).filter((f) => f.event === "update")).toEqual([]);
    const r = await call("GET", `/rooms/${room}/presence`, { token: await tokenFor("x", room) });
    expect(r.status).toBe(200);
    expect(r.json.count).toBe(5);
    expect(r.json.users).toHaveLength(LIMIT);
    // the state is kept: once the room is small again it is listed with it
    for (const s of socks.slice(0, 2)) s.close();
    const synced = await nextSync(socks[4]!);
    expect(synced.users.find((u) => u.id === "u5")).toMatchObject({ state: { mood: "busy" } });
  });

  it("falls back with one sync carrying the whole list, then per-user frames again", async () => {
    const room = "crowd-back";
    const socks = new Map<string, TestSocket>();
    for (const u of ["u1", "u2", "u3", "u4"]) socks.set(u, await join(room, u));
    const late = socks.get("u4")!; // joined while counting: knows nobody by name
    expect((await late.next("welcome")).presence).toEqual([]);
    socks.get("u1")!.close();
    const sync = await nextSync(late);
    expect(sync.users.map((u) => u.id).sort()).toEqual(["u2", "u3", "u4"]);
    expect(late.frames.filter((f) => f.type === "presence" && f.event === "sync")).toHaveLength(1);
    socks.get("u2")!.close();
    expect(await late.next("presence", (p) => p.event === "leave")).toMatchObject({ user: { id: "u2" } });
  });

  it("owes the sync after an eviction too (the mode is stored)", async () => {
    const room = "crowd-evict";
    const socks = [];
    for (const u of ["u1", "u2", "u3", "u4"]) socks.push(await join(room, u));
    await socks[0]!.next("presence", (p) => p.event === "count");
    await evictDurableObject(env.ROOMS.get(env.ROOMS.idFromName(room)), { webSockets: "hibernate" });
    socks[3]!.close();
    const sync = await nextSync(socks[0]!);
    expect(sync.users.map((u) => u.id).sort()).toEqual(["u1", "u2", "u3"]);
  });
});
