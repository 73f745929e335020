// The bench's Worker (bench/wrangler.toml, run only by `wrangler dev`): the production Worker and
// Room as deployed, plus what the bench measures them against, so none of it ships in src/.
//   /floor/:room/ws            the floor (floor.ts)
//   /durable-floor/:room/ws    the durable floor: the floor plus a seq and one INSERT per message (floor.ts)
//   /unbatched/rooms/:room/ws  the production Worker in front of a Room that sends frame by frame
//   /counted/rooms/:room/ws    the production Worker in front of a Room whose storage calls are counted (counted.ts)
//   /bench/storage-ops         those counts so far (JSON), reset on each read
//   anything else              the production Worker
import worker from "../src/index";
import type { Env } from "../src/env";
import { Room } from "../src/room/room";
import { takeOps } from "./counted";
import type { DurableFloorRoom, FloorRoom } from "./floor";

export { Room };
export { CountedRoom } from "./counted";
export { DurableFloorRoom, FloorRoom } from "./floor";

/** The real room with batching off: what batching is worth, from the same run. */
export class UnbatchedRoom extends Room {
  protected override get batching(): boolean {
    return false;
  }
}

type BenchEnv = Env & {
  FLOOR: DurableObjectNamespace<FloorRoom>;
  DURABLE_FLOOR: DurableObjectNamespace<DurableFloorRoom>;
  /** UnbatchedRoom's and CountedRoom's: the Worker sees a Room (each is one) */
  UNBATCHED: DurableObjectNamespace<Room>;
  COUNTED: DurableObjectNamespace<Room>;
};

/** Path prefixes served by the production Worker in front of another Room class. */
const VARIANTS = { "/unbatched/": "UNBATCHED", "/counted/": "COUNTED" } as const;
/** One derived env per env and variant, as the Worker's config cache keys on the env object. */
const variantEnvs = new WeakMap<BenchEnv, Map<string, Env>>();

export default {
  async fetch(request: Request, env: BenchEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/floor/")) return env.FLOOR.get(env.FLOOR.idFromName(url.pathname)).fetch(request);
    if (url.pathname.startsWith("/durable-floor/")) return env.DURABLE_FLOOR.get(env.DURABLE_FLOOR.idFromName(url.pathname)).fetch(request);
    if (url.pathname === "/bench/storage-ops") return Response.json(takeOps());
    const prefix = (Object.keys(VARIANTS) as (keyof typeof VARIANTS)[]).find((p) => url.pathname.startsWith(p));
    if (!prefix) return worker.fetch(request, env);
    let envs = variantEnvs.get(env);
    if (!envs) variantEnvs.set(env, (envs = new Map<string, Env>()));
    let variant = envs.get(prefix);
    if (!variant) envs.set(prefix, (variant = { ...env, ROOMS: env[VARIANTS[prefix]] }));
    url.pathname = url.pathname.slice(prefix.length - 1);
    return worker.fetch(new Request(url, request), variant);
  },
} satisfies ExportedHandler<BenchEnv>;
