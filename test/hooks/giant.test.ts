// The hooks in a giant room (SHARDED_ROOMS "giant-*:4" in the hooks project): every hook runs in
// the root, whichever shard holds the socket, and each decision reaches the socket on its shard.
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { MessageFrame } from "../../src/protocol";
import { expectFailure } from "../support/edge";
import { SHARDS, onShard as onShardOf, upgradeOn as upgradeOnShard } from "../support/shards";
import { upgrade, type TestSocket } from "../support/socket";
import { tokenFor } from "../support/tokens";
import type { HookCall, HooksEnv } from "./worker";

const chat = (env as unknown as HooksEnv).CHAT;
const objectOf = (name: string) => chat.get(chat.idFromName(name));
const logOf = (name: string): Promise<HookCall[]> => objectOf(name).hookLog();
const shardLogs = async (room: string) => (await Promise.all([...Array(SHARDS).keys()].map((i) => logOf(`${room}#${i}`)))).flat();

const upgradeOn = (room: string, index: number, uid: string) => upgradeOnShard(room, index, uid, {}, chat);
const onShard = (room: string, index: number, uid: string) => onShardOf(room, index, uid, {}, chat);

const messages = (s: TestSocket) => s.frames.filter((f): f is MessageFrame => f.type === "message");

describe("hooks in a giant room", () => {
  it("runs onPublish in the root for a publish from any shard, and every shard delivers the rewrite", async () => {
    const room = "giant-publish";
    const socks = await Promise.all([...Array(SHARDS).keys()].map((i) => onShard(room, i, `s${i}`)));
    socks.forEach((s, i) => {
      s.send({ type: "publish", id: `p${i}`, data: { text: `from shard ${i}` } });
    });
    for (const s of socks) {
      await s.collect("message", SHARDS);
      expect(
        messages(s)
          .map((m) => m.data)
          .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      ).toEqual(socks.map((_, i) => ({ text: `from shard ${i}`, checked: "socket" })));
    }
    expect((await logOf(room)).filter((c) => c.hook === "publish")).toHaveLength(SHARDS);
    expect(await shardLogs(room)).toEqual([]);
  });

  it("answers a refusal to the publishing socket on its shard, and numbers nothing", async () => {
    const room = "giant-refuse";
    const socks = await Promise.all([...Array(SHARDS).keys()].map((i) => onShard(room, i, `s${i}`)));
    socks[2]!.send({ type: "publish", id: "bad", data: { text: "spam" } });
    expect(await socks[2]!.next("error", (e) => e.id === "bad")).toEqual({ type: "error", id: "bad", code: "rejected", message: "no spam here" });
    socks[1]!.send({ type: "publish", id: "good", data: { text: "ok" } });
    for (const s of socks) {
      const m = await s.next("message");
      expect([m.seq, m.id, messages(s).length]).toEqual([1, "good", 1]);
    }
  });

  it("asks the root's onJoin before a shard admits a socket, through the Worker or straight to a shard", async () => {
    const room = "giant-join";
    const viaWorker = await upgrade(room, { token: await tokenFor("blocked-w", room), base: "/rt" });
    expect(viaWorker.status).toBe(403);
    expect(await viaWorker.json()).toEqual({ error: { code: "rejected", message: "blocked users stay out" } });
    await expectFailure(await upgradeOn(room, 1, "blocked-s"), 403, "rejected");
    await onShard(room, 3, "alice");
    expect((await logOf(room)).map((c) => [c.hook, c.user])).toEqual([
      ["join", "blocked-w"],
      ["join", "blocked-s"],
      ["join", "alice"],
    ]);
    expect(await shardLogs(room)).toEqual([]);
  });

  it("runs onLeave once, in the root, when a user's last socket on any shard has gone", async () => {
    const room = "giant-leave";
    const first = await onShard(room, 0, "alice");
    const second = await onShard(room, 3, "alice");
    const watcher = await onShard(room, 1, "bob");
    first.close();
    // The root has counted shard 0's close once alice's count went down to 1.
    await vi.waitFor(
      async () => {
        const presence = (await objectOf(room).presence(room, "bob")) as unknown as { users: { id: string; connections?: number }[] };
        expect(presence.users.find((u) => u.id === "alice")?.connections).toBe(1);
      },
      { timeout: 3000 },
    );
    expect((await logOf(room)).filter((c) => c.hook === "leave")).toEqual([]);
    second.close();
    await watcher.next("presence", (p) => p.event === "leave");
    await vi.waitFor(async () => expect((await logOf(room)).filter((c) => c.hook === "leave")).toEqual([{ hook: "leave", user: "alice", room }]), {
      timeout: 3000,
    });
    expect(await shardLogs(room)).toEqual([]);
  });
});
