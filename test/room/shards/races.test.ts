// Giant rooms under the races an outside review found (issue #19): a delete in the same stream
// call as its message, a kick while the user's sockets are joining, moderation whose stream
// calls were lost, and a user's connections spread over shards. Sockets are placed on every
// shard deliberately (the Worker spreads them at random), so no shard is missed by chance.
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Capability, PresenceEntry } from "../../../src/protocol";
import { JOIN_HEADER, type Join, type Room } from "../../../src/room/room";
import { call } from "../../support/http";
import { socketOf, upgrade, type TestSocket } from "../../support/socket";
import { tokenFor } from "../../support/tokens";

const SHARDS = 4; // SHARDED_ROOMS has "giant-*:4" in this project
const rootOf = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));
const shardOf = (room: string, i: number) => env.ROOMS.get(env.ROOMS.idFromName(`${room}#${i}`));
const server = { id: "server", name: "server" };

/** An upgrade onto shard `index`, carrying what the Worker sends after auth (the Worker itself picks a shard at random). */
function upgradeOn(room: string, index: number, uid: string, extra: Partial<Join> = {}): Promise<Response> {
  const caps: Capability[] = ["subscribe", "publish", "history"];
  const join: Join = {
    room,
    user: { id: uid, name: uid },
    caps,
    exp: Math.floor(Date.now() / 1000) + 3600,
    ...extra,
    shard: { index, count: SHARDS },
  };
  return shardOf(room, index).fetch("https://room.internal/ws", { headers: { upgrade: "websocket", [JOIN_HEADER]: JSON.stringify(join) } });
}

async function onShard(room: string, index: number, uid: string, extra: Partial<Join> = {}): Promise<TestSocket> {
  const s = await socketOf(await upgradeOn(room, index, uid, extra));
  await s.next("welcome");
  return s;
}

/** `perShard` sockets on every shard; `uid` names them all alike, or each `${prefix}${k}` when it ends in "*". */
async function everywhere(room: string, perShard: number, uid: string): Promise<TestSocket[]> {
  const socks: TestSocket[] = [];
  for (let k = 0; k < SHARDS * perShard; k++) socks.push(await onShard(room, k % SHARDS, uid.endsWith("*") ? `${uid.slice(0, -1)}${k}` : uid));
  return socks;
}

/** The message and delete frames a socket got, in order. */
const events = (s: TestSocket) => s.frames.flatMap((f) => (f.type === "message" || f.type === "delete" ? [`${f.type} ${f.seq}`] : []));

const kick = async (room: string, body: unknown) => call("POST", `/rooms/${room}/kick`, { token: await tokenFor("mod", room, ["admin"]), body });

async function presence(room: string): Promise<{ users: PresenceEntry[]; count: number }> {
  return (await call("GET", `/rooms/${room}/presence`, { token: await tokenFor("reader", room, ["subscribe"]) })).json;
}

describe("giant rooms: the order of one stream call (#19 defect 1)", () => {
  it("delivers a message before its delete when both reach a shard in one call, and no shard's tail replays it", async () => {
    const room = "giant-race-delete";
    const watchers = await everywhere(room, 2, "w*");
    const { epoch } = await watchers[0]!.next("welcome");
    // One turn of the root: the publishes and the delete travel to each shard in one stream call.
    await runInDurableObject(rootOf(room), (root: Room) => {
      for (const data of ["keep-1", "secret", "keep-3"]) root.publish(room, server, data);
      root.deleteMessage(room, "mod", 2);
      root.publish(room, server, "keep-4");
    });
    for (const s of watchers) {
      await s.next("message", (m) => m.seq === 4);
      expect(events(s)).toEqual(["message 1", "message 2", "message 3", "delete 2", "message 4"]);
    }
    // Resumes answered from each shard's tail replay the delete in the message's place.
    for (let i = 0; i < SHARDS; i++) {
      const back = await onShard(room, i, "w0", { since: 0, epoch });
      expect(back.frames[0]).toMatchObject({ type: "welcome", recovered: true, seq: 4 });
      await back.next("message", (m) => m.seq === 4);
      expect(events(back)).toEqual(["message 1", "delete 2", "message 3", "message 4"]);
      expect(JSON.stringify(back.frames)).not.toContain("secret");
      back.close();
    }
  });
});

