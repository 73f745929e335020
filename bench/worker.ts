// The bench's Worker (bench/wrangler.toml, run only by `wrangler dev`): the production Worker and
// Room as deployed, plus what the bench measures them against, so none of it ships in src/.
//   /floor/:room/ws            the floor (floor.ts)
//   /unbatched/rooms/:room/ws  the production Worker in front of a Room that sends frame by frame
//   anything else              the production Worker
import worker from "../src/index";
import type { Env } from "../src/env";
import { Room } from "../src/room/room";
import type { FloorRoom } from "./floor";

export { Room };
export { FloorRoom } from "./floor";

/** The real room with batching off: what batching is worth, from the same run. */
export class UnbatchedRoom extends Room {
  protected override get batching(): boolean {
    return false;
  }
}

type BenchEnv = Env & {
  FLOOR: DurableObjectNamespace<FloorRoom>;
  /** UnbatchedRoom's: the Worker sees a Room (it is one) */
  UNBATCHED: DurableObjectNamespace<Room>;
};

const UNBATCHED_PATH = "/unbatched/";
/** One derived env per env, as the Worker's config cache keys on the env object. */
const unbatchedEnvs = new WeakMap<BenchEnv, Env>();

export default {
  async fetch(request: Request, env: BenchEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/floor/")) return env.FLOOR.get(env.FLOOR.idFromName(url.pathname)).fetch(request);
    if (!url.pathname.startsWith(UNBATCHED_PATH)) return worker.fetch(request, env);
    const unbatched = unbatchedEnvs.get(env) ?? { ...env, ROOMS: env.UNBATCHED };
    unbatchedEnvs.set(env, unbatched);
    url.pathname = url.pathname.slice(UNBATCHED_PATH.length - 1);
    return worker.fetch(new Request(url, request), unbatched);
  },
} satisfies ExportedHandler<BenchEnv>;
