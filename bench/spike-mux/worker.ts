// The measuring spike of #22 (one connection, many rooms): throwaway prototypes of the designs,
// for `wrangler dev` in this folder only (run.mjs starts it). None of this is the feature: no
// resume, no leave, no per-room refusal on the handle, no refresh; tokens are checked once at
// connect and each subscribe against the token's `rooms` claim, nothing more. The wire format is
// the spike's own:
//   client → server  {"room":R,"type":"subscribe"}  or  {"room":R, ...a client frame of protocol.md}
//   server → client  {"room":R,"frames":<the room's frame or array of frames, as raw text>}
//                    {"room":R,"subscribed":true}   (design b; a and c relay the room's welcome)
// Routes:
//   /rooms/:room/ws     the real room, direct (the baseline), as createRooms mounts it
//   /a/connect          design (a): the Worker holds the client's socket and one upstream socket per room
//   /c/connect          the same relay in a per-connection Durable Object (RelayConnection)
//   /b/connect          design (b): a per-connection Durable Object (PushConnection, hibernatable)
//                       that rooms push to by RPC; its rooms are PushRoom, not the real room
//   /push/:room/ws      PushRoom direct (design b's baseline: the same room, sockets instead of RPC)
import { DurableObject } from "cloudflare:workers";
import { capabilitiesFor, tokenFrom, verifyToken, type Identity } from "../../src/auth";
import { loadConfig } from "../../src/config";
import { isFailure } from "../../src/http";
import { createRooms, Room } from "../../src/server/index";
import { answerClose, JOIN_HEADER, roomStub, type Join } from "../../src/room/room";

export { Room };

type SpikeEnv = {
  ROOMS: DurableObjectNamespace<Room>;
  RELAY: DurableObjectNamespace<RelayConnection>;
  PUSHCONN: DurableObjectNamespace<PushConnection>;
  PUSH: DurableObjectNamespace<PushRoom>;
} & Record<string, unknown>;

const rooms = createRooms({ room: "ROOMS" });
/**
 * RPCs PushRoom has sent to connection objects so far, read (and reset) at /spike/rpcs. Module
 * state: under wrangler dev every object runs in this one isolate.
 */
let rpcs = 0;
const IDENTITY_HEADER = "x-spike-identity";

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const design = /^\/([abc])\/connect$/.exec(url.pathname)?.[1];
    if (design) {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("upgrade required", { status: 426 });
      const identity = await verifyToken(tokenFrom(request, url), loadConfig(env));
      if (isFailure(identity)) return new Response(identity.message, { status: 401 });
      if (design === "a") {
        const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
        server.accept();
        relay(server, identity, env.ROOMS);
        return new Response(null, { status: 101, webSocket: client });
      }
      const ns = design === "c" ? env.RELAY : env.PUSHCONN;
      const stub = ns.get(ns.newUniqueId());
      return stub.fetch("https://conn.internal/connect", { headers: { upgrade: "websocket", [IDENTITY_HEADER]: JSON.stringify(identity) } });
    }
    if (url.pathname === "/spike/rpcs") {
      const sent = rpcs;
      rpcs = 0;
      return Response.json({ rpcs: sent });
    }
    const push = /^\/push\/([^/]+)\/ws$/.exec(url.pathname)?.[1];
    if (push) return env.PUSH.get(env.PUSH.idFromName(push)).fetch(request);
    return (await rooms.fetch(request, env, ctx)) ?? new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler<SpikeEnv>;

/** A subscribe frame's room, checked against the token's claim; null if the frame is anything else. */
function subscribeTo(identity: Identity, frame: { room?: unknown; type?: unknown }): { room: string; join: Join } | null {
  if (frame.type !== "subscribe" || typeof frame.room !== "string") return null;
  const caps = capabilitiesFor(identity, frame.room);
  if (!caps.has("subscribe")) return null;
  return { room: frame.room, join: { room: frame.room, user: { id: identity.id, name: identity.name }, caps: [...caps], exp: identity.exp } };
}

