// What a RoomClient is configured with and what it emits: the SDK's public types, in one place.
import type { DirectMessageFrame, MessageFrame, PresenceEventFrame, WelcomeFrame } from "../protocol";
import type { BackoffOptions } from "./backoff";
import type { RoomError, RoomErrorCode } from "./errors";
import type { PresenceUser } from "./presence";
import type { SocketFactory, WebSocketConstructor } from "./socket";

export interface RoomClientOptions {
  /** The Worker's base URL, http(s):// or ws(s)://, e.g. "https://rooms.example.com". */
  url: string;
  room: string;
  /** A token, or a function called before every (re)connect so tokens can be refreshed. */
  token: string | (() => string | Promise<string>);
  /** A WebSocket class. Default: the global one (browsers, Node ≥ 22). Node 20: pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Opens sockets instead of `WebSocket` (tests, custom transports). */
  socket?: SocketFactory;
  /** Used for the handshake-failure probe. Default: the global fetch. */
  fetch?: typeof fetch;
  /** Reconnect delays. Defaults: base 500 ms, cap 30 s, reset after 10 s connected. */
  backoff?: BackoffOptions;
  /** How often to ping. Default 25 000 ms (the room closes sockets idle for 90 s). */
  pingIntervalMs?: number;
  /** No pong within this long after a ping: the connection is dead. Default 10 000 ms. */
  pongTimeoutMs?: number;
  /** From starting a connection to its welcome. Default 15 000 ms. */
  connectTimeoutMs?: number;
  /**
   * Publishes that may wait for a connection, a token or an echo. Default 100. Sends are paced to
   * the room's bucket, so it may exceed the burst: a full outbox drains in about
   * (outboxLimit - burst) / ratePerSec seconds.
   */
  outboxLimit?: number;
  /** From writing a publish, history or direct frame to the socket to its answer. Default 10 000 ms. */
  ackTimeoutMs?: number;
}

export type Status = "connecting" | "open" | "reconnecting" | "closed";

export interface StatusEvent {
  status: Status;
  /** Connection attempts since the last stable connection. */
  attempt: number;
  /** While waiting to reconnect: when the next attempt starts (Date.now() clock). */
  retryAt?: number;
  /** With `closed`: why (`closed` for close(), or the fatal handshake error). */
  reason?: RoomErrorCode;
}

export interface PresenceEvent {
  /**
   * `join`/`leave`/`update`: one user; `sync`: the whole map was replaced (a welcome, or the room
   * fell back to its PRESENCE_LIMIT); `count`: the room is above it and tells only how many.
   */
  event: PresenceEventFrame["event"];
  user?: PresenceUser;
  users: ReadonlyMap<string, PresenceUser>;
  /** Users in the room: `users.size`, or the room's count while it is too big to list. */
  count: number;
}

export interface RoomEvents {
  /** Every room message in seq order, the app's own included; never the same seq twice. */
  message: MessageFrame;
  direct: DirectMessageFrame;
  /** An admin deleted message `seq`: drop it if shown (it may be one this client never got, or one still to come, which is then not emitted). */
  delete: { seq: number };
  presence: PresenceEvent;
  status: StatusEvent;
  /** Errors not tied to a call (a rejected presence update, a bad server frame, a fatal close). */
  error: RoomError;
  welcome: WelcomeFrame;
  /** A reconnect could not resume (`recovered:false`): messages may be missing, refetch history. */
  resync: WelcomeFrame;
}

export interface HistoryPage {
  messages: MessageFrame[];
  more: boolean;
}
