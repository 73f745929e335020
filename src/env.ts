import type { ConfigSchema } from "./config";
import type { Room } from "./room/room";
import type { z } from "zod";

/** Bindings from wrangler.toml, plus the vars and secrets that `config.ts` parses (as strings). */
export type Env = {
  ROOMS: DurableObjectNamespace<Room>;
  ASSETS?: Fetcher;
  /** Webhook events, from the rooms to this Worker's queue consumer (room/webhooks.ts). */
  WEBHOOKS?: Queue<string>;
} & { [K in keyof z.input<typeof ConfigSchema>]?: string };
