import type { ConfigSchema } from "./config";
import type { FloorRoom } from "./floor";
import type { Room } from "./room/room";
import type { z } from "zod";

/** Bindings from wrangler.toml, plus the vars and secrets that `config.ts` parses (as strings). */
export type Env = {
  ROOMS: DurableObjectNamespace<Room>;
  FLOOR: DurableObjectNamespace<FloorRoom>;
  ASSETS?: Fetcher;
} & { [K in keyof z.input<typeof ConfigSchema>]?: string };
