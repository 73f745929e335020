// The standalone server, as wrangler deploys it: an ordinary user of `edgerooms/server` (the
// same code a user's Worker runs), with the rooms at the root and the demo page in `public/`.
import { createRooms, Room } from "./server/index";
import type { Env } from "./env";
import { errorResponse, failure } from "./http";

export { Room };

const rooms = createRooms({ room: "ROOMS", path: "" });

export default {
  async fetch(request: Request, env: Env, ctx?: ExecutionContext): Promise<Response> {
    const answer = await rooms.fetch(request, env, ctx);
    if (answer) return answer;
    const url = new URL(request.url);
    return errorResponse(failure("not_found", `no route for ${request.method} ${url.pathname}`));
  },
  queue: (batch: MessageBatch<string>, env: Env) => rooms.queue(batch, env),
} satisfies ExportedHandler<Env, string>;
