import type { RoomEnv } from "./room/room";

/** Bindings from wrangler.toml, plus the vars and secrets that `config.ts` parses (as strings): the rooms' own, and the demo's assets. */
export type Env = RoomEnv & {
  ASSETS?: Fetcher;
};
