// Sockets placed on a chosen shard of a giant room (SHARDED_ROOMS "giant-*:4" in the shards
// project). The Worker spreads upgrades at random; a test that must reach every shard places them.
import { env } from "cloudflare:workers";
import type { Capability } from "../../src/protocol";
import { JOIN_HEADER, type Join } from "../../src/room/room";
import { socketOf, type TestSocket } from "./socket";

export const SHARDS = 4; // SHARDED_ROOMS has "giant-*:4" in this project
export const rootOf = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));
export const shardOf = (room: string, i: number) => env.ROOMS.get(env.ROOMS.idFromName(`${room}#${i}`));

/** What placing a socket needs of a Room class's binding: the server's ROOMS, or a user's subclass (the hooks project's CHAT). */
export interface Rooms {
  idFromName(name: string): DurableObjectId;
  get(id: DurableObjectId): { fetch(url: string, init: RequestInit): Promise<Response> };
}

/** An upgrade onto shard `index`, carrying what the Worker sends after auth (the Worker itself picks a shard at random). */
export function upgradeOn(room: string, index: number, uid: string, extra: Partial<Join> = {}, rooms: Rooms = env.ROOMS): Promise<Response> {
  const caps: Capability[] = ["subscribe", "publish", "history"];
  const join: Join = {
    room,
    user: { id: uid, name: uid },
    caps,
    exp: Math.floor(Date.now() / 1000) + 3600,
    ...extra,
    shard: { index, count: SHARDS },
  };
  return rooms
    .get(rooms.idFromName(`${room}#${index}`))
    .fetch("https://room.internal/ws", { headers: { upgrade: "websocket", [JOIN_HEADER]: JSON.stringify(join) } });
}

export async function onShard(room: string, index: number, uid: string, extra: Partial<Join> = {}, rooms: Rooms = env.ROOMS): Promise<TestSocket> {
  const s = await socketOf(await upgradeOn(room, index, uid, extra, rooms));
  await s.next("welcome");
  return s;
}

/** `perShard` sockets on every shard; `uid` names them all alike, or each `${prefix}${k}` when it ends in "*". */
export async function everywhere(room: string, perShard: number, uid: string): Promise<TestSocket[]> {
  const socks: TestSocket[] = [];
  for (let k = 0; k < SHARDS * perShard; k++) socks.push(await onShard(room, k % SHARDS, uid.endsWith("*") ? `${uid.slice(0, -1)}${k}` : uid));
  return socks;
}

/** A refused upgrade onto shard `index`: its status and error code (the body read, so the shard's request ends). */
export async function refusalOn(room: string, index: number, uid: string): Promise<{ status: number; code?: string }> {
  const res = await upgradeOn(room, index, uid);
  if (res.status === 101) throw new Error(`shard ${index} admitted ${uid}`);
  return { status: res.status, code: (await res.json<{ error?: { code: string } }>()).error?.code };
}