describe("giant rooms: a kick while the user joins (#19 defect 3)", () => {
  it("leaves no socket of a kicked and banned user open on any shard, and counts every one it closed", async () => {
    for (let trial = 0; trial < 4; trial++) {
      const room = `giant-race-kick-${trial}`;
      await everywhere(room, 1, "w*");
      const joins = Array.from({ length: 3 * SHARDS }, (_, k) => upgradeOn(room, k % SHARDS, "troll"));
      const kicked = kick(room, { user: "troll", banSec: 600, reason: "spam" });
      const answers = await Promise.all(joins);
      const admitted = await Promise.all(answers.filter((r) => r.status === 101).map(socketOf));
      for (const r of answers.filter((a) => a.status !== 101)) {
        expect(r.status).toBe(403);
        expect((await r.json<{ error: { code: string } }>()).error.code).toBe("banned");
      }
      const res = await kicked;
      for (const t of admitted) expect(await t.closed).toEqual({ code: 4403, reason: "kicked: spam" });
      expect(res.json, `trial ${trial}: ${admitted.length} admitted`).toEqual({ closed: admitted.length });
      // Every shard refuses the user from now on, through the Worker or straight to the shard.
      for (let i = 0; i < SHARDS; i++) expect((await upgradeOn(room, i, "troll")).status).toBe(403);
      expect((await upgrade(room, { token: await tokenFor("troll", room) })).status).toBe(403);
    }
  });
});

describe("giant rooms: moderation whose stream calls were lost (#19 defect 4)", () => {
  it("recovers a delete and a ban from the root's storage when its alarm wakes it, with presence right", async () => {
    const room = "giant-lost-moderation";
    const watchers = await everywhere(room, 2, "w*");
    const trolls = await everywhere(room, 1, "troll");
    const { epoch } = await watchers[0]!.next("welcome");
    watchers[0]!.send({ type: "publish", data: "secret" });
    for (const s of [...watchers, ...trolls]) await s.next("message", (m) => m.seq === 1);
    // As if the root had committed a delete and a ban (with the alarm a committed one sets) and
    // died before its stream calls went out: nobody but the alarm calls the root afterwards.
    await runInDurableObject(rootOf(room), async (_root, state) => {
      state.storage.sql.exec(`UPDATE messages SET frame = '' WHERE seq = 1`);
      state.storage.sql.exec(`INSERT INTO bans (uid, until) VALUES ('troll', ?)`, Date.now() + 600_000);
      await state.storage.setAlarm(Date.now() + 50);
    });
    await evictDurableObject(rootOf(room));
    for (const s of watchers) expect(await s.next("delete", undefined, 5000)).toEqual({ type: "delete", seq: 1 });
    for (const t of trolls) expect((await t.closed).code).toBe(4403);
    for (let i = 0; i < SHARDS; i++) {
      const back = await onShard(room, i, "w0", { since: 0, epoch });
      await back.next("delete");
      expect(events(back)).toEqual(["delete 1"]);
      expect(JSON.stringify(back.frames)).not.toContain("secret");
      back.close();
      const refused = await upgradeOn(room, i, "troll");
      expect(refused.status).toBe(403);
    }
    // The woken root counts every watcher once and the banned user not at all.
    await expect
      .poll(async () => (await presence(room)).users.map((u) => `${u.id}:${u.connections}`).sort(), { timeout: 5000 })
      .toEqual(watchers.map((_, k) => `w${k}:1`).sort());
  });
});

describe("giant rooms: a user's connections over shards (#19 defect 7)", () => {
  it("counts every connection of a user on every shard, in presence and in each shard's welcomes", async () => {
    const room = "giant-connections";
    await everywhere(room, 2, "multi");
    await expect.poll(async () => (await presence(room)).users.find((u) => u.id === "multi")?.connections, { timeout: 5000 }).toBe(8);
    // Each shard's welcome lists the room-wide count, once the root's count has reached it.
    for (let i = 0; i < SHARDS; i++) {
      let n = 0;
      await expect
        .poll(
          async () => {
            const observer = await onShard(room, i, `observer-${i}-${n++}`);
            observer.close();
            return observer.frames[0]?.type === "welcome" ? observer.frames[0].presence.find((u) => u.id === "multi")?.connections : undefined;
          },
          { timeout: 5000 },
        )
        .toBe(8);
    }
    // A ninth tab's own welcome counts it at once.
    const ninth = await onShard(room, 0, "multi");
    const welcome = ninth.frames[0]!;
    expect(welcome.type === "welcome" && welcome.presence.find((u) => u.id === "multi")?.connections).toBe(9);
    await expect.poll(async () => (await presence(room)).users.find((u) => u.id === "multi")?.connections, { timeout: 5000 }).toBe(9);
  });
});
