// Opening a member's socket to a room: the one path from the Worker into a room's object, taken
// by a direct upgrade (GET /rooms/:room/ws) and by each subscribe of a connection (connect.ts),
// so both are the same join as far as the room can tell.
import type { Identity } from "../auth";
import { shardsFor, type Config } from "../config";
import { failure, type Failure } from "../http";
import type { Capability } from "../protocol";
import { MAX_RESUME_TOKEN_LENGTH } from "../room/resume-token";
import { JOIN_HEADER, roomStub, type Join, type Room } from "../room/room";
import { shardName } from "../room/shards";

/** Where a member resumes from: a direct upgrade's `?since=&epoch=&resume=`, or a subscribe frame's fields. */
export interface Position {
  since?: string | number;
  epoch?: string;
  resume?: string;
}

/** The position checked (the same rules for both paths), or why it is refused. */
export function checkPosition(given: Position): Pick<Join, "since" | "epoch" | "resume"> | Failure {
  let since: number | undefined;
  if (given.since !== undefined) {
    since = Number(given.since);
    if (!Number.isSafeInteger(since) || since < 0) return failure("bad_request", "since must be a non-negative integer");
  }
  if (given.resume !== undefined && given.resume.length > MAX_RESUME_TOKEN_LENGTH) {
    return failure("bad_request", `resume must be at most ${MAX_RESUME_TOKEN_LENGTH} characters (the welcome's resume token)`);
  }
  return {
    ...(since === undefined ? {} : { since }),
    ...(given.epoch === undefined ? {} : { epoch: given.epoch.slice(0, 64) }),
    ...(given.resume === undefined ? {} : { resume: given.resume }),
  };
}

/**
 * Asks the room (a giant room's shard, picked at random: shards.ts) for a socket of this member:
 * a 101 with it, or the room's refusal (a ban, an onJoin hook) as its error answer. The
 * capabilities were checked by the caller.
 */
export async function joinRoom(
  rooms: DurableObjectNamespace<Room>,
  config: Config,
  room: string,
  identity: Identity,
  caps: Set<Capability>,
  position: Position,
): Promise<Response | Failure> {
  const checked = checkPosition(position);
  if ("code" in checked) return checked;
  const shards = shardsFor(config, room);
  const index = Math.floor(Math.random() * shards);
  const payload: Join = {
    room,
    user: { id: identity.id, name: identity.name },
    caps: [...caps],
    exp: identity.exp,
    ...checked,
    ...(shards < 2 ? {} : { shard: { index, count: shards } }),
  };
  const stub = roomStub(rooms, shards < 2 ? room : shardName(room, index));
  // A fresh request: nothing the client sent (headers included) reaches the room but this.
  const res = await stub.fetch("https://room.internal/ws", {
    headers: { upgrade: "websocket", [JOIN_HEADER]: JSON.stringify(payload) },
  });
  // A refusal (a ban) comes back with immutable headers: copied, so CORS can be added to it.
  return res.status === 101 ? res : new Response(res.body, res);
}
