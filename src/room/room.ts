// One Durable Object per room. It owns the room's sockets through the Hibernation API, its
// message log, presence and counters, and reads top to bottom: join, frames, leave, sweep,
// then the HTTP-side calls the Worker makes over RPC.
import { DurableObject } from "cloudflare:workers";
import { loadConfig, type Config } from "../config";
import { Counters, FLUSH_AFTER_MS, type CounterName } from "./counters";
import { Crowd } from "./crowd";
import { Delivery } from "./delivery";
import type { Env } from "../env";
import { History } from "./history";
import { IdempotencyKeys } from "./idempotency";
import { Presence } from "./presence";
import { KeyedBuckets, type RateLimited } from "./rate-limit";
import { ResumeTokens } from "./resume-token";
import {
  CloseCode,
  parseClientFrame,
  PING,
  PONG,
  type Capability,
  type ConnectionLimits,
  type ErrorCode,
  type HistoryPage,
  type PresenceEntry,
  type PublishResult,
  type RoomStats,
  type ServerFrame,
  type UserRef,
  type WelcomeFrame,
} from "../protocol";
import { capsToBits, Session, type Attachment, type Limits } from "./session";

/** What the Worker tells the room about a verified upgrade (an internal header, never the client's). */
export interface Join {
  room: string;
  user: UserRef;
  caps: Capability[];
  since?: number;
  epoch?: string;
  /** the resume token of the client's last welcome (resume-token.ts) */
  resume?: string;
}
export const JOIN_HEADER = "x-edgerooms-join";

