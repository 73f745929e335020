// Many rooms over one socket (GET /connect, docs/protocol.md "One connection, many rooms"). A
// Connection owns the socket: its heartbeat, token refresh and reconnects. Each room is a
// RoomHandle: a RoomClient whose socket is a subscription on the connection (Subscription below),
// so a room here keeps every behaviour of a room over its own socket (outbox, pacing, gap-free
// resume from its own position, presence, errors) without a second implementation of them.
import type { AckFrame, ConnectionServerFrame, ErrorCode, UnsubscribedFrame, UserRef } from "../protocol";
import { Backoff } from "./backoff";
import { RoomError, type RoomErrorCode } from "./errors";
import { Emitter } from "./events";
import { randomPrefix } from "./outbox";
import type { RoomClientOptions, Status, StatusEvent } from "./options";
import { refreshDelay } from "./refresh";
import { Requests } from "./requests";
import { RoomClient } from "./room-client";
import { closeQuietly, OPEN, openSocket, probeHandshake, requireTransport, type SocketClose, type WebSocketLike } from "./socket";

/**
 * A Connection's settings: RoomClient's, less the room and its per-room ones. `url` is the Worker's
 * base URL (with createRooms' mount path); a `token` function is asked before every (re)connect and
 * ahead of each expiry, whose fresh token renews every room at once; `backoff` paces the
 * connection's reconnects (its rooms return with it); `connectTimeoutMs` runs to the server's `connected`.
 */
export type ConnectionOptions = Pick<
  RoomClientOptions,
  "url" | "token" | "WebSocket" | "socket" | "fetch" | "backoff" | "pingIntervalMs" | "pongTimeoutMs" | "connectTimeoutMs"
>;

/** A room's own settings on a connection (the rest are the connection's). */
export type RoomHandleOptions = Pick<RoomClientOptions, "outboxLimit" | "ackTimeoutMs" | "backoff" | "connectTimeoutMs">;

export interface ConnectionEvents {
  status: StatusEvent;
  /** Errors of the connection itself (a refused refresh, a frame the server could not read); a room's go to its handle. */
  error: RoomError;
}

