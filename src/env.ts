import type { Room, RoomEnv } from "./room/room";

/** The standalone server's bindings (wrangler.toml), plus the vars and secrets that `config.ts` parses (as strings): its rooms, and the demo's assets. */
export type Env = RoomEnv & {
  ROOMS: DurableObjectNamespace<Room>;
  ASSETS?: Fetcher;
};