export class Room extends DurableObject<Env> {
  readonly #config: Config;
  readonly #limits: Limits;
  /** What every welcome advertises: the limits this room enforces on a connection. */
  readonly #welcomeLimits: ConnectionLimits;
  readonly #sql: SqlStorage;
  readonly #epoch: string;
  readonly #history: History;
  readonly #presence: Presence;
  readonly #crowd: Crowd;
  readonly #counters: Counters;
  readonly #idempotency: IdempotencyKeys;
  readonly #resumeTokens: ResumeTokens;
  /** Live sessions by socket: the in-memory index the hot path reads instead of getWebSockets(). */
  readonly #sessions = new Map<WebSocket, Session>();
  /** Sockets this instance closed itself and announced: their late close events announce nothing. */
  readonly #closedByRoom = new WeakSet<WebSocket>();
  /**
   * Users whose leave this instance announced for a socket that closed while the room slept
   * (see #drop): their other sockets that closed meanwhile must not announce it again.
   */
  readonly #leftWhileAsleep = new Set<string>();
  /** When the alarm is set for, as far as this instance knows (null: none). */
  #alarmAt: number | null = null;
  /** When the idle sweep is next due; -Infinity while unknown (a new instance), so the next alarm sweeps. */
  #sweepAt = -Infinity;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#config = loadConfig(env);
    const idleMs = this.#config.IDLE_TIMEOUT_SEC * 1000;
    this.#limits = {
      ratePerSec: this.#config.RATE_LIMIT_PER_SEC,
      burst: this.#config.RATE_LIMIT_BURST,
      touchEveryMs: Math.min(10_000, idleMs / 10),
    };
    // SQLite calls are synchronous, so start-up needs no blockConcurrencyWhile; every statement
    // is idempotent, so a constructor that throws half-way is simply run again on the next event.
    this.#welcomeLimits = {
      maxMessageBytes: this.#config.MAX_MESSAGE_BYTES,
      ratePerSec: this.#config.RATE_LIMIT_PER_SEC,
      burst: this.#config.RATE_LIMIT_BURST,
      idleTimeoutSec: this.#config.IDLE_TIMEOUT_SEC,
    };
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.#epoch = this.#meta("epoch");
    this.#resumeTokens = new ResumeTokens(this.#meta("resume_key"));
    this.#history = new History(this.#sql, this.#config.HISTORY_LIMIT);
    this.#presence = new Presence(this.#sql);
    this.#crowd = new Crowd(this.#sql, this.#config.PRESENCE_LIMIT);
    this.#counters = new Counters(this.#sql);
    this.#idempotency = new IdempotencyKeys(this.#sql);
    // Answered by the runtime itself, without waking a hibernated room.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
    this.#rebuild();
    void ctx.blockConcurrencyWhile(async () => {
      this.#alarmAt = await ctx.storage.getAlarm();
    });
  }

  /**
   * Hibernation is handled here once: the session index and presence are rebuilt from the
   * sockets' attachments. getWebSockets() leaves out sockets whose close is already under way
   * (and can return some that are closing): their close events arrive later (see #drop).
   */
  #rebuild(): void {
    for (const ws of this.ctx.getWebSockets()) {
      if (ws.readyState !== WebSocket.READY_STATE_OPEN) continue;
      const attachment = Session.readAttachment(ws);
      if (!attachment || attachment.x) {
        closeQuietly(ws, CloseCode.serverError, "unreadable session");
        continue;
      }
      this.#sessions.set(ws, new Session(ws, attachment, this.#limits));
    }
    this.#presence.rebuild(this.#sessions.values());
  }

  /**
   * A random value made once, when the room's storage is new, and kept for its life: the epoch
   * (history from another epoch cannot resume) and the resume tokens' key.
   */
  #meta(key: "epoch" | "resume_key"): string {
    const row = this.#sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = ?`, key).toArray()[0];
    if (row) return row.value;
    const value = key === "epoch" ? randomId() : randomId() + randomId() + randomId() + randomId();
    this.#sql.exec(`INSERT INTO meta (key, value) VALUES (?, ?)`, key, value);
    return value;
  }

  // ---- join ----------------------------------------------------------------------------

  override async fetch(request: Request): Promise<Response> {
    const header = request.headers.get(JOIN_HEADER);
    if (!header || request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("room endpoint is internal", { status: 400 });
    }
    const join = JSON.parse(header) as Join;
    const caps = capsToBits(join.caps);
    // Where this user's connections provably started: a valid token from an earlier welcome
    // carries its start forward, anything else starts at the seq this welcome will carry. The
    // loop re-signs if a publish landed during the await, so the start is never before the welcome.
    const scope = { room: join.room, epoch: this.#epoch, user: join.user.id };
    const proven = await this.#resumeTokens.verify(join.resume, scope);
    let start: number;
    let resume: string;
    do {
      start = proven ?? this.#history.seq;
      resume = await this.#resumeTokens.issue(scope, start);
    } while (proven === undefined && start !== this.#history.seq);

    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    const now = Date.now();
    const attachment: Attachment = { v: 1, c: randomId(), u: join.user.id, n: join.user.name, k: caps, s: now };
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment(attachment);
    const session = new Session(server, attachment, this.#limits);
    this.#sessions.set(server, session);
    const first = this.#presence.add(session);
    if (first) this.#leftWhileAsleep.delete(session.user.id); // its next leave is owed again

    // Without `history`, a resume may replay only what this user could have received live:
    // messages after its start. `since` below the start (or no token at all) recovers nothing.
    const replayFrom = session.can("history") ? 0 : start;
    const recovered =
      join.since === undefined
        ? undefined
        : join.epoch === this.#epoch && join.since >= replayFrom && this.#history.covers(join.since);
    // Above PRESENCE_LIMIT users the welcome carries a count instead of the list (crowd.ts).
    const counting = this.#crowd.absorbs(this.#presence.size);
    const welcome: Omit<WelcomeFrame, "presence"> = {
      type: "welcome",
      room: join.room,
      connectionId: attachment.c,
      user: session.user,
      epoch: this.#epoch,
      seq: this.#history.seq,
      resume,
      ...(recovered === undefined ? {} : { recovered }),
      limits: this.#welcomeLimits,
      ...(counting ? { presenceCount: this.#presence.size, presenceTruncated: true as const } : {}),
    };
    // The presence list is spliced in as text: it is serialized once per change (presence.ts).
    const text = JSON.stringify(welcome);
    const list = counting ? "[]" : this.#presence.listJson();
    this.#delivery.send(session, `${text.slice(0, -1)},"presence":${list}}`);
    // Missed messages go out before the handler returns, so nothing new can overtake them.
    if (recovered) {
      for (const page of this.#history.after(join.since!)) {
        for (const frame of page) this.#delivery.send(session, frame);
        this.#count("delivered", page.length);
      }
    }
    if (first) this.#announce("join", session.user.id, session);
    this.#sweepBy(now + this.#config.IDLE_TIMEOUT_SEC * 1000);
    return new Response(null, { status: 101, webSocket: client });
  }

  // ---- frames --------------------------------------------------------------------------

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const session = this.#sessions.get(ws);
    if (!session) return; // closing, or closed by the room: nothing it sends counts
    const now = Date.now();
    session.touch(now);
    const limited = !session.bucket.take(now);
    // A refused frame is still read, so its error carries its id and the client can fail that
    // publish at once instead of waiting out a timeout. What a flood costs stays bounded: past
    // 100 rejections in 10 s the connection is closed.
    const parsed = parseClientFrame(message, this.#config.MAX_MESSAGE_BYTES);
    if (limited) {
      this.#count("rateLimited");
      const id = "frame" in parsed ? parsed.frame.id : parsed.id;
      return this.#reject(session, "rate_limited", "too many frames; slow down", id, now);
    }
    if ("code" in parsed) return this.#reject(session, parsed.code, parsed.message, parsed.id, now);

    const frame = parsed.frame;
    switch (frame.type) {
      case "publish": {
        if (!session.can("publish")) return this.#forbidden(session, "publish", frame.id, now);
        this.#publish(session.user, frame.data, frame.id);
        return;
      }
      case "direct": {
        if (!session.can("publish")) return this.#forbidden(session, "publish", frame.id, now);
        const targets = [...this.#presence.sessionsOf(frame.to)];
        if (targets.length === 0) {
          return this.#reject(session, "not_found", `user ${frame.to} is not in the room`, frame.id, now);
        }
        const text = JSON.stringify({
          type: "direct",
          from: session.user,
          data: frame.data,
          ...(frame.id === undefined ? {} : { id: frame.id }),
        });
        for (const target of targets) this.#delivery.send(target, text);
        this.#count("delivered", targets.length);
        if (frame.id !== undefined) this.#send(session, { type: "ack", id: frame.id });
        return;
      }
      case "presence": {
        if (!session.can("publish")) return this.#forbidden(session, "publish", frame.id, now);
        this.#presence.setState(session.user.id, frame.state);
        this.#announce("update", session.user.id);
        return;
      }
      case "history": {
        if (!session.can("history")) return this.#forbidden(session, "history", frame.id, now);
        const { frames, more } = this.#history.pageFrames(frame.before, frame.limit ?? 50);
        const id = frame.id === undefined ? "" : `"id":${JSON.stringify(frame.id)},`;
        this.#delivery.send(session, `{"type":"history",${id}"messages":[${frames.join(",")}],"more":${more}}`);
        return;
      }
    }
  }

  #forbidden(session: Session, cap: Capability, id: string | undefined, now: number): void {
    this.#reject(session, "forbidden", `token lacks the ${cap} capability for this room`, id, now);
  }

  /** Answers a rejected frame; a connection that keeps sending rejected frames is closed. */
  #reject(session: Session, code: ErrorCode, message: string, id: string | undefined, now: number): void {
    if (code !== "rate_limited") this.#count("rejected");
    this.#send(session, { type: "error", code, message, ...(id === undefined ? {} : { id }) });
    if (session.rejects.record(now)) {
      this.#close(session, CloseCode.policy, "too many rejected frames");
    }
  }

  /** Stores, then delivers to everyone (the sender included): the echo is the acknowledgement. */
  #publish(from: UserRef, data: unknown, id?: string): number {
    const seq = this.#history.next();
    const text = JSON.stringify({
      type: "message",
      seq,
      ts: Date.now(),
      from,
      data,
      ...(id === undefined ? {} : { id }),
    });
    this.#history.append(seq, text);
    this.#count("published");
    this.#count("delivered", this.#delivery.broadcast(text));
    return seq;
  }

  // ---- leave ---------------------------------------------------------------------------

  override webSocketClose(ws: WebSocket, code: number): void {
    this.#drop(ws);
    // Reciprocate the peer's Close: the 2026-04-07 auto-reply flag covers accept()ed sockets,
    // not hibernatable ones, whose clients otherwise sit in CLOSING and report 1006 (the same
    // fix as partyserver#389). Reserved codes cannot be sent back, so they become 1000.
    closeQuietly(ws, code === 1005 || code === 1006 || code === 1015 ? CloseCode.normal : code, "");
  }

  override webSocketError(ws: WebSocket): void {
    this.#drop(ws);
  }

  /** A socket closed by its client or the network: remove it and announce a last leave. */
  #drop(ws: WebSocket): void {
    const session = this.#sessions.get(ws);
    if (session) {
      this.#sessions.delete(ws);
      if (this.#presence.remove(session)) this.#announceLeave(session.user);
      return;
    }
    // Not in the index: the room closed it itself (and announced then), or it closed while the
    // room slept. The second owes the others a leave unless the user is still here, or one of
    // their other sockets that closed meanwhile has announced it already.
    if (this.#closedByRoom.has(ws)) return;
    const attachment = Session.readAttachment(ws);
    if (!attachment || attachment.x) return;
    if (this.#presence.has(attachment.u) || this.#leftWhileAsleep.has(attachment.u)) return;
    this.#leftWhileAsleep.add(attachment.u);
    this.#announceLeave({ id: attachment.u, name: attachment.n });
  }

  /** The room closes a socket itself (abuse, idle): mark it, close it, announce at once. */
  #close(session: Session, code: number, reason: string): void {
    // Marked twice: in memory for this instance (the write below can throw on a socket the
    // runtime already closed), and in the attachment for an instance woken after hibernation.
    this.#closedByRoom.add(session.ws);
    session.attachment.x = true;
    try {
      session.ws.serializeAttachment(session.attachment);
    } catch {
      // already closed by the runtime: nothing to mark
    }
    this.#delivery.flush(session);
    closeQuietly(session.ws, code, reason);
    this.#sessions.delete(session.ws);
    if (this.#presence.remove(session)) this.#announceLeave(session.user);
  }

  // ---- alarm: held presence, counter flush, idle sweep -----------------------------------

  /**
   * One alarm serves every job, because timers would keep the room awake: held presence
   * announcements, unwritten counts, and the idle sweep. The sweep runs only when due, for when
   * the quietest socket could next exceed the idle timeout (pings answered by the
   * auto-response count as activity), and is rescheduled only while sockets exist.
   */
  override alarm(): void {
    this.#alarmAt = null;
    const now = Date.now();
    this.#delivery.flushHeld(now);
    if (this.#crowd.pending) this.#countSoon(now);
    this.#counters.flush();
    if (now >= this.#sweepAt) this.#sweepAt = this.#sweep(now);
    if (this.#sessions.size > 0) this.#scheduleAlarm(this.#sweepAt);
  }

  /** Closes idle sockets; returns when the next one could become idle (Infinity: none left). */
  #sweep(now: number): number {
    const idleMs = this.#config.IDLE_TIMEOUT_SEC * 1000;
    let next = Infinity;
    for (const session of [...this.#sessions.values()]) {
      const last = session.lastActive(this.ctx);
      if (now - last > idleMs) this.#close(session, CloseCode.idle, "idle timeout");
      else next = Math.min(next, last + idleMs + 1);
    }
    return next;
  }

  #sweepBy(at: number): void {
    if (this.#sweepAt > at) this.#sweepAt = at;
    this.#scheduleAlarm(at);
  }

  #scheduleAlarm(at: number): void {
    if (at === Infinity || (this.#alarmAt !== null && this.#alarmAt <= at)) return;
    this.#alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  #count(name: CounterName, n = 1): void {
    if (n > 0 && this.#counters.add(name, n)) this.#scheduleAlarm(Date.now() + FLUSH_AFTER_MS);
  }

  // ---- the Worker's HTTP routes, over RPC ---------------------------------------------

  /**
   * HTTP publishes per sender. Held here because every publish to the room passes through this
   * one instance, so the limit is exact; in memory, like the sockets' buckets (rate-limit.ts):
   * the room leaves memory only after seconds of silence, by when a bucket has refilled at any
   * sane setting. Made on first use, from the config the constructor loaded.
   */
  #publishLimits?: KeyedBuckets;

  /** The publish's seq, or how long the sender must wait. An idempotent replay publishes nothing and costs no token. */
  publish(from: UserRef, data: unknown, key?: string): PublishResult | RateLimited {
    const scoped = key === undefined ? undefined : `${from.id}\n${key}`;
    if (scoped !== undefined) {
      const earlier = this.#idempotency.get(scoped);
      if (earlier) return earlier;
    }
    this.#publishLimits ??= new KeyedBuckets(this.#config.PUBLISH_RATE_PER_SEC, this.#config.PUBLISH_BURST);
    const limited = this.#publishLimits.take(from.id);
    if (limited) {
      this.#count("rateLimited");
      return limited;
    }
    const result = { seq: this.#publish(from, data), epoch: this.#epoch };
    if (scoped !== undefined) this.#idempotency.put(scoped, result);
    return result;
  }

  history(before: number | undefined, limit: number): HistoryPage {
    return this.#history.page(before, limit);
  }

  /** At most PRESENCE_LIMIT users, and the room's count (which may be larger). */
  presence(): { users: PresenceEntry[]; count: number } {
    return { users: this.#presence.list(this.#config.PRESENCE_LIMIT), count: this.#presence.size };
  }

  stats(room: string): RoomStats {
    return {
      room,
      connections: this.#sessions.size,
      users: this.#presence.size,
      seq: this.#history.seq,
      epoch: this.#epoch,
      ...this.#counters.values,
    };
  }

  // ---- delivery (delivery.ts: order, batching, held presence) ----------------------------

  readonly #delivery = new Delivery(this.#sessions, this.batching);

  /**
   * Whether busy rooms coalesce frames (outbox.ts). Always on here; a subclass may send frame by
   * frame (the bench's comparison room). A getter, since a subclass's field would be set too late.
   */
  protected get batching(): boolean {
    return true;
  }

  #announce(event: "join" | "update", uid: string, joiner?: Session): void {
    if (this.#counted()) return;
    const user = this.#presence.user(uid);
    if (user) this.#announceText(JSON.stringify({ type: "presence", event, user }), joiner);
  }

  #announceLeave(user: UserRef): void {
    if (this.#counted()) return;
    this.#announceText(JSON.stringify({ type: "presence", event: "leave", user: { ...user, state: {} } }));
  }

  /**
   * True when the room is too big for per-user presence frames (crowd.ts): the change is told
   * as a count instead, at most once a second, on the alarm when it is not yet due.
   */
  #counted(): boolean {
    if (!this.#crowd.absorbs(this.#presence.size)) return false;
    this.#countSoon(Date.now());
    return true;
  }

  #countSoon(now: number): void {
    if (now < this.#crowd.due) {
      this.#crowd.pending = true;
      return this.#scheduleAlarm(this.#crowd.due);
    }
    const users = this.#presence.size;
    const frame = this.#crowd.tick(users, now);
    if (frame === "count") this.#delivery.broadcast(`{"type":"presence","event":"count","count":${users}}`);
    if (frame === "sync") {
      this.#delivery.broadcast(`{"type":"presence","event":"sync","users":${this.#presence.listJson()}}`);
    }
  }

  #announceText(text: string, joiner?: Session): void {
    const due = this.#delivery.announce(text, joiner);
    if (due !== null) this.#scheduleAlarm(due);
  }

  #send(session: Session, frame: ServerFrame): void {
    this.#delivery.send(session, JSON.stringify(frame));
  }
}

function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // already closing or closed
  }
}

/** 16 hex digits (64 random bits). */
function randomId(): string {
  const [a, b] = crypto.getRandomValues(new Uint32Array(2));
  return a!.toString(16).padStart(8, "0") + b!.toString(16).padStart(8, "0");
}
