// A Worker of its own (GET /hello) with edgerooms' rooms mounted beside it at /rt: /rt/health,
// /rt/rooms/:room/ws, /rt/rooms/:room/messages and the rest of edgerooms' routes.
import { createRooms } from "edgerooms/server";
import type { Env } from "./env";

// wrangler binds the Durable Object class by the name the entry module exports it under.
export { ChatRoom } from "./chat-room";

// At module top level, where the runtime evaluates this module in every isolate: the ChatRoom
// objects read `config` from here too (a chat message needs no more than 16 KiB; the env's
// MAX_MESSAGE_BYTES, if any, is overridden for the Worker's checks and the rooms' alike).
const rooms = createRooms({ room: "CHAT", path: "/rt", config: { MAX_MESSAGE_BYTES: 16_384 } });

export default {
  async fetch(request, env, ctx) {
    const answer = await rooms.fetch(request, env, ctx);
    if (answer) return answer;
    const url = new URL(request.url);
    if (request.method === "GET" && url.pathname === "/hello") return Response.json({ hello: "chat-filter", rooms: "/rt" });
    return new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler<Env>;
