// The benchmark's floor: the least a hibernating room can do (accept, auto-response, loop and
// send), served at /floor/:room/ws by the bench Worker (worker.ts), so the room's figures can be
// reported as ratios against it from the same run.
import { DurableObject } from "cloudflare:workers";

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
}
