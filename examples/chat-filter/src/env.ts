import type { RoomEnv } from "edgerooms/server";
import type { ChatRoom } from "./chat-room";

/**
 * This Worker's bindings (wrangler.toml's CHAT) and the vars edgerooms reads (`RoomEnv`:
 * AUTH_SECRET, HISTORY_LIMIT and the rest, as strings). Written by hand; `npx wrangler types`
 * generates the bindings' half of it.
 */
export interface Env extends RoomEnv {
  CHAT: DurableObjectNamespace<ChatRoom>;
}
