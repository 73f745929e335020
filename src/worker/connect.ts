// GET /connect: one client socket for many rooms (#22, design (a) of docs/architecture.md). The
// Worker holds the client's socket and, per subscription, one ordinary socket to the room,
// opened by the join a direct upgrade takes (join.ts): the room cannot tell the two apart, so its
// order, resume, capabilities, bans, hooks, rate limits, presence and hibernation hold unchanged.
// The relay keeps no room state: positions live in the client, which resubscribes with them.
//
// Room frames go back to the client wrapped by concatenation, never parsed here; a client's
// frame for a room is cut out of its envelope the same way when written as the SDK writes it.
import { capabilitiesFor, verifyToken, type Identity } from "../auth";
import type { Config } from "../config";
import { failure, isFailure, type Failure } from "../http";
import {
  CloseCode,
  ConnectionFrame,
  MAX_CONTROL_BYTES,
  MAX_EARLY_FRAMES,
  OPENING_AT_ONCE,
  overBytes,
  PING,
  PONG,
  ROOM_NAME,
  RoomEnvelope,
  type ConnectionServerFrame,
  type ErrorCode,
  type HttpError,
  type SubscribeFrame,
} from "../protocol";
import { TokenBucket } from "../room/rate-limit";
import type { Room } from "../room/room";
import type { z } from "zod";
import { joinRoom } from "./join";

/** The envelope's fixed start, as the SDK and the server write it (protocol.ts RoomEnvelope). */
const ENVELOPE = /^\{"sub":([0-9]{1,10}),"data":/;
/** The longest a timer may be set for; a later expiry re-arms it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Subscription {
  readonly id: number;
  readonly room: string;
  readonly position: Pick<z.infer<typeof SubscribeFrame>, "since" | "epoch" | "resume">;
  state: "waiting" | "opening" | "open" | "ended";
  ws?: WebSocket;
  /** Frames the client sent before the room's socket opened, sent on when it does. */
  readonly early: string[];
  /** The token the room's socket was opened with; a refresh since then is sent on as it opens. */
  token: string;
}

/** Accepts the client's socket (auth, origin and the upgrade limit were checked by the route). */
export function acceptConnection(rooms: DurableObjectNamespace<Room>, config: Config, identity: Identity, token: string): Response {
  const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
  server.accept();
  new Relay(server, rooms, config, identity, token);
  return new Response(null, { status: 101, webSocket: client });
}

class Relay {
  readonly #subs = new Map<number, Subscription>();
  /** Subscriptions waiting for one of the OPENING_AT_ONCE upgrade slots, in the order asked. */
  readonly #waiting: Subscription[] = [];
  #opening = 0;
  /** Frames relayed, both ways, against MAX_FRAMES_PER_CONNECTION. */
  #frames = 0;
  #lastSeen = Date.now();
  /** Subscribes, unsubscribes and refreshes: a whole connection's worth of rooms at once, then the socket's rate. */
  readonly #control: TokenBucket;
  #expiry: ReturnType<typeof setTimeout> | undefined;
  readonly #idle: ReturnType<typeof setInterval>;
  #ended = false;

  readonly #client: WebSocket;
  readonly #rooms: DurableObjectNamespace<Room>;
  readonly #config: Config;
  /** Who the connection is and what it may join: replaced by a refresh. */
  #identity: Identity;
  #token: string;