/** A subscription's refusal that retrying cannot change: the handle ends with it. Others are retried. */
const FINAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["bad_request", "unauthorized", "forbidden", "banned", "rejected", "too_many_rooms"]);
/** The fixed start the server writes a room's envelope with (protocol.ts RoomEnvelope). */
const ENVELOPE = /^\{"sub":([0-9]{1,10}),"data":/;
const PING = "ping";
const PONG = "pong";

/** A room on a Connection: a RoomClient, plus `leave()`, which ends this room only. */
export class RoomHandle extends RoomClient {
  /** Stops this room: its subscription ends, the connection and its other rooms go on. */
  leave(): void {
    this.close();
  }
}

export class Connection {
  readonly #opts: ConnectionOptions;
  readonly #events = new Emitter<ConnectionEvents>();
  readonly #backoff: Backoff;
  readonly #requests = new Requests(randomPrefix(), 10_000);
  readonly #handles = new Map<string, RoomHandle>();
  /** Live subscriptions by id; ids are never reused, so a late frame of an old one finds nothing. */
  readonly #subs = new Map<number, Subscription>();
  #nextSub = 1;
  #status: Status = "connecting";
  #ws: WebSocketLike | undefined;
  /** Set by the server's `connected`: subscribes may go out. */
  #connected = false;
  #token: string | undefined;
  #me: UserRef | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(opts: ConnectionOptions) {
    this.#opts = opts;
    this.#backoff = new Backoff(opts.backoff);
    requireTransport(opts);
    queueMicrotask(() => void this.#connect());
  }

  on<K extends keyof ConnectionEvents>(type: K, listener: (payload: ConnectionEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  get status(): Status {
    return this.#status;
  }

  /** The user the server knows this connection as (after the first `connected`). */
  get me(): UserRef | undefined {
    return this.#me;
  }

  /** The handle of `room`, joined over this connection (the same handle while it has not left). */
  room(name: string, options: RoomHandleOptions = {}): RoomHandle {
    if (this.#status === "closed") throw new RoomError("closed", "the connection is closed");
    const held = this.#handles.get(name);
    if (held && held.status !== "closed") return held;
    const handle = new RoomHandle({
      ...options,
      url: this.#opts.url,
      room: name,
      // Never sent: the connection carries the token; a room renews with the connection's refresh.
      token: "connection",
      socket: (url) => this.#subscribe(name, new URL(url).searchParams),
      // The connection pings; a subscription answers its room's client at once (Subscription.send).
      pingIntervalMs: 25_000,
    });
    this.#handles.set(name, handle);
    handle.on("status", ({ status }) => {
      if (status === "closed" && this.#handles.get(name) === handle) this.#handles.delete(name);
    });
    return handle;
  }

  /** Closes for good: every room's handle closes with it. */
  close(): void {
    this.#shutdown("closed");
  }

  // ---- subscriptions --------------------------------------------------------------------

  #subscribe(room: string, params: URLSearchParams): Subscription {
    const sub = new Subscription(
      this.#nextSub++,
      room,
      (text) => this.#sendRaw(text),
      () => this.#leave(sub),
    );
    const since = params.get("since");
    sub.subscribe = JSON.stringify({
      type: "subscribe",
      sub: sub.id,
      room,
      ...(since === null ? {} : { since: Number(since) }),
      ...(params.has("epoch") ? { epoch: params.get("epoch") } : {}),
      ...(params.has("resume") ? { resume: params.get("resume") } : {}),
    });
    this.#subs.set(sub.id, sub);
    // While the connection is down, every room's subscribe waits for `connected`, then all go in one round.
    if (this.#connected) this.#sendRaw(sub.subscribe);
    return sub;
  }

  #leave(sub: Subscription): void {
    if (this.#subs.get(sub.id) !== sub) return;
    this.#subs.delete(sub.id);
    if (this.#connected) this.#sendRaw(JSON.stringify({ type: "unsubscribe", sub: sub.id }));
  }

  #ended(frame: UnsubscribedFrame): void {
    const sub = this.#subs.get(frame.sub);
    if (!sub) return;
    this.#subs.delete(frame.sub);
    if (frame.code !== undefined) {
      const message = frame.message ?? frame.code;
      // A refusal to retry (rate_limited, a room's 5xx) closes like a lost socket: the handle's own backoff paces it.
      return sub.end(
        FINAL.has(frame.code) ? { code: 4000, reason: message, refusal: { code: frame.code, message } } : { code: 1013, reason: message },
      );
    }
    sub.end({ code: frame.close ?? 1000, reason: frame.reason ?? "" });
  }

  /** Not narrowed by an earlier check: close() may run during any await. */
  #closed(): boolean {
    return this.#status === "closed";
  }

  // ---- the socket -----------------------------------------------------------------------

  async #connect(): Promise<void> {
    if (this.#status === "closed") return;
    this.#setStatus(this.#status === "connecting" ? "connecting" : "reconnecting");
    let ws: WebSocketLike;
    try {
      const { token } = this.#opts;
      this.#token = typeof token === "string" ? token : await token();
      if (this.#closed()) return;
      ws = await openSocket(this.#opts, this.#url("ws", this.#token));
    } catch {
      return void this.#failed(undefined, false);
    }
    if (this.#closed()) return closeQuietly(ws, "client closed");
    this.#ws = ws;
    let opened = ws.readyState === OPEN;
    this.#connectTimer = setTimeout(() => this.#lost(ws, "connect timeout"), this.#opts.connectTimeoutMs ?? 15_000);
    ws.addEventListener("open", () => (opened = true));
    ws.addEventListener("message", (e: { data: unknown }) => {
      if (this.#ws === ws && typeof e.data === "string") this.#onText(ws, e.data);
    });
    ws.addEventListener("close", () => {
      if (this.#ws === ws) void this.#failed(ws, opened || this.#connected);
    });
    ws.addEventListener("error", () => {});
  }

  /** The socket closed (or never opened): retry, unless the handshake's probe says it cannot succeed. */
  async #failed(ws: WebSocketLike | undefined, opened: boolean): Promise<void> {
    if (opened || this.#token === undefined) return this.#lost(ws, "closed");
    this.#drop(ws, "handshake failed");
    const code = await probeHandshake(this.#opts.fetch ?? fetch, this.#url("http", this.#token));
    if (this.#status === "closed" || this.#ws !== undefined) return;
    if (code) {
      this.#events.emit("error", new RoomError(code, `the server refused the connection: ${code}`));
      this.#shutdown(code);
    } else {
      this.#retryLater();
    }
  }

  #lost(ws: WebSocketLike | undefined, reason: string): void {
    if (this.#ws !== ws) return;
    this.#drop(ws, reason);
    this.#retryLater();
  }

  /** Drops the socket; every room's subscription ends with it and waits, resubscribing, for the next `connected`. */
  #drop(ws: WebSocketLike | undefined, reason: string): void {
    this.#ws = undefined;
    if (this.#connected) this.#backoff.closed(Date.now());
    this.#connected = false;
    this.#stopTimers();
    if (ws) closeQuietly(ws, reason);
    this.#requests.rejectAll(new RoomError("connection_lost", "the connection dropped"));
    const subs = [...this.#subs.values()];
    this.#subs.clear();
    for (const sub of subs) sub.end({ code: 1006, reason, resubscribe: true });
  }

  #retryLater(): void {
    if (this.#status === "closed") return;
    const delay = this.#backoff.next();
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#connect();
    }, delay);
    this.#setStatus("reconnecting", Date.now() + delay);
  }

  #shutdown(reason: RoomErrorCode): void {
    if (this.#status === "closed") return;
    this.#status = "closed";
    const ws = this.#ws;
    this.#ws = undefined;
    this.#connected = false;
    this.#stopTimers();
    clearTimeout(this.#retryTimer);
    if (ws) closeQuietly(ws, "client closed");
    this.#requests.rejectAll(new RoomError("closed", `the connection is closed (${reason})`));
    const final = reason === "closed" ? undefined : { code: reason as ErrorCode, message: `the server refused the connection: ${reason}` };
    const subs = [...this.#subs.values()];
    this.#subs.clear();
    for (const sub of subs) sub.end({ code: 1000, reason: "connection closed", ...(final ? { refusal: final } : {}) });
    for (const handle of [...this.#handles.values()]) handle.close();
    this.#handles.clear();
    this.#events.emit("status", { status: "closed", attempt: this.#backoff.attempt, reason });
  }

  #stopTimers(): void {
    clearTimeout(this.#connectTimer);
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    clearTimeout(this.#refreshTimer);
    this.#connectTimer = this.#pingTimer = this.#pongTimer = this.#refreshTimer = undefined;
  }

  #setStatus(status: Status, retryAt?: number): void {
    this.#status = status;
    this.#events.emit("status", { status, attempt: this.#backoff.attempt, ...(retryAt === undefined ? {} : { retryAt }) });
  }

  #sendRaw(text: string): void {
    try {
      this.#ws?.send(text);
    } catch {
      // Closing: its close event ends the subscriptions, which resubscribe on the next connection.
    }
  }

  #onText(ws: WebSocketLike, text: string): void {
    const envelope = ENVELOPE.exec(text);
    if (envelope) return this.#subs.get(Number(envelope[1]))?.deliver(text.slice(envelope[0].length, -1));
    if (text === PONG) {
      clearTimeout(this.#pongTimer);
      this.#pongTimer = undefined;
      return;
    }
    let frame: ConnectionServerFrame;
    try {
      frame = JSON.parse(text) as ConnectionServerFrame;
    } catch {
      return this.#events.emit("error", new RoomError("bad_request", "the server sent a message that is not JSON"));
    }
    switch (frame.type) {
      case "connected":
        return this.#onConnected(ws, frame.user, frame.exp);
      case "unsubscribed":
        return this.#ended(frame);
      case "ack":
        this.#requests.settle(frame.id, frame);
        return;
      case "error":
        if (frame.id !== undefined && this.#requests.settle(frame.id, new RoomError(frame.code, frame.message))) return;
        return this.#events.emit("error", new RoomError(frame.code, frame.message));
    }
  }

  #onConnected(ws: WebSocketLike, user: UserRef, exp: number | undefined): void {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#connected = true;
    this.#me = user;
    this.#backoff.opened(Date.now());
    this.#setStatus("open");
    // Every room's subscribe, each from its own position, in one round: no waiting on any answer.
    for (const sub of this.#subs.values()) this.#sendRaw(sub.subscribe);
    const pongTimeoutMs = this.#opts.pongTimeoutMs ?? 10_000;
    this.#pingTimer = setInterval(() => {
      this.#sendRaw(PING);
      this.#pongTimer ??= setTimeout(() => this.#lost(ws, "no pong"), pongTimeoutMs);
    }, this.#opts.pingIntervalMs ?? 25_000);
    this.#refreshBefore(ws, exp);
  }

  /** With a token function, one fresh token renews every room before the current one expires. */
  #refreshBefore(ws: WebSocketLike, exp: number | undefined): void {
    const { token } = this.#opts;
    if (exp === undefined || typeof token === "string") return;
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimeout(
      () => {
        this.#refreshTimer = undefined;
        void (async () => {
          const fresh = await token();
          if (this.#ws !== ws) return;
          const ack = await this.#requests.start<AckFrame>((id, written) => {
            this.#sendRaw(JSON.stringify({ type: "refresh", token: fresh, id }));
            written();
          });
          this.#token = fresh;
          if (this.#ws === ws) this.#refreshBefore(ws, ack.exp);
        })().catch((err: unknown) => {
          // Refused or lost: the server closes at the old expiry, and the reconnect takes a new token.
          if (this.#ws === ws) this.#events.emit("error", err instanceof RoomError ? err : new RoomError("unauthorized", String(err)));
        });
      },
      refreshDelay(exp, Date.now()),
    );
  }

  #url(kind: "ws" | "http", token: string): string {
    const url = new URL(this.#opts.url);
    url.protocol = url.protocol.replace(/^http/, "ws").replace(/^ws/, kind);
    url.pathname = `${url.pathname.replace(/\/$/, "")}/connect`;
    url.search = new URLSearchParams({ token }).toString();
    return url.toString();
  }
}

type Listener = (event: never) => void;

/**
 * One room's subscription on the connection, as the socket its RoomClient reads and writes: it
 * is open from the start (frames are only sent after the room's welcome, which follows the
 * subscribe), answers the client's pings itself (the connection's heartbeat covers it), and
 * closes with the room's close, a refusal, or the connection.
 */
class Subscription implements WebSocketLike {
  readyState = OPEN;
  /** The subscribe frame, sent as soon as the connection is (or is again) connected. */
  subscribe = "";
  readonly #listeners = new Map<string, Listener[]>();
  readonly #prefix: string;

  readonly #write: (text: string) => void;
  readonly #left: () => void;

  constructor(
    readonly id: number,
    readonly room: string,
    write: (text: string) => void,
    left: () => void,
  ) {
    this.#prefix = `{"sub":${id},"data":`;
    this.#write = write;
    this.#left = left;
  }

  addEventListener(type: string, listener: Listener): void {
    const list = this.#listeners.get(type) ?? [];
    list.push(listener);
    this.#listeners.set(type, list);
  }

  send(text: string): void {
    if (this.readyState !== OPEN) throw new Error("the subscription is closed");
    if (text === PING) return queueMicrotask(() => this.#emit("message", { data: PONG }));
    this.#write(`${this.#prefix}${text}}`);
  }

  /** The client closes it (leave, or a lost attempt): the connection unsubscribes. */
  close(code = 1000, reason = ""): void {
    if (this.readyState !== OPEN) return;
    this.#left();
    this.end({ code, reason });
  }

  /** A room's text, as its own socket would have delivered it. */
  deliver(text: string): void {
    if (this.readyState === OPEN) this.#emit("message", { data: text });
  }

  end(event: SocketClose): void {
    if (this.readyState !== OPEN) return;
    this.readyState = 3;
    this.#emit("close", event);
  }

  #emit(type: string, event: unknown): void {
    for (const listener of this.#listeners.get(type) ?? []) (listener as (e: unknown) => void)(event);
  }
}
