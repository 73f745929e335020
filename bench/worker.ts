// The bench's Worker (bench/wrangler.toml, run only by `wrangler dev`): the production Worker and
// Room as deployed, plus what the bench measures them against, so none of it ships in src/. Each
// Room variant is mounted the way a user mounts theirs, with createRooms under its own prefix.
//   /floor/:room/ws            the floor (floor.ts)
//   /durable-floor/:room/ws    the durable floor: the floor plus a seq and one INSERT per message (floor.ts)
//   /unbatched/rooms/:room/ws  a Room that sends frame by frame
//   /counted/rooms/:room/ws    a Room whose storage calls are counted (counted.ts)
//   /hooked/rooms/:room/ws     a Room whose onPublish accepts every publish at once: what a hook costs
//   /bench/storage-ops         those counts so far (JSON), reset on each read
//   /bench/hook-calls          HookedRoom's onPublish calls so far (JSON), reset on each read
//   anything else              the production Worker
import worker from "../src/index";
import type { Env } from "../src/env";
import { createRooms, Room } from "../src/server/index";
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

/**
 * onPublish calls so far, read (and reset) at /bench/hook-calls: the bench checks that the hooked
 * target's every publish went through the hook, so the target cannot quietly measure the plain
 * room. Module state, like counted.ts's: under wrangler dev every object runs in this one isolate.
 */
let hookCalls = 0;

/** The real room with about the cheapest hook a user can write (accept at once): the `hooked` target against `room`. */
export class HookedRoom extends Room {
  override onPublish(): void {
    hookCalls++;
  }
}

type BenchEnv = Env & {
  FLOOR: DurableObjectNamespace<FloorRoom>;
  DURABLE_FLOOR: DurableObjectNamespace<DurableFloorRoom>;
};

const variants = [
  createRooms({ room: "UNBATCHED", path: "/unbatched" }),
  createRooms({ room: "COUNTED", path: "/counted" }),
  createRooms({ room: "HOOKED", path: "/hooked" }),
];

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/floor/")) return env.FLOOR.get(env.FLOOR.idFromName(url.pathname)).fetch(request);
    if (url.pathname.startsWith("/durable-floor/")) return env.DURABLE_FLOOR.get(env.DURABLE_FLOOR.idFromName(url.pathname)).fetch(request);
    if (url.pathname === "/bench/storage-ops") return Response.json(takeOps());
    if (url.pathname === "/bench/hook-calls") {
      const calls = hookCalls;
      hookCalls = 0;
      return Response.json({ calls });
    }
    for (const rooms of variants) {
      const answer = await rooms.fetch(request, env, ctx);
      if (answer) return answer;
    }
    return worker.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<BenchEnv>;