  constructor(client: WebSocket, rooms: DurableObjectNamespace<Room>, config: Config, identity: Identity, token: string) {
    this.#client = client;
    this.#rooms = rooms;
    this.#config = config;
    this.#identity = identity;
    this.#token = token;
    this.#control = new TokenBucket(config.RATE_LIMIT_PER_SEC, config.MAX_ROOMS_PER_CONNECTION + config.RATE_LIMIT_BURST);
    client.addEventListener("message", (e) => this.#onMessage(e.data as string | ArrayBuffer));
    client.addEventListener("close", () => this.#end());
    client.addEventListener("error", () => this.#end());
    const idleMs = config.IDLE_TIMEOUT_SEC * 1000;
    this.#idle = setInterval(
      () => {
        if (Date.now() - this.#lastSeen > idleMs) this.#close(CloseCode.idle, "idle timeout");
      },
      Math.min(idleMs / 2, 30_000),
    );
    this.#send({
      type: "connected",
      user: { id: identity.id, name: identity.name },
      exp: identity.exp,
      maxRooms: config.MAX_ROOMS_PER_CONNECTION,
    });
    this.#expireAt(identity.exp);
  }

  #onMessage(data: string | ArrayBuffer): void {
    this.#lastSeen = Date.now();
    if (typeof data !== "string") return this.#error("bad_request", "binary frames are not accepted");
    if (data === PING) {
      // The rooms answer their pings without waking: each upstream socket stays alive as long as this one.
      trySend(this.#client, PONG);
      for (const sub of this.#subs.values()) if (sub.state === "open") trySend(sub.ws!, PING);
      return;
    }
    if (!this.#spend()) return;
    const envelope = ENVELOPE.exec(data);
    if (envelope && data.endsWith("}")) return this.#toRoom(Number(envelope[1]), data.slice(envelope[0].length, -1));
    if (overBytes(data, MAX_CONTROL_BYTES + this.#config.MAX_MESSAGE_BYTES)) return this.#error("too_large", "frame is too large");
    let raw: unknown;
    try {
      raw = JSON.parse(data);
    } catch {
      return this.#error("bad_request", "frame is not JSON");
    }
    const wrapped = RoomEnvelope.safeParse(raw);
    if (wrapped.success && !(raw as { type?: unknown }).type) return this.#toRoom(wrapped.data.sub, JSON.stringify(wrapped.data.data));
    if (overBytes(data, MAX_CONTROL_BYTES)) return this.#error("too_large", `a control frame is at most ${MAX_CONTROL_BYTES} bytes`);
    const parsed = ConnectionFrame.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
      const id = (raw as { id?: unknown } | null)?.id;
      return this.#error("bad_request", `${issue?.message ?? "invalid frame"}${where}`, typeof id === "string" ? id.slice(0, 64) : undefined);
    }
    const frame = parsed.data;
    if (!this.#control.take()) {
      const why = `more than ${this.#control.burst} subscribes, unsubscribes and refreshes at once or ${this.#control.ratePerSec} per second`;
      if (frame.type === "subscribe") return this.#unsubscribed(frame.sub, frame.room, failure("rate_limited", why));
      return this.#error("rate_limited", why, frame.type === "refresh" ? frame.id : undefined);
    }
    switch (frame.type) {
      case "subscribe":
        return this.#subscribe(frame);
      case "unsubscribe":
        return this.#unsubscribe(frame.sub);
      case "refresh":
        this.#refresh(frame.token, frame.id).catch((err: unknown) => {
          console.error("edgerooms: a connection's refresh failed:", err);
          this.#error("internal", "refresh failed", frame.id);
        });
        return;
    }
  }

  /** Counts a relayed frame; past the budget, the connection closes so the client resumes on a fresh request. */
  #spend(): boolean {
    if (++this.#frames <= this.#config.MAX_FRAMES_PER_CONNECTION) return true;
    this.#close(CloseCode.reconnect, "connection budget spent: reconnect");
    return false;
  }

  #subscribe(frame: z.infer<typeof SubscribeFrame>): void {
    const { sub: id, room } = frame;
    if (this.#subs.has(id)) return this.#error("bad_request", `subscription ${id} is in use on this connection`);
    if (!ROOM_NAME.test(room)) return this.#unsubscribed(id, room, failure("bad_request", "room name must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"));
    if (Date.now() >= this.#identity.exp * 1000) return this.#close(CloseCode.tokenExpired, "token expired");
    if (!capabilitiesFor(this.#identity, room).has("subscribe")) {
      return this.#unsubscribed(id, room, failure("forbidden", `token lacks the subscribe capability for room ${room}`));
    }
    const max = this.#config.MAX_ROOMS_PER_CONNECTION;
    if (this.#subs.size >= max)
      return this.#unsubscribed(id, room, failure("too_many_rooms", `this connection already holds ${max} rooms (MAX_ROOMS_PER_CONNECTION)`));
    const sub: Subscription = {
      id,
      room,
      position: { since: frame.since, epoch: frame.epoch, resume: frame.resume },
      state: "waiting",
      early: [],
      token: this.#token,
    };
    this.#subs.set(id, sub);
    this.#waiting.push(sub);
    this.#pump();
  }

  /** Starts waiting upgrades while fewer than OPENING_AT_ONCE are in flight. */
  #pump(): void {
    while (!this.#ended && this.#opening < OPENING_AT_ONCE && this.#waiting.length > 0) {
      const sub = this.#waiting.shift()!;
      if (sub.state !== "waiting") continue;
      sub.state = "opening";
      this.#opening++;
      this.#open(sub)
        .catch((err: unknown) => {
          console.error(`edgerooms: a connection's join of room ${sub.room} failed:`, err);
          if (!this.#ended) this.#unsubscribed(sub.id, sub.room, failure("internal", "the room could not be joined"), sub);
        })
        .finally(() => {
          this.#opening--;
          this.#pump();
        })
        .catch(() => {});
    }
  }

  async #open(sub: Subscription): Promise<void> {
    // Checked again: a refresh may have changed the token since the subscribe.
    const caps = capabilitiesFor(this.#identity, sub.room);
    if (!caps.has("subscribe")) {
      return this.#unsubscribed(sub.id, sub.room, failure("forbidden", `token lacks the subscribe capability for room ${sub.room}`), sub);
    }
    const token = this.#token;
    const res = await joinRoom(this.#rooms, this.#config, sub.room, this.#identity, caps, sub.position);
    const ws = res instanceof Response ? res.webSocket : null;
    if (sub.state !== "opening") {
      // Left, or the connection ended, while the room was answering.
      if (ws) {
        ws.accept();
        ws.close(1000, "left");
      }
      return;
    }
    if (!ws) return this.#unsubscribed(sub.id, sub.room, isFailure(res) ? res : await refusalOf(res), sub);
    ws.accept();
    sub.ws = ws;
    sub.state = "open";
    const prefix = `{"sub":${sub.id},"data":`;
    ws.addEventListener("message", (e) => {
      if (typeof e.data !== "string" || e.data === PONG || !this.#spend()) return;
      trySend(this.#client, `${prefix}${e.data}}`);
    });
    ws.addEventListener("close", (e) => this.#roomClosed(sub, e.code, e.reason));
    ws.addEventListener("error", () => this.#roomClosed(sub, 1011, "the room's socket failed"));
    if (token !== this.#token) this.#refreshRoom(sub);
    for (const text of sub.early.splice(0)) trySend(ws, text);
  }

  #toRoom(id: number, text: string): void {
    const sub = this.#subs.get(id);
    if (!sub) return this.#error("bad_request", `no subscription ${id} on this connection`);
    if (sub.state === "open") return trySend(sub.ws!, text);
    if (sub.early.length >= MAX_EARLY_FRAMES)
      return this.#error("rate_limited", `subscription ${id} is still joining: at most ${MAX_EARLY_FRAMES} frames wait for it`);
    sub.early.push(text);
  }

  #unsubscribe(id: number): void {
    const sub = this.#subs.get(id);
    if (!sub) return this.#error("bad_request", `no subscription ${id} on this connection`);
    this.#subs.delete(id);
    sub.state = "ended";
    if (sub.ws) closeQuietly(sub.ws, 1000, "left");
    this.#send({ type: "unsubscribed", sub: id, room: sub.room });
  }

  /** The room closed its socket (a kick, an expiry, a restart): the client decides whether to resubscribe. */
  #roomClosed(sub: Subscription, code: number, reason: string): void {
    if (sub.state === "ended") return;
    sub.state = "ended";
    this.#subs.delete(sub.id);
    this.#send({ type: "unsubscribed", sub: sub.id, room: sub.room, close: code, reason });
  }

  /** Tells the client a subscription ended without a room's close, and forgets it (`sub`, once it was held). */
  #unsubscribed(id: number, room: string, why: Failure, sub?: Subscription): void {
    if (sub) {
      sub.state = "ended";
      this.#subs.delete(sub.id);
    }
    this.#send({ type: "unsubscribed", sub: id, room, code: why.code, message: why.message });
  }

  /** A fresh token for the whole connection: checked here, then sent to every room, which checks it against its own grants. */
  async #refresh(token: string, id: string | undefined): Promise<void> {
    const identity = await verifyToken(token, this.#config);
    if (this.#ended) return;
    if (isFailure(identity)) return this.#error(identity.code, `refresh refused: ${identity.message}`, id);
    if (identity.id !== this.#identity.id) return this.#error("unauthorized", "refresh refused: the token is for another user", id);
    this.#identity = identity;
    this.#token = token;
    this.#expireAt(identity.exp);
    for (const sub of this.#subs.values()) if (sub.state === "open") this.#refreshRoom(sub);
    if (id !== undefined) this.#send({ type: "ack", id, exp: identity.exp });
  }

  /** The room's own check of the current token (a room that lost `subscribe` closes its socket with 4403). */
  #refreshRoom(sub: Subscription): void {
    sub.token = this.#token;
    trySend(sub.ws!, JSON.stringify({ type: "refresh", token: this.#token }));
  }

  #expireAt(exp: number): void {
    if (this.#expiry !== undefined) clearTimeout(this.#expiry);
    const left = exp * 1000 - Date.now();
    this.#expiry = setTimeout(
      () => (Date.now() >= exp * 1000 ? this.#close(CloseCode.tokenExpired, "token expired") : this.#expireAt(exp)),
      Math.min(Math.max(0, left), MAX_TIMER_MS),
    );
  }

  #error(code: ErrorCode, message: string, id?: string): void {
    this.#send({ type: "error", code, message, ...(id === undefined ? {} : { id }) });
  }

  #send(frame: ConnectionServerFrame): void {
    trySend(this.#client, JSON.stringify(frame));
  }

  #close(code: number, reason: string): void {
    this.#end();
    closeQuietly(this.#client, code, reason);
  }

  /** The client's socket is gone or going: every room's socket closes with it. */
  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#expiry !== undefined) clearTimeout(this.#expiry);
    clearInterval(this.#idle);
    for (const sub of this.#subs.values()) {
      sub.state = "ended";
      if (sub.ws) closeQuietly(sub.ws, 1000, "connection closed");
    }
    this.#subs.clear();
    this.#waiting.length = 0;
  }
}

/** A room's refusal of a join (a ban, an onJoin hook), read from its error answer. */
async function refusalOf(res: Response): Promise<Failure> {
  const body = (await res.json().catch(() => null)) as Partial<HttpError> | null;
  const error = body?.error;
  return error ? failure(error.code, error.message) : failure("internal", `the room answered ${res.status}`);
}

function trySend(ws: WebSocket, text: string): void {
  try {
    ws.send(text);
  } catch {
    // Closing: its close event ends what depends on it.
  }
}

function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // already closed
  }
}