/**
 * Designs (a) and (c): the client's socket, relayed to one upstream socket per room. Room frames
 * go back wrapped by string concatenation (no parse); client frames are parsed once for their
 * room and sent on without it.
 */
function relay(client: WebSocket, identity: Identity, ns: DurableObjectNamespace<Room>): void {
  const upstream = new Map<string, WebSocket | Promise<WebSocket | null>>();
  client.addEventListener("message", (event) => {
    let frame: { room?: unknown; type?: unknown } & Record<string, unknown>;
    try {
      frame = JSON.parse(event.data as string) as typeof frame;
    } catch {
      return;
    }
    const sub = subscribeTo(identity, frame);
    if (sub) {
      if (upstream.has(sub.room)) return;
      const prefix = `{"room":${JSON.stringify(sub.room)},"frames":`;
      const opening = roomStub(ns, sub.room)
        .fetch("https://room.internal/ws", { headers: { upgrade: "websocket", [JOIN_HEADER]: JSON.stringify(sub.join) } })
        .then((res) => {
          const ws = res.webSocket;
          if (!ws) {
            client.send(`${prefix}{"type":"error","code":"refused","status":${res.status}}}`);
            upstream.delete(sub.room);
            return null;
          }
          ws.accept();
          ws.addEventListener("message", (e) => client.send(`${prefix}${e.data as string}}`));
          ws.addEventListener("close", () => upstream.delete(sub.room));
          upstream.set(sub.room, ws);
          return ws;
        });
      upstream.set(sub.room, opening);
      return;
    }
    if (typeof frame.room !== "string") return;
    const target = upstream.get(frame.room);
    if (!target) return;
    const { room, ...rest } = frame;
    void room;
    const text = JSON.stringify(rest);
    if (target instanceof Promise) void target.then((ws) => ws?.send(text));
    else target.send(text);
  });
  client.addEventListener("close", () => {
    for (const ws of upstream.values()) {
      if (ws instanceof Promise) void ws.then((w) => w?.close(1000));
      else ws.close(1000);
    }
    upstream.clear();
  });
}

/**
 * The relay as a per-connection Durable Object (the third variant): its outbound sockets are
 * ordinary (not hibernatable), so it stays in memory while the connection is open; the rooms
 * behind it still hibernate.
 */
export class RelayConnection extends DurableObject<SpikeEnv> {
  override fetch(request: Request): Response {
    const identity = JSON.parse(request.headers.get(IDENTITY_HEADER)!) as Identity;
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    server.accept();
    relay(server, identity, this.env.ROOMS);
    return new Response(null, { status: 101, webSocket: client });
  }
}

/**
 * Design (b)'s connection: holds the client's socket through the Hibernation API, subscribes by
 * RPC, and is pushed each room message by RPC (deliver / deliverAll). One client per object.
 */
export class PushConnection extends DurableObject<SpikeEnv> {
  #socket: WebSocket | undefined;

  override fetch(request: Request): Response {
    const identity = request.headers.get(IDENTITY_HEADER)!;
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment(identity);
    this.#socket = server;
    return new Response(null, { status: 101, webSocket: client });
  }

  #client(): WebSocket | undefined {
    return (this.#socket ??= this.ctx.getWebSockets()[0]);
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const identity = JSON.parse(ws.deserializeAttachment() as string) as Identity;
    let frame: { room?: unknown; type?: unknown };
    try {
      frame = JSON.parse(message as string) as typeof frame;
    } catch {
      return;
    }
    const sub = subscribeTo(identity, frame);
    if (!sub) return; // the spike measures delivery only: publishes go to the room directly
    const push = this.env.PUSH;
    await push.get(push.idFromName(sub.room)).subscribe(sub.room, this.ctx.id.toString());
    ws.send(`{"room":${JSON.stringify(sub.room)},"subscribed":true}`);
  }

  override webSocketClose(ws: WebSocket, code: number): void {
    answerClose(ws, code);
  }

  /** One room message (its frame as text). */
  deliver(room: string, text: string): void {
    this.#client()?.send(`{"room":${JSON.stringify(room)},"frames":${text}}`);
  }

