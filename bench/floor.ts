// The benchmark's floors, served by the bench Worker (worker.ts) so the room's figures can be
// reported as ratios against them from the same run:
//   FloorRoom (/floor/:room/ws): the least a hibernating room can do (accept, auto-response, loop
//   and send).
//   DurableFloorRoom (/durable-floor/:room/ws): the floor plus what no room with gap-free resume
//   can skip: a seq per message and one SQLite INSERT of it before the send (the output gate holds
//   the send until the write is durable). What the room costs beyond this is what the room adds.
import { DurableObject } from "cloudflare:workers";
import { answerClose } from "../src/room/room";

export class FloorRoom extends DurableObject<unknown> {
  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  override fetch(): Response {
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server);
    server.send('{"type":"welcome"}');
    return new Response(null, { status: 101, webSocket: client });
  }

  override webSocketMessage(_ws: WebSocket, message: string | ArrayBuffer): void {
    for (const ws of this.ctx.getWebSockets()) ws.send(message);
  }

  /**
   * Answers the client's Close as the room does: without it every client of a floor waited out
   * the load generator's 5 s before it gave up, after each measured run.
   */
  override webSocketClose(ws: WebSocket, code: number): void {
    answerClose(ws, code);
  }
}

export class DurableFloorRoom extends FloorRoom {
  #seq: number;

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env);
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, frame TEXT NOT NULL)`);
    this.#seq = Number(ctx.storage.sql.exec(`SELECT COALESCE(MAX(seq), 0) AS s FROM messages`).one().s);
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.ctx.storage.sql.exec(`INSERT INTO messages (seq, frame) VALUES (?, ?)`, ++this.#seq, message);
    super.webSocketMessage(ws, message);
  }
}
