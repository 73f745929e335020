// One room, one socket at a time, reconnecting by itself. Frame types
// come from ../protocol as types only, so a browser bundle of the SDK carries no zod.
import type { AckFrame, HistoryPageFrame, ServerFrame, UserRef, WelcomeFrame } from "../protocol";
import { Backoff } from "./backoff";
import { RoomError, type RoomErrorCode } from "./errors";
import { Emitter } from "./events";
import { ACK_TIMEOUT_MS, Outbox, OUTBOX_LIMIT, randomPrefix, tooLarge } from "./outbox";
import { Pacer } from "./pacer";
import { PresenceMap, type PresenceUser } from "./presence";
import { Requests } from "./requests";
import { refreshDelay } from "./refresh";
import { ResumePoint } from "./resume";
import type { HistoryPage, RoomClientOptions, RoomEvents, Status } from "./options";
import {
  closeQuietly,
  decodeServerMessage,
  OPEN,
  openSocket,
  probeHandshake,
  requireTransport,
  type SocketClose,
  type WebSocketLike,
} from "./socket";

/** The room's close code for a connection whose token lost this room. */
const FORBIDDEN_CLOSE = 4403;

// The protocol's heartbeat (docs/protocol.md: clients ping every 25 s; idle sockets close at 90 s).
const PING = "ping";
const PONG = "pong";

/** One attempt: events from sockets of earlier attempts are ignored by comparing to this. */
interface Attempt {
  ws?: WebSocketLike;
  token?: string;
  opened: boolean;
  welcomed: boolean;
}

export class RoomClient {
  readonly room: string;
  readonly #opts: RoomClientOptions;
  readonly #events = new Emitter<RoomEvents>();
  readonly #backoff: Backoff;
  readonly #outbox: Outbox;
  readonly #requests: Requests;
  /** Every frame but `ping` goes through it, so none is refused by the room's rate limit. */
  readonly #pacer: Pacer;
  readonly #resume = new ResumePoint();
  readonly #presence = new PresenceMap();
  #status: Status = "connecting";
  #attempt: Attempt | null = null;
  #me: UserRef | undefined;
  /** The presence state the app set last; re-sent after a reconnect if the room lost it. */
  #myState: Record<string, unknown> | undefined;
  /** Set while a recovered resume's replay is being read; in-doubt publishes wait for its end. */
  #awaitingReplay = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(opts: RoomClientOptions) {
    this.#opts = opts;
    this.room = opts.room;
    this.#backoff = new Backoff(opts.backoff);
    const prefix = randomPrefix();
    const ackTimeoutMs = opts.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    this.#outbox = new Outbox({ limit: opts.outboxLimit ?? OUTBOX_LIMIT, ackTimeoutMs, idPrefix: prefix });
    this.#requests = new Requests(prefix, ackTimeoutMs);
    this.#pacer = new Pacer(this.#send);
    requireTransport(opts);
    // Connect after the caller has had the chance to attach listeners, so it sees `connecting`.
    queueMicrotask(() => void this.#connect());
  }

  on<K extends keyof RoomEvents>(type: K, listener: (payload: RoomEvents[K]) => void): () => void {
    return this.#events.on(type, listener);
  }

  get status(): Status {
    return this.#status;
  }

  /** The user the server knows this client as (after the first welcome). */
  get me(): UserRef | undefined {
    return this.#me;
  }

  /** Who is in the room; empty while it is too big to list (see `presenceCount`). */
  get presence(): ReadonlyMap<string, PresenceUser> {
    return this.#presence.users;
  }

  /** How many users are in the room: the list's size, or the room's count above its PRESENCE_LIMIT. */
  get presenceCount(): number {
    return this.#presence.count;
  }

