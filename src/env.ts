import type { Room } from "./room";
import type { FloorRoom } from "./floor";

/** Bindings from wrangler.toml plus the vars and secrets `config.ts` parses. */
export interface Env {
  ROOMS: DurableObjectNamespace<Room>;
  FLOOR: DurableObjectNamespace<FloorRoom>;
  ASSETS?: Fetcher;
  [key: string]: unknown;
}
