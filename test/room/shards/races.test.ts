// Giant rooms under the races an outside review found (issue #19): a delete in the same stream
// call as its message, a kick while the user's sockets are joining, moderation whose stream
// calls were lost, and a user's connections spread over shards. Sockets are placed on every
// shard deliberately (the Worker spreads them at random), so no shard is missed by chance.
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { PresenceEntry } from "../../../src/protocol";
import type { Room } from "../../../src/room/room";
import { call } from "../../support/http";
import { everywhere, onShard, refusalOn, rootOf, SHARDS, upgradeOn } from "../../support/shards";
import { socketOf, upgrade, type TestSocket } from "../../support/socket";
import { tokenFor } from "../../support/tokens";

/** The message and delete frames a socket got, in order. */
const events = (s: TestSocket) => s.frames.flatMap((f) => (f.type === "message" || f.type === "delete" ? [`${f.type} ${f.seq}`] : []));

const kick = async (room: string, body: unknown) => call("POST", `/rooms/${room}/kick`, { token: await tokenFor("mod", room, ["admin"]), body });

async function presence(room: string): Promise<{ users: PresenceEntry[]; count: number }> {
  return (await call("GET", `/rooms/${room}/presence`, { token: await tokenFor("reader", room, ["subscribe"]) })).json;
}

const server = { id: "server", name: "server" };

describe("giant rooms: the order of one stream call (#19 defect 1)", () => {
  it("delivers a message before its delete when both reach a shard in one call, and no shard's tail replays it", async () => {
    const room = "giant-race-delete";
    const watchers = await everywhere(room, 2, "w*");
    const { epoch } = await watchers[0]!.next("welcome");
    // One turn of the root: the publishes and the delete travel to each shard in one stream call.
    await runInDurableObject(rootOf(room), (root: Room) => {
      // A room without onPublish publishes synchronously: all of this is one turn.
      for (const data of ["keep-1", "secret", "keep-3"]) void root.publish(room, server, data);
      root.deleteMessage(room, "mod", 2);
      void root.publish(room, server, "keep-4");
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
      for (let i = 0; i < SHARDS; i++) expect(await refusalOn(room, i, "troll")).toEqual({ status: 403, code: "banned" });
      const viaWorker = await upgrade(room, { token: await tokenFor("troll", room) });
      expect(viaWorker.status).toBe(403);
      await viaWorker.text();
    }
  });

  it("refuses a join that was waiting on the root when the kick came (the ban is checked as the socket is admitted)", async () => {
    for (let trial = 0; trial < 4; trial++) {
      const room = `giant-race-kick-resume-${trial}`;
      // History the shards' tails lack: a join resuming from seq 0 waits on a root.range call.
      let epoch = "";
      for (let k = 0; k < 3; k++)
        epoch = (await call("POST", `/rooms/${room}/messages`, { token: await tokenFor("server", room, ["publish"]), body: { data: k } })).json.epoch;
      const joins = Array.from({ length: 2 * SHARDS }, (_, k) => upgradeOn(room, k % SHARDS, "troll", { since: 0, epoch }));
      const kicked = kick(room, { user: "troll", banSec: 600 });
      const answers = await Promise.all(joins);
      const admitted = await Promise.all(answers.filter((r) => r.status === 101).map(socketOf));
      for (const r of answers.filter((a) => a.status !== 101)) expect(r.status).toBe(403);
      const res = await kicked;
      for (const t of admitted) expect((await t.closed).code).toBe(4403);
      expect(res.json, `trial ${trial}: ${admitted.length} admitted`).toEqual({ closed: admitted.length });
      await Promise.all(answers.filter((a) => a.status !== 101).map((r) => r.text()));
    }
  });
});

describe("giant rooms: a ban on every path to the root (#19 defect 5)", () => {
  it("refuses a banned user's frames that a shard sends on, at the root, whatever that shard has heard", async () => {
    const room = "giant-ban-rpc";
    const watchers = await everywhere(room, 1, "w*");
    expect((await kick(room, { user: "troll", banSec: 600 })).json).toEqual({ closed: 0 });
    const troll = { id: "troll", name: "troll" };
    const answers = await runInDurableObject(rootOf(room), (root: Room) => [
      root.shardPublish(room, troll, "spam"),
      root.shardDirect(room, "troll", "w0", JSON.stringify({ type: "direct", from: troll, data: "psst" })),
      root.shardState(room, "troll", { typing: true }),
      root.historyFrames("troll", undefined, 10),
    ]);
    for (const answer of answers) expect(answer).toMatchObject({ code: "banned" });
    // Nothing was numbered, stored or sent: the next publish is seq 1, and it is all anyone got.
    watchers[0]!.send({ type: "publish", data: "hello" });
    for (const w of watchers) {
      await w.next("message", (m) => m.data === "hello");
      expect(events(w)).toEqual(["message 1"]);
      expect(w.frames.filter((f) => f.type === "direct")).toEqual([]);
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
      expect(await refusalOn(room, i, "troll")).toEqual({ status: 403, code: "banned" });
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