  /** Highest seq delivered (or deleted), and the room's epoch: where a reconnect resumes from. */
  get position(): { seq?: number; epoch?: string } {
    return { seq: this.#resume.seq, epoch: this.#resume.epoch };
  }

  /** Publishes waiting to be sent or echoed. */
  get pending(): number {
    return this.#outbox.size;
  }

  /**
   * Publishes `data`; resolves with its seq when the echo arrives, rejects with a RoomError
   * (the error frame's code, `too_large` at once when the frame exceeds the room's limit,
   * `timeout`, `outbox_full`, `connection_lost`, `closed`). While offline it waits in the
   * outbox and is sent once after the next welcome; online it waits its turn in the pacer.
   */
  publish(data: unknown): Promise<number> {
    if (this.#status === "closed") return Promise.reject(new RoomError("closed", "the client is closed"));
    const seq = this.#outbox.add(data);
    if (this.#attempt?.welcomed) this.#outbox.flush(this.#paced);
    return seq;
  }

  /** Sends `data` to every connection of user `to`; resolves when the room accepted it. */
  direct(to: string, data: unknown): Promise<void> {
    return this.#request<AckFrame>((id) => ({ type: "direct", to, data, id })).then(() => undefined);
  }

  /** A page of history before `before` (exclusive), newest first. Needs the `history` capability. */
  history(opts: { before?: number; limit?: number } = {}): Promise<HistoryPage> {
    return this.#request<HistoryPageFrame>((id) => ({ type: "history", ...opts, id })).then(({ messages, more }) => ({
      messages,
      more,
    }));
  }