  /** A turn's room messages, in order. */
  deliverAll(room: string, texts: string[]): void {
    this.#client()?.send(`{"room":${JSON.stringify(room)},"frames":[${texts.join(",")}]}`);
  }
}

/**
 * Design (b)'s room: what the real room does on the hot path that matters here (a seq, one SQLite
 * INSERT, one serialization per message), then each message to each direct socket (ws.send) and
 * to each subscribed connection object (RPC). Subscribers are kept in SQLite too, so a woken room
 * knows them. No auth on its direct sockets: the spike's publisher and baseline clients only.
 */
export class PushRoom extends DurableObject<SpikeEnv> {
  #seq: number;
  #subscribers: Map<string, DurableObjectStub<PushConnection>> | undefined;
  /** batch mode: texts queued this turn, flushed in one RPC per subscriber */
  #queued: string[] = [];
  #room = "";

  constructor(ctx: DurableObjectState, env: SpikeEnv) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, text TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS subscribers (id TEXT PRIMARY KEY)");
    sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    this.#seq = Number(sql.exec<{ s: number | null }>("SELECT MAX(seq) AS s FROM messages").one().s ?? 0);
    this.#room = sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'room'").toArray()[0]?.v ?? "";
  }

  #subs(): Map<string, DurableObjectStub<PushConnection>> {
    if (!this.#subscribers) {
      this.#subscribers = new Map();
      for (const { id } of this.ctx.storage.sql.exec<{ id: string }>("SELECT id FROM subscribers")) this.#add(id);
    }
    return this.#subscribers;
  }

  #add(id: string): void {
    const ns = this.env.PUSHCONN;
    this.#subscribers!.set(id, ns.get(ns.idFromString(id)));
  }

  subscribe(room: string, connection: string): void {
    if (!this.#room) {
      this.#room = room;
      this.ctx.storage.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('room', ?)", room);
    }
    this.#subs();
    if (this.#subscribers!.has(connection)) return;
    this.ctx.storage.sql.exec("INSERT OR IGNORE INTO subscribers (id) VALUES (?)", connection);
    this.#add(connection);
  }

  override fetch(request: Request): Response {
    if (!this.#room) {
      this.#room = new URL(request.url).pathname.split("/")[2] ?? "";
      this.ctx.storage.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('room', ?)", this.#room);
    }
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server);
    server.send(`{"type":"welcome","room":${JSON.stringify(this.#room)},"seq":${this.#seq}}`);
    return new Response(null, { status: 101, webSocket: client });
  }

  override webSocketMessage(_ws: WebSocket, message: string | ArrayBuffer): void {
    const frame = JSON.parse(message as string) as { type?: string; data?: unknown; id?: string };
    if (frame.type !== "publish") return;
    const seq = ++this.#seq;
    const text = JSON.stringify({ type: "message", seq, ts: Date.now(), from: { id: "publisher", name: "publisher" }, data: frame.data });
    this.ctx.storage.sql.exec("INSERT INTO messages (seq, text) VALUES (?, ?)", seq, text);
    for (const ws of this.ctx.getWebSockets()) ws.send(text);
    const subs = this.#subs();
    if (subs.size === 0) return;
    // A room named *-batch-* sends one RPC per recipient per turn instead (the run's bBatch design).
    if (this.#room.includes("-batch-")) {
      if (this.#queued.push(text) === 1) setTimeout(() => this.#flush(), 0);
      return;
    }
    // One RPC per recipient per message, not awaited: calls on one stub arrive in order (E-order).
    rpcs += subs.size;
    for (const stub of subs.values()) stub.deliver(this.#room, text).catch(() => {});
  }

  #flush(): void {
    const texts = this.#queued;
    this.#queued = [];
    rpcs += this.#subs().size;
    for (const stub of this.#subs().values()) stub.deliverAll(this.#room, texts).catch(() => {});
  }

  override webSocketClose(ws: WebSocket, code: number): void {
    answerClose(ws, code);
  }
}
