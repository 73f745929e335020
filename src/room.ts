// One Durable Object per room. It owns the room's sockets through the Hibernation API, its
// message log, presence and counters, and reads top to bottom: join, frames, leave, sweep,
// then the HTTP-side calls the Worker makes over RPC.
import { DurableObject } from "cloudflare:workers";
import { loadConfig, type Config } from "./config";
import { Counters, FLUSH_AFTER_MS, type CounterName } from "./counters";
import { Delivery } from "./delivery";
import type { Env } from "./env";
import { History } from "./history";
import { IdempotencyKeys } from "./idempotency";
import { UNBATCHED_ROOM_PREFIX } from "./outbox";
import { Presence } from "./presence";
import {
  CloseCode,
  parseClientFrame,
  PING,
  PONG,
  type Capability,
  type ErrorCode,
  type HistoryPage,
  type PresenceEntry,
  type PublishResult,
  type RoomStats,
  type ServerFrame,
  type UserRef,
  type WelcomeFrame,
} from "./protocol";
import { capsToBits, Session, type Attachment, type Limits } from "./session";

/** What the Worker tells the room about a verified upgrade (an internal header, never the client's). */
export interface Join {
  room: string;
  user: UserRef;
  caps: Capability[];
  since?: number;
  epoch?: string;
}
export const JOIN_HEADER = "x-edgerooms-join";

export class Room extends DurableObject<Env> {
  readonly #config: Config;
  readonly #limits: Limits;
  readonly #sql: SqlStorage;
  readonly #epoch: string;
  readonly #history: History;
  readonly #presence: Presence;
  readonly #counters: Counters;
  /** How many times the room's object has been started (counters.ts). */
  readonly #starts: number;
  readonly #idempotency: IdempotencyKeys;
  /** Live sessions by socket: the in-memory index the hot path reads instead of getWebSockets(). */
  readonly #sessions = new Map<WebSocket, Session>();
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
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.#epoch = this.#loadEpoch();
    this.#history = new History(this.#sql, this.#config.HISTORY_LIMIT);
    this.#presence = new Presence(this.#sql);
    this.#counters = new Counters(this.#sql);
    this.#starts = this.#counters.countStart();
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
   * sockets' attachments. getWebSockets() can return sockets that are already closing; those
   * are left out and their close event is announced when it arrives (see #drop).
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

  #loadEpoch(): string {
    const row = this.#sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = 'epoch'`).toArray()[0];
    if (row) return row.value;
    // A new epoch only when the room's storage is new: history from another epoch cannot resume.
    const epoch = randomId();
    this.#sql.exec(`INSERT INTO meta (key, value) VALUES ('epoch', ?)`, epoch);
    return epoch;
  }

  // ---- join ----------------------------------------------------------------------------

  override async fetch(request: Request): Promise<Response> {
    const header = request.headers.get(JOIN_HEADER);
    if (!header || request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("room endpoint is internal", { status: 400 });
    }
    const join = JSON.parse(header) as Join;
    if (this.#config.BENCH_FLOOR && join.room.startsWith(UNBATCHED_ROOM_PREFIX)) this.#delivery.outbox.batching = false;
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    const now = Date.now();
    const attachment: Attachment = {
      v: 1,
      c: randomId(),
      u: join.user.id,
      n: join.user.name,
      k: capsToBits(join.caps),
      s: now,
    };
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment(attachment);
    const session = new Session(server, attachment, this.#limits);
    this.#sessions.set(server, session);
    const first = this.#presence.add(session);

    const recovered =
      join.since === undefined ? undefined : join.epoch === this.#epoch && this.#history.covers(join.since);
    const welcome: Omit<WelcomeFrame, "presence"> = {
      type: "welcome",
      room: join.room,
      connectionId: attachment.c,
      user: session.user,
      epoch: this.#epoch,
      seq: this.#history.seq,
      ...(recovered === undefined ? {} : { recovered }),
    };
    // The presence list is spliced in as text: it is serialized once per change (presence.ts).
    const text = JSON.stringify(welcome);
    this.#delivery.send(session, `${text.slice(0, -1)},"presence":${this.#presence.listJson()}}`);
    // Missed messages go out before the handler returns, so nothing new can overtake them.
    if (recovered) {
      const missed = this.#history.after(join.since!);
      for (const frame of missed) this.#delivery.send(session, frame);
      this.#count("delivered", missed.length);
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
    // Not in the index: either the room closed it (and announced) already, or it was closing
    // when the room woke up. Only the second still owes the others a leave.
    const attachment = Session.readAttachment(ws);
    if (attachment && !attachment.x && !this.#presence.has(attachment.u)) {
      this.#announceLeave({ id: attachment.u, name: attachment.n });
    }
  }

  /** The room closes a socket itself (abuse, idle): mark it, close it, announce at once. */
  #close(session: Session, code: number, reason: string): void {
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

  publish(from: UserRef, data: unknown, key?: string): PublishResult {
    const scoped = key === undefined ? undefined : `${from.id}\n${key}`;
    if (scoped !== undefined) {
      const earlier = this.#idempotency.get(scoped);
      if (earlier) return earlier;
    }
    const result = { seq: this.#publish(from, data), epoch: this.#epoch };
    if (scoped !== undefined) this.#idempotency.put(scoped, result);
    return result;
  }

  history(before: number | undefined, limit: number): HistoryPage {
    return this.#history.page(before, limit);
  }

  presence(): { users: PresenceEntry[] } {
    return { users: this.#presence.list() };
  }

  stats(room: string): RoomStats {
    return {
      room,
      connections: this.#sessions.size,
      users: this.#presence.size,
      seq: this.#history.seq,
      epoch: this.#epoch,
      starts: this.#starts,
      ...this.#counters.values,
    };
  }

  // ---- delivery (delivery.ts: order, batching, held presence) ----------------------------

  readonly #delivery = new Delivery(this.#sessions);

  #announce(event: "join" | "update", uid: string, joiner?: Session): void {
    const user = this.#presence.user(uid);
    if (user) this.#announceText(JSON.stringify({ type: "presence", event, user }), joiner);
  }

  #announceLeave(user: UserRef): void {
    this.#announceText(JSON.stringify({ type: "presence", event: "leave", user: { ...user, state: {} } }));
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