  /** Sets this user's presence state (e.g. `{typing: true}`); kept across reconnects. */
  setPresence(state: Record<string, unknown>): void {
    this.#myState = state;
    if (this.#attempt?.welcomed) this.#sendPresence(state);
  }

  /** Skips the wait of a pending reconnect. */
  reconnectNow(): void {
    if (this.#retryTimer === undefined) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    void this.#connect();
  }

  /** Closes for good: no reconnect, waiting publishes reject with `closed`. */
  close(): void {
    this.#shutdown("closed");
  }

  // ---- connection lifecycle -------------------------------------------------------------

  async #connect(): Promise<void> {
    if (this.#status === "closed") return;
    const attempt: Attempt = { opened: false, welcomed: false };
    this.#attempt = attempt;
    this.#setStatus(this.#status === "connecting" ? "connecting" : "reconnecting");
    this.#connectTimer = setTimeout(() => this.#lost(attempt, "connect timeout"), this.#opts.connectTimeoutMs ?? 15_000);
    let ws: WebSocketLike;
    try {
      const { token } = this.#opts;
      attempt.token = typeof token === "string" ? token : await token();
      if (this.#attempt !== attempt) return;
      ws = await openSocket(this.#opts, this.#url("ws", attempt.token));
    } catch {
      // No token (its function threw) or no socket: like a refused handshake, probed if it can be.
      if (this.#attempt === attempt) void this.#failed(attempt);
      return;
    }
    if (this.#attempt !== attempt) return closeQuietly(ws, "superseded");
    attempt.ws = ws;
    const current = () => this.#attempt === attempt;
    ws.addEventListener("open", () => {
      if (current()) attempt.opened = true;
    });
    ws.addEventListener("message", (e: { data: unknown }) => {
      if (current()) this.#onText(attempt, typeof e.data === "string" ? e.data : "");
    });
    ws.addEventListener("close", (e: SocketClose) => {
      if (!current()) return;
      // A subscription on a Connection (connection.ts) tells its room's refusal in the close itself.
      if (e.refusal) {
        this.#events.emit("error", new RoomError(e.refusal.code, e.refusal.message));
        return this.#shutdown(e.refusal.code);
      }
      // The room ends a connection whose refreshed token no longer grants this room, or whose
      // user an admin kicked: final (a ban would refuse the reconnect anyway).
      if (e.code === FORBIDDEN_CLOSE) {
        const why = e.reason?.startsWith("kicked") ? e.reason : "the token no longer grants this room";
        this.#events.emit("error", new RoomError("forbidden", why));
        return this.#shutdown("forbidden");
      }
      // Its connection dropped: the connection's own backoff paces the return, so no second wait here.
      if (e.resubscribe) {
        this.#drop(attempt, "connection lost");
        return void this.#connect();
      }
      // 4401 (token expired) is not: the reconnect asks the token function for a fresh one.
      void this.#failed(attempt);
    });
    // An error is always followed by a close; `ws` throws if no error listener exists.
    ws.addEventListener("error", () => {});
    if (ws.readyState === OPEN) attempt.opened = true;
  }

  /** The attempt's socket closed, or it never got one. Decides between retrying and giving up. */
  async #failed(attempt: Attempt): Promise<void> {
    if (this.#attempt !== attempt) return;
    if (attempt.opened || attempt.token === undefined) return this.#lost(attempt, "closed");
    this.#drop(attempt, "handshake failed");
    const code = await probeHandshake(this.#opts.fetch ?? fetch, this.#url("http", attempt.token));
    if (this.#status === "closed" || this.#attempt !== null) return;
    if (code) {
      this.#events.emit("error", new RoomError(code, `the room refused the connection: ${code}`));
      this.#shutdown(code);
    } else {
      this.#retryLater();
    }
  }

  /** Drops the attempt's socket (dead, timed out, or closed) and schedules the next attempt. */
  #lost(attempt: Attempt, reason: string): void {
    if (this.#attempt !== attempt) return;
    this.#drop(attempt, reason);
    this.#retryLater();
  }

  #drop(attempt: Attempt, reason: string): void {
    this.#attempt = null;
    this.#stopTimers();
    if (attempt.ws) closeQuietly(attempt.ws, reason);
    if (attempt.welcomed) this.#backoff.closed(Date.now());
    this.#pacer.stop();
    this.#outbox.disconnected();
    this.#requests.rejectAll(new RoomError("connection_lost", "the connection dropped"));
    this.#awaitingReplay = false;
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
    const attempt = this.#attempt;
    this.#attempt = null;
    this.#stopTimers();
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (attempt?.ws) closeQuietly(attempt.ws, "client closed");
    this.#pacer.stop();
    const err = new RoomError("closed", `the client is closed (${reason})`);
    this.#outbox.rejectAll(err);
    this.#requests.rejectAll(err);
    this.#presence.clear();
    this.#status = "closed";
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
    this.#events.emit("status", {
      status,
      attempt: this.#backoff.attempt,
      ...(retryAt === undefined ? {} : { retryAt }),
    });
  }

  #heartbeat(attempt: Attempt): void {
    const pongTimeoutMs = this.#opts.pongTimeoutMs ?? 10_000;
    this.#pingTimer = setInterval(() => {
      this.#send(PING);
      if (this.#pongTimer === undefined) {
        this.#pongTimer = setTimeout(() => this.#lost(attempt, "no pong"), pongTimeoutMs);
      }
    }, this.#opts.pingIntervalMs ?? 25_000);
  }

  /**
   * With a token function, a fresh token goes to the room before the current one expires (a
   * minute before, or at 80% of a short token's life), so the connection never ends at `exp`.
   * A token string cannot be renewed: the room closes at `exp` (4401) and the reconnect fails.
   */
  #refreshBefore(attempt: Attempt, exp: number | undefined): void {
    const { token } = this.#opts;
    if (exp === undefined || typeof token === "string") return;
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimeout(
      () => {
        this.#refreshTimer = undefined;
        void (async () => {
          const fresh = await token();
          if (this.#attempt !== attempt) return;
          const ack = await this.#request<AckFrame>((id) => ({ type: "refresh", token: fresh, id }));
          if (this.#attempt === attempt) this.#refreshBefore(attempt, ack.exp);
        })().catch((err: unknown) => {
          // Refused or lost: the room closes at the old expiry, and the reconnect takes a new token.
          if (this.#attempt === attempt) this.#events.emit("error", err instanceof RoomError ? err : new RoomError("unauthorized", String(err)));
        });
      },
      refreshDelay(exp, Date.now()),
    );
  }

  // ---- frames ---------------------------------------------------------------------------

  readonly #send = (text: string): void => {
    try {
      this.#attempt?.ws?.send(text);
    } catch {
      // The socket is closing; its close event reschedules, and the outbox keeps what was sent in doubt.
    }
  };

  readonly #paced = (text: string, written: () => void): void => this.#pacer.send(text, written);

  /** Only the latest state matters, so a state still waiting for a token is replaced, not queued behind. */
  #sendPresence(state: Record<string, unknown>): void {
    this.#pacer.send(JSON.stringify({ type: "presence", state }), undefined, "presence");
  }

  #request<T>(frame: (id: string) => object): Promise<T> {
    if (!this.#attempt?.welcomed) return Promise.reject(new RoomError("not_connected", "not connected"));
    return this.#requests.start<T>((id, written) => {
      const text = JSON.stringify(frame(id));
      const tooBig = tooLarge(text, this.#outbox.maxBytes);
      if (tooBig) this.#requests.settle(id, tooBig);
      else this.#pacer.send(text, written);
    });
  }

  #onText(attempt: Attempt, text: string): void {
    if (text === PONG) {
      clearTimeout(this.#pongTimer);
      this.#pongTimer = undefined;
      return;
    }
    let frames: ServerFrame[];
    try {
      frames = decodeServerMessage(text);
    } catch {
      this.#events.emit("error", new RoomError("bad_request", "the server sent a message that is not JSON"));
      return;
    }
    for (const frame of frames) {
      // A frame handler can end the attempt (e.g. a listener calls close()); the rest is stale.
      if (this.#attempt !== attempt) return;
      this.#onFrame(attempt, frame);
    }
  }

  #onFrame(attempt: Attempt, frame: ServerFrame): void {
    switch (frame.type) {
      case "welcome":
        return this.#onWelcome(attempt, frame);
      case "message": {
        // Every copy carries the sender's id, so others can predict ours: only our own echo settles.
        if (frame.id !== undefined && frame.from.id === this.#me?.id) this.#outbox.echo(frame.id, frame.seq);
        if (this.#resume.accept(frame.seq)) this.#events.emit("message", frame);
        this.#replayRead();
        return;
      }
      case "delete":
        this.#events.emit("delete", { seq: frame.seq });
        // A replay's delete holds a deleted message's place; a live one may overtake its message (resume.ts).
        this.#resume.deleted(frame.seq);
        this.#replayRead();
        return;
      case "direct":
        this.#events.emit("direct", frame);
        return;
      case "ack":
        this.#requests.settle(frame.id, frame);
        return;
      case "history":
        if (frame.id !== undefined) this.#requests.settle(frame.id, frame);
        return;
      case "presence":
        this.#presence.apply(frame);
        this.#events.emit("presence", {
          event: frame.event,
          ...("user" in frame ? { user: frame.user } : {}),
          users: this.#presence.users,
          count: this.#presence.count,
        });
        return;
      case "error": {
        const err = new RoomError(frame.code, frame.message);
        const id = frame.id;
        if (id !== undefined && (this.#outbox.error(id, err) || this.#requests.settle(id, err))) return;
        this.#events.emit("error", err);
        return;
      }
    }
  }

  /** Once a recovered replay is read to its end, a publish still in doubt was not accepted. */
  #replayRead(): void {
    if (this.#awaitingReplay && !this.#resume.replaying()) {
      this.#awaitingReplay = false;
      this.#outbox.settleInDoubt();
    }
  }

  #onWelcome(attempt: Attempt, welcome: WelcomeFrame): void {
    attempt.opened = attempt.welcomed = true;
    // Before anything is sent on this connection, app listeners of `welcome` included. A room
    // that advertises no limits (older than the welcome's `limits`) gets nothing paced or checked.
    this.#pacer.start(welcome.limits);
    this.#outbox.maxBytes = welcome.limits?.maxMessageBytes;
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#backoff.opened(Date.now());
    this.#me = welcome.user;
    const outcome = this.#resume.welcome(welcome);
    this.#presence.welcome(welcome);
    this.#setStatus("open");
    this.#events.emit("welcome", welcome);
    if (outcome === "stale") this.#events.emit("resync", welcome);
    this.#events.emit("presence", { event: "sync", users: this.#presence.users, count: this.#presence.count });
    this.#heartbeat(attempt);
    this.#refreshBefore(attempt, welcome.exp);

    // The replay (if any) is already on its way, before anything sent from here is answered.
    this.#outbox.flush(this.#paced);
    if (outcome === "recovered" && this.#resume.replaying()) this.#awaitingReplay = true;
    else this.#outbox.settleInDoubt();

    const mine = welcome.presence.find((u) => u.id === welcome.user.id);
    if (this.#myState && JSON.stringify(mine?.state ?? {}) !== JSON.stringify(this.#myState)) {
      this.#sendPresence(this.#myState);
    }
  }

  #url(kind: "ws" | "http", token: string): string {
    const url = new URL(this.#opts.url);
    url.protocol = url.protocol.replace(/^http/, "ws").replace(/^ws/, kind);
    const base = url.pathname.replace(/\/$/, "");
    url.pathname = `${base}/rooms/${encodeURIComponent(this.room)}/${kind === "ws" ? "ws" : "join"}`;
    const params = new URLSearchParams({ token, ...(kind === "ws" ? this.#resume.params() : {}) });
    url.search = params.toString();
    return url.toString();
  }
}
