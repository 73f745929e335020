// One Durable Object per room. It owns the room's sockets through the Hibernation API, its
// message log, presence and counters, and reads top to bottom: join, frames, leave, sweep,
// then the HTTP-side calls the Worker makes over RPC. A room that SHARDED_ROOMS names is served
// by several objects of this class (shards.ts): its root sequences and owns no sockets, its
// shards own sockets and take their view of the room from the root; the two roles' own calls
// follow the HTTP ones, and the places where a shard acts differently say so where they branch.
import { DurableObject } from "cloudflare:workers";
import { loadConfig, shardsFor, type Config } from "../config";
import { capabilitiesFor, verifyToken } from "../auth";
import { errorResponse, failure, isFailure, type Failure } from "../http";
import { Bans, type Ban } from "./bans";
import { Counters, FLUSH_WITHIN_MS, type CounterName } from "./counters";
import { Crowd } from "./crowd";
import { Delivery } from "./delivery";
import type { Env } from "../env";
import { History, replayFrame } from "./history";
import { IdempotencyKeys } from "./idempotency";
import { Presence } from "./presence";
import { KeyedBuckets, type RateLimited } from "./rate-limit";
import { ResumeTokens } from "./resume-token";
import { Serial } from "./serial";
import {
  Fanout,
  Mirror,
  shardName,
  ShardedMembers,
  Tail,
  type MemberCount,
  type ShardRole,
  type ShardTarget,
  type Snapshot,
  type StreamItem,
  TAIL_SIZE,
} from "./shards";
import {
  CloseCode,
  parseClientFrame,
  PING,
  PONG,
  type Capability,
  type ConnectionLimits,
  HISTORY_PAGE_DEFAULT,
  type DeleteResult,
  type ErrorCode,
  type HistoryPage,
  type KickResult,
  type PresenceEntry,
  type PublishResult,
  type RoomStats,
  type ServerFrame,
  type UserRef,
  type WelcomeFrame,
} from "../protocol";
import { capsToBits, Session, type Attachment, type Limits } from "./session";
import { Webhooks } from "./webhooks";

/** What the Worker tells the room about a verified upgrade (an internal header, never the client's). */
export interface Join {
  room: string;
  user: UserRef;
  caps: Capability[];
  /** the token's expiry, unix seconds */
  exp: number;
  since?: number;
  epoch?: string;
  /** the resume token of the client's last welcome (resume-token.ts) */
  resume?: string;
  /** set when the room is sharded (shards.ts): which shard object this is */
  shard?: { index: number; count: number };
}

/** What a shard holds of the root's state (shards.ts); made by its first snapshot. */
interface ShardState {
  role: ShardRole;
  /** One stub, so publishes reach the root in the order they were sent; replaced after it threw. */
  root: DurableObjectStub<Room>;
  epoch: string;
  tokens: ResumeTokens;
  /** the last seq delivered to this shard's sockets (stored: hibernation must not lose it) */
  head: number;
  tail: Tail;
  mirror: Mirror;
  /** stream calls, repairs and kicks, one after another (a gap is repaired before anything newer goes out) */
  intake: Serial;
  /** the highest seq the root is known to have reached: what a retry repairs up to */
  want: number;
  /** a step or a report failed: the next alarm resyncs from the root */
  retry: boolean;
  /** users (id → name) whose count the root is told next, together once this turn's events have run */
  reports: Map<string, string>;
  /** the next report is the whole membership, replacing what the root had for this shard */
  replace: boolean;
}
export const JOIN_HEADER = "x-edgerooms-join";

export class Room extends DurableObject<Env> implements ShardTarget {
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
  /** How many times the room's object has been started (counters.ts). */
  readonly #starts: number;
  readonly #idempotency: IdempotencyKeys;
  /** Kicked users' bans: the root's own, or a shard's copy of its root's (shards.ts). */
  readonly #bans: Bans;
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
  /** This room's name, once a call has told it (stored: an alarm or a shard's call arrives without it). */
  #name: string | undefined;
  /** Root of a sharded room (shards.ts): the stream to its shards, and who is on which. */
  #fanout: Fanout | null = null;
  #members: ShardedMembers | null = null;
  /** A shard of a sharded room: its role is stored, its view of the root made on first need. */
  #role: ShardRole | null = null;
  #shard: Promise<ShardState> | null = null;
  /** The room's events for WEBHOOK_URL (webhooks.ts); null when unset, and on a shard (its root tells them). */
  #webhooks: Webhooks | null = null;

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
    this.#starts = this.#counters.countStart();
    this.#idempotency = new IdempotencyKeys(this.#sql);
    this.#bans = new Bans(this.#sql);
    // Answered by the runtime itself, without waking a hibernated room.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
    this.#rebuild();
    const role = this.#sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = 'shard_role'`).toArray()[0];
    if (role) {
      this.#role = JSON.parse(role.value) as ShardRole;
      // A shard that restarted lost the sockets its root counted, without close events: it
      // reports its whole membership again, replacing what the root had for it.
      void this.#shardState()
        .then((shard) => this.#reportAll(shard))
        .catch(reportLost);
    }
    const name = this.#sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = 'room'`).toArray()[0];
    if (name) this.#named(name.value, true);
    if (this.#config.WEBHOOK_URL && !this.#role) {
      this.#webhooks = new Webhooks(
        this.#sql,
        env.WEBHOOKS!, // loadConfig refuses WEBHOOK_URL without the binding
        () => ({ room: this.#name!, epoch: this.#epoch }),
        (at) => this.#scheduleAlarm(at),
      );
      // Users whose sockets died with the last instance (a deploy, a crash) left without a close event.
      this.#webhooks.reconcile((uid) => (this.#members ? this.#members.entry(uid) !== undefined : this.#presence.has(uid)));
      this.#webhooks.drain();
    }
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- a throw inside resets the object (blockConcurrencyWhile's contract): nothing is left to handle it
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
    if (join.shard) return this.#joinShard(join);
    this.#named(join.room);
    // Where this user's connections provably started: a valid token from an earlier welcome
    // carries its start forward, anything else starts at the seq this welcome will carry.
    const scope = { room: join.room, epoch: this.#epoch, user: join.user.id };
    const proven = await this.#resumeTokens.verify(join.resume, scope);
    const { start, token: resume } = await this.#resumeTokens.forWelcome(scope, join.resume, proven, () => this.#history.seq);

    // Without `history`, a resume may replay only what this user could have received live:
    // messages after its start. `since` below the start (or no token at all) recovers nothing.
    const replayFrom = join.caps.includes("history") ? 0 : start;
    const recovered =
      join.since === undefined ? undefined : join.epoch === this.#epoch && join.since >= replayFrom && this.#history.covers(join.since);
    return this.#admit(join, {
      epoch: this.#epoch,
      seq: this.#history.seq,
      resume,
      recovered,
      missed: recovered ? this.#history.after(join.since!) : [],
    });
  }

  /**
   * Accepts the socket and welcomes it, then sends what it missed: all in one synchronous run,
   * so nothing new can overtake the replay. Shared by rooms and shards (#joinShard). The ban is
   * checked here, in the same run as the accept: a kick while the join awaited (a token check,
   * a root call) has set the ban by now, and its close would have missed this socket.
   */
  #admit(join: Join, w: { epoch: string; seq: number; resume: string; recovered?: boolean; missed: Iterable<string[]> }): Response {
    const banned = this.#refuseBanned(join.user.id);
    if (banned) return banned;
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    const now = Date.now();
    const attachment: Attachment = {
      v: 1,
      c: randomId(),
      u: join.user.id,
      n: join.user.name,
      k: capsToBits(join.caps),
      s: now,
      e: join.exp,
    };
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment(attachment);
    const session = new Session(server, attachment, this.#limits);
    this.#sessions.set(server, session);
    const first = this.#presence.add(session);
    if (first) this.#leftWhileAsleep.delete(session.user.id); // its next leave is owed again

    // Above PRESENCE_LIMIT users the welcome carries a count instead of the list (crowd.ts); a
    // shard welcomes from its mirror of the root's room-wide list.
    const mirror = this.#role ? this.#shardNow()!.mirror : null;
    mirror?.ensure(session.user, session.order);
    const users = mirror ? mirror.size : this.#presence.size;
    const counting = mirror ? mirror.counting !== null : this.#crowd.absorbs(users);
    const welcome: Omit<WelcomeFrame, "presence"> = {
      type: "welcome",
      room: join.room,
      connectionId: attachment.c,
      user: session.user,
      epoch: w.epoch,
      seq: w.seq,
      resume: w.resume,
      exp: join.exp,
      ...(w.recovered === undefined ? {} : { recovered: w.recovered }),
      limits: this.#welcomeLimits,
      ...(counting ? { presenceCount: users, presenceTruncated: true as const } : {}),
    };
    // The presence list is spliced in as text: it is serialized once per change (presence.ts).
    const text = JSON.stringify(welcome);
    const list = counting ? "[]" : (mirror ?? this.#presence).listJson();
    this.#delivery.send(session, `${text.slice(0, -1)},"presence":${list}}`);
    for (const page of w.missed) {
      for (const frame of page) this.#delivery.send(session, frame);
      this.#count("delivered", page.length);
    }
    this.#joined(session, first);
    this.#sweepBy(Math.min(now + this.#config.IDLE_TIMEOUT_SEC * 1000, session.expiresAt));
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * A join on a shard of a sharded room: as above, but from the shard's view of the root (its
   * head, its tail of recent messages, its presence mirror). Only what the tail lacks is asked
   * of the root, so a whole room reconnecting at once does not become a root call per client.
   */
  async #joinShard(join: Join): Promise<Response> {
    if (!this.#role) {
      this.#role = { room: join.room, index: join.shard!.index, count: join.shard!.count };
      this.#sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('shard_role', ?)`, JSON.stringify(this.#role));
    }
    const shard = await this.#shardState();
    // A client that saw more on another shard than this one has delivered yet: catch up first.
    if (join.since !== undefined && join.epoch === shard.epoch && join.since > shard.head) {
      const since = join.since;
      await shard.intake.run(() => this.#repair(shard, since));
    }
    const scope = { room: join.room, epoch: shard.epoch, user: join.user.id };
    const proven = await shard.tokens.verify(join.resume, scope);
    const replayFrom = join.caps.includes("history") ? 0 : (proven ?? shard.head);
    const since = join.since;
    let recovered = since === undefined ? undefined : join.epoch === shard.epoch && since >= replayFrom && since <= shard.head;
    // What the tail cannot answer comes from the root, up to the head at the time of asking.
    let fetched: { frames: string[]; upTo: number } | null = null;
    if (recovered && shard.tail.after(since!, shard.head) === undefined) {
      const upTo = shard.head;
      const { first, frames } = await this.#toRoot(shard, (root) => root.range(since! + 1, upTo));
      if (first !== since! + 1)
        recovered = false; // some of it is past the root's retention
      else fetched = { frames: frames.map((f, i) => replayFrame(f, first + i)), upTo };
    }
    const { token: resume } = await shard.tokens.forWelcome(scope, join.resume, proven, () => shard.head);
    // The rest (what reached the shard while this join awaited) is in the tail by now.
    const rest = recovered ? shard.tail.after(fetched ? fetched.upTo : since!, shard.head) : [];
    if (rest === undefined) recovered = false;
    return this.#admit(join, {
      epoch: shard.epoch,
      seq: shard.head,
      resume,
      recovered,
      missed: recovered ? [fetched?.frames ?? [], rest ?? []] : [],
    });
  }

  /** A banned user's upgrade gets 403 `banned`, with how long the ban has left. */
  #refuseBanned(uid: string): Response | null {
    const banned = this.#banned(uid);
    return banned && errorResponse(banned);
  }

  // ---- frames --------------------------------------------------------------------------

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const session = this.#sessions.get(ws);
    if (!session) return; // closing, or closed by the room: nothing it sends counts
    const now = Date.now();
    // Past its token's expiry a connection is done, whether or not the alarm has acted yet.
    if (this.#expire(session, now)) return;
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
        // A shard's publishes are sequenced by the root; the echo comes back in its stream.
        if (this.#role) return this.#viaRoot(session, frame.id, (root, room) => root.shardPublish(room, session.user, frame.data, frame.id));
        this.#publish(session.user, frame.data, frame.id);
        return;
      }
      case "direct": {
        if (!session.can("publish")) return this.#forbidden(session, "publish", frame.id, now);
        if (this.#role) {
          const text = directText(session.user, frame.data, frame.id);
          return this.#viaRoot<boolean>(
            session,
            frame.id,
            (root, room) => root.shardDirect(room, session.user.id, frame.to, text),
            (sent) => {
              if (!sent) return this.#reject(session, "not_found", `user ${frame.to} is not in the room`, frame.id, Date.now());
              if (frame.id !== undefined) this.#send(session, { type: "ack", id: frame.id });
            },
          );
        }
        const targets = [...this.#presence.sessionsOf(frame.to)];
        if (targets.length === 0) {
          return this.#reject(session, "not_found", `user ${frame.to} is not in the room`, frame.id, now);
        }
        const text = directText(session.user, frame.data, frame.id);
        for (const target of targets) this.#delivery.send(target, text);
        this.#count("delivered", targets.length);
        if (frame.id !== undefined) this.#send(session, { type: "ack", id: frame.id });
        return;
      }
      case "presence": {
        if (!session.can("publish")) return this.#forbidden(session, "publish", frame.id, now);
        if (this.#role) return this.#viaRoot(session, frame.id, (root, room) => root.shardState(room, session.user.id, frame.state));
        this.#presence.setState(session.user.id, frame.state);
        this.#announce("update", session.user.id);
        return;
      }
      case "refresh":
        this.#refresh(session, frame.token, frame.id).catch(() => {
          // Only the attachment write can throw, on a socket that closed during the check: nobody to answer.
        });
        return;
      case "history": {
        if (!session.can("history")) return this.#forbidden(session, "history", frame.id, now);
        const limit = frame.limit ?? HISTORY_PAGE_DEFAULT;
        const id = frame.id === undefined ? "" : `"id":${JSON.stringify(frame.id)},`;
        const answer = ({ frames, more }: HistoryFrames) =>
          this.#delivery.send(session, `{"type":"history",${id}"messages":[${frames.join(",")}],"more":${more}}`);
        if (this.#role)
          return this.#viaRoot<HistoryFrames>(session, frame.id, (root) => root.historyFrames(session.user.id, frame.before, limit), answer);
        answer(this.#history.pageFrames(frame.before, limit));
        return;
      }
    }
  }

  /**
   * A fresh token for a live connection, verified exactly as the Worker verifies one (same keys,
   * algorithms, `iss`/`aud`). It must be the same user's; its expiry and this room's capabilities
   * replace the connection's. A bad one changes nothing; one that no longer grants `subscribe`
   * ends the connection (4403).
   */
  async #refresh(session: Session, token: string, id: string | undefined): Promise<void> {
    const identity = await verifyToken(token, this.#config);
    if (!this.#sessions.has(session.ws)) return; // closed while the token was checked
    const now = Date.now();
    if (isFailure(identity)) {
      const code = identity.code === "auth_unavailable" ? "auth_unavailable" : "unauthorized";
      return this.#reject(session, code, `refresh refused: ${identity.message}`, id, now);
    }
    if (identity.id !== session.user.id) {
      return this.#reject(session, "unauthorized", "refresh refused: the token is for another user", id, now);
    }
    const caps = capabilitiesFor(identity, this.#role?.room ?? this.#name!);
    if (!caps.has("subscribe")) return this.#close(session, CloseCode.forbidden, "token no longer grants subscribe");
    session.attachment.k = capsToBits(caps);
    session.attachment.e = identity.exp;
    session.ws.serializeAttachment(session.attachment);
    // A shorter lifetime than the sweep was set for must still end on time.
    this.#sweepBy(session.expiresAt);
    if (id !== undefined) this.#send(session, { type: "ack", id, exp: identity.exp });
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
    const ts = Date.now();
    const text = JSON.stringify({ type: "message", seq, ts, from, data, ...(id === undefined ? {} : { id }) });
    this.#history.append(seq, text);
    this.#webhooks?.emit({ type: "message", ts, seq, from, data, ...(id === undefined ? {} : { clientId: id }) });
    this.#count("published");
    this.#count("delivered", this.#delivery.broadcast(text));
    this.#fanout?.push({ text, seq });
    // In the INSERT's transaction: no commit of its own, and no alarm while the room keeps publishing.
    this.#counters.flushDue(ts);
    return seq;
  }

  // ---- leave ---------------------------------------------------------------------------

  override webSocketClose(ws: WebSocket, code: number): void {
    this.#drop(ws);
    answerClose(ws, code);
  }

  override webSocketError(ws: WebSocket): void {
    this.#drop(ws);
  }

  /** A socket closed by its client or the network: remove it and announce a last leave. */
  #drop(ws: WebSocket): void {
    const session = this.#sessions.get(ws);
    if (session) {
      this.#sessions.delete(ws);
      this.#left(session.user, this.#presence.remove(session));
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
    this.#left({ id: attachment.u, name: attachment.n }, true);
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
    this.#left(session.user, this.#presence.remove(session));
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
    // Shards whose call failed are resynced (root); a shard whose own step failed resyncs itself.
    if (this.#fanout?.failed.size) this.#fanout.flush(this.#history.seq);
    if (this.#shardReady?.retry) this.#retry(this.#shardReady);
    this.#counters.flush(now);
    this.#webhooks?.drain();
    if (now >= this.#sweepAt) this.#sweepAt = this.#sweep(now);
    if (this.#sessions.size > 0) this.#scheduleAlarm(this.#sweepAt);
  }

  /** Closes idle sockets; returns when the next one could become idle (Infinity: none left). */
  #sweep(now: number): number {
    const idleMs = this.#config.IDLE_TIMEOUT_SEC * 1000;
    let next = Infinity;
    for (const session of [...this.#sessions.values()]) {
      if (this.#expire(session, now)) continue;
      const last = session.lastActive(this.ctx);
      if (now - last > idleMs) this.#close(session, CloseCode.idle, "idle timeout");
      else next = Math.min(next, last + idleMs + 1, session.expiresAt);
    }
    return next;
  }

  /** Closes `session` with 4401 when its token has expired by `now`; true when it did. */
  #expire(session: Session, now: number): boolean {
    if (now < session.expiresAt) return false;
    this.#close(session, CloseCode.tokenExpired, "token expired");
    return true;
  }

  #sweepBy(at: number): void {
    if (this.#sweepAt > at) this.#sweepAt = at;
    this.#scheduleAlarm(at);
  }

  #scheduleAlarm(at: number): void {
    if (at === Infinity || (this.#alarmAt !== null && this.#alarmAt <= at)) return;
    this.#alarmAt = at;
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- a failed write breaks the output gate and resets the object; the caller is synchronous
    void this.ctx.storage.setAlarm(at);
  }

  #count(name: CounterName, n = 1): void {
    if (n > 0 && this.#counters.add(name, n)) this.#scheduleAlarm(Date.now() + FLUSH_WITHIN_MS);
  }

  // ---- the Worker's HTTP routes, over RPC ---------------------------------------------

  /**
   * HTTP publishes per sender. Held here because every publish to the room passes through this
   * one instance, so the limit is exact; in memory, like the sockets' buckets (rate-limit.ts):
   * the room leaves memory only after seconds of silence, by when a bucket has refilled at any
   * sane setting. Made on first use, from the config the constructor loaded.
   */
  #publishLimits?: KeyedBuckets;

  /**
   * `banned` (403, with the seconds left as Retry-After) while `uid` is banned from this room;
   * null when not. Every path that acts as a user asks: upgrades (#refuseBanned) and each HTTP
   * route below, admin ones included (a banned admin's token still acts as that user; another
   * admin can lift the ban). A sharded room's HTTP routes reach its root, which holds the bans.
   */
  #banned(uid: string): Failure | null {
    const until = this.#bans.until(uid);
    if (until === undefined) return null;
    const left = Math.ceil((until - Date.now()) / 1000);
    return failure("banned", `user ${uid} is banned from this room for ${left} more seconds`, left);
  }

  /**
   * The publish's seq, or how long the sender must wait, or `banned`. An idempotent replay
   * publishes nothing and costs no token; a banned sender's publish (a replay too) stores,
   * sends and numbers nothing.
   */
  publish(room: string, from: UserRef, data: unknown, key?: string): PublishResult | RateLimited | Failure {
    this.#named(room);
    const banned = this.#banned(from.id);
    if (banned) return banned;
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

  /**
   * Closes every socket of `uid` with 4403 (on every shard of a sharded room) and sets its ban
   * when `banSec` is given. The ban goes first, so a reconnect racing the close is refused.
   */
  async kick(room: string, actor: string, uid: string, banSec: number | undefined, reason: string | undefined): Promise<KickResult | Failure> {
    this.#named(room);
    const banned = this.#banned(actor);
    if (banned) return banned;
    const ban: Ban | undefined = banSec === undefined ? undefined : { uid, until: Date.now() + banSec * 1000 };
    if (ban) this.#bans.set(ban);
    const why = closeReason(reason);
    let closed = this.#kickHere(uid, why);
    if (this.#fanout) {
      // A root that dies before every shard has the ban resyncs them all when this alarm wakes it.
      if (ban) this.#scheduleAlarm(Date.now() + REPAIR_AFTER_MS);
      // Every shard, not only those a report placed the user on: one may be admitting a socket
      // of theirs right now. Each sets the ban before it closes, as here.
      for (const n of await this.#fanout.everyShard((shard) => shard.shardKick(uid, why, ban))) closed += n;
    }
    this.#webhooks?.emit({
      type: "kick",
      user: uid,
      closed,
      ...(banSec === undefined ? {} : { banSec }),
      ...(reason === undefined ? {} : { reason }),
    });
    return { closed };
  }

  /** Closes this object's own sockets of `uid` (a kick); its leave goes out as for any last connection. */
  #kickHere(uid: string, reason: string): number {
    const sessions = [...this.#presence.sessionsOf(uid)];
    for (const session of sessions) this.#close(session, CloseCode.forbidden, reason);
    return sessions.length;
  }

  /**
   * Removes message `seq` from history (pages, replays, shards' tails) and tells every socket;
   * null when the room never had it or no longer holds it.
   */
  deleteMessage(room: string, actor: string, seq: number): DeleteResult | Failure | null {
    this.#named(room);
    const banned = this.#banned(actor);
    if (banned) return banned;
    if (!this.#history.delete(seq)) return null;
    this.#webhooks?.emit({ type: "delete", seq });
    const text = JSON.stringify({ type: "delete", seq });
    this.#count("delivered", this.#delivery.broadcast(text));
    if (this.#fanout) {
      this.#fanout.push({ text, deleted: seq });
      // As for a ban: should this instance die before the stream call goes out, the alarm wakes
      // a new one, which resyncs every shard (and each re-reads its deletes from here).
      this.#scheduleAlarm(Date.now() + REPAIR_AFTER_MS);
    }
    return { deleted: seq };
  }

  history(room: string, actor: string, before: number | undefined, limit: number): HistoryPage | Failure {
    this.#named(room);
    return this.#banned(actor) ?? this.#history.page(before, limit);
  }

  /** At most PRESENCE_LIMIT users, and the room's count (which may be larger). */
  presence(room: string, actor: string): { users: PresenceEntry[]; count: number } | Failure {
    this.#named(room);
    const limit = this.#config.PRESENCE_LIMIT;
    return this.#banned(actor) ?? { users: (this.#members ?? this.#presence).list(limit), count: this.#users };
  }

  /** A sharded room's adds each shard's connections (in shard order) and sums them. */
  async stats(room: string, actor: string): Promise<RoomStats | Failure> {
    this.#named(room);
    const banned = this.#banned(actor);
    if (banned) return banned;
    const stats: RoomStats = {
      room,
      connections: this.#sessions.size,
      users: this.#users,
      seq: this.#history.seq,
      epoch: this.#epoch,
      starts: this.#starts,
      ...this.#counters.values,
    };
    if (!this.#fanout) return stats;
    const fanout = this.#fanout;
    const shards = await Promise.all(Array.from({ length: fanout.count }, (_, i) => fanout.stubOf(i).shardStats()));
    for (const s of shards) {
      stats.connections += s.connections;
      stats.delivered += s.delivered;
    }
    return { ...stats, shards: shards.map((s) => ({ connections: s.connections })) };
  }

  // ---- sharded rooms (shards.ts): the root's side -----------------------------------------

  /**
   * The room's name, from the first call that carries it (stored for calls that do not: alarms,
   * shards' calls after a restart). A room that SHARDED_ROOMS names becomes its shards' root.
   */
  #named(room: string, waking = false): void {
    // Decided once per instance: the name and the config cannot change while it lives.
    if (this.#role || this.#name !== undefined) return;
    this.#name = room;
    if (!waking) this.#sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('room', ?)`, room);
    const count = shardsFor(this.#config, room);
    if (count < 2) return;
    // Counts from shards beyond today's count (SHARDED_ROOMS lowered in a deploy) would be ghosts:
    // no socket can reach those shards again, so none would ever report them gone.
    this.#members = new ShardedMembers(this.#sql, count);
    this.#fanout = new Fanout(
      count,
      (i) => this.env.ROOMS.get(this.env.ROOMS.idFromName(shardName(room, i))),
      () => this.#scheduleAlarm(Date.now() + REPAIR_AFTER_MS),
    );
    // A restarted root may have lost calls it had queued or in flight, and may still count
    // sockets that died with a shard: every shard repairs up to its seq, re-reads moderation
    // and reports its whole membership again.
    if (waking) this.#fanout.resync(this.#history.seq);
  }

  /** A shard's view of this root at one instant (shards.ts); `deletedFrom`: with the deletes from that seq on. */
  snapshot(room: string, deletedFrom?: number): Snapshot {
    this.#named(room);
    const users = this.#crowd.counting ? null : (this.#members?.list() ?? []);
    return {
      epoch: this.#epoch,
      seq: this.#history.seq,
      resumeKey: this.#meta("resume_key"),
      users,
      shards: this.#perShard(users ?? []),
      count: this.#users,
      bans: this.#bans.list(),
      deleted: deletedFrom === undefined ? [] : this.#history.deletedFrom(deletedFrom),
    };
  }

  #perShard(users: PresenceEntry[]): Record<string, [number, number][]> {
    return Object.fromEntries(users.map((u) => [u.id, this.#members!.perShard(u.id)]));
  }

  /**
   * Stored messages from `first` to at most `to`, one entry per seq (a deleted one as TOMBSTONE,
   * so the shard's count of seqs stays right). `first` is `from` unless messages from `from` on
   * are past retention: then the oldest retained one. Nothing past this root's seq: a shard
   * asks on a client's word too (a resume's `since`), and must never skip ahead of what is to come.
   */
  range(from: number, to: number): { first: number; frames: string[] } {
    const first = Math.max(from, this.#history.oldest());
    if (first > to || first > this.#history.seq) return { first: Math.min(first, this.#history.seq + 1), frames: [] };
    const frames: string[] = [];
    for (const page of this.#history.rows(first - 1)) {
      frames.push(...page.slice(0, to - first + 1 - frames.length));
      if (frames.length > to - first) break;
    }
    return { first, frames };
  }

  // A shard's frames, sent on by the root. Each checks the sender's ban, as every path that acts
  // as a user does: a shard that has not heard of a ban yet must not let its user act.

  historyFrames(uid: string, before: number | undefined, limit: number): HistoryFrames | Failure {
    return this.#banned(uid) ?? this.#history.pageFrames(before, limit);
  }

  /** A publish accepted by a shard; its echo returns in the stream like every other copy. */
  shardPublish(room: string, from: UserRef, data: unknown, id?: string): Failure | null {
    this.#named(room);
    const banned = this.#banned(from.id);
    if (!banned) this.#publish(from, data, id);
    return banned;
  }

  /** A direct message for `to`, wherever its sockets are; false when the user is not in the room. */
  shardDirect(room: string, from: string, to: string, text: string): boolean | Failure {
    this.#named(room);
    const banned = this.#banned(from);
    if (banned) return banned;
    const shards = this.#members?.shardsOf(to) ?? [];
    if (shards.length === 0) return false;
    this.#fanout!.push({ text, to }, shards);
    return true;
  }

  shardState(room: string, uid: string, state: Record<string, unknown>): Failure | null {
    this.#named(room);
    const banned = this.#banned(uid);
    if (banned) return banned;
    this.#members?.setState(uid, state);
    this.#announce("update", uid);
    return null;
  }

  /** A shard's member counts (`replace`: its whole membership); joins and leaves follow from them. */
  shardMembers(room: string, shard: number, counts: MemberCount[], replace: boolean): void {
    this.#named(room);
    if (!this.#members) return;
    const { joined, left, changed } = this.#members.report(shard, counts, replace);
    for (const uid of left) this.#announceLeave({ id: uid, name: counts.find((c) => c.uid === uid)?.name ?? uid });
    for (const uid of joined) this.#announce("join", uid);
    for (const uid of changed) this.#announce("conns", uid);
  }

  // ---- sharded rooms (shards.ts): a shard's side ------------------------------------------

  /** The shard's view of its root, made once per instance from a snapshot (retried after a failure). */
  #shardState(): Promise<ShardState> {
    this.#shard ??= this.#snapshotFrom(this.#role!).catch((err: unknown) => {
      this.#shard = null;
      throw err;
    });
    return this.#shard;
  }

  #shardReady: ShardState | undefined;

  /** The shard's state once made (a join awaits it before it welcomes anyone). */
  #shardNow(): ShardState | undefined {
    return this.#shardReady;
  }

  #rootOf(role: ShardRole): DurableObjectStub<Room> {
    return this.env.ROOMS.get(this.env.ROOMS.idFromName(role.room));
  }

  /** A call to the root; a stub that threw is replaced (it may stay broken), and the error is the caller's. */
  async #toRoot<T>(shard: ShardState, call: (root: DurableObjectStub<Room>) => Promise<T>): Promise<T> {
    try {
      return await call(shard.root);
    } catch (err) {
      shard.root = this.#rootOf(shard.role);
      throw err;
    }
  }

  async #snapshotFrom(role: ShardRole): Promise<ShardState> {
    const root = this.#rootOf(role);
    // (RPC types turn `unknown` presence state into `never`; the value is the Snapshot sent.)
    const snap = await (root.snapshot(role.room) as Promise<Snapshot>);
    // The head the sockets here last got survives hibernation; a new shard, or one whose root
    // lost its storage (a new epoch), starts at the root's seq.
    const stored = this.#sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = 'shard_head'`).toArray()[0];
    const kept = stored ? (JSON.parse(stored.value) as { epoch: string; head: number }) : undefined;
    const head = kept && kept.epoch === snap.epoch ? kept.head : snap.seq;
    const mirror = new Mirror(role.index, (uid) => this.#presence.connections(uid));
    mirror.reset(snap, Session.nextOrder);
    const shard: ShardState = {
      role,
      root,
      epoch: snap.epoch,
      tokens: new ResumeTokens(snap.resumeKey),
      head,
      tail: new Tail(),
      mirror,
      intake: new Serial(() => this.#retrySoon(shard)),
      want: snap.seq,
      retry: false,
      reports: new Map(),
      replace: false,
    };
    this.#storeHead(shard);
    this.#shardReady = shard;
    // Sockets that outlived the last instance (hibernated) and whose user was banned meanwhile.
    this.#enforce(snap.bans);
    if (head < snap.seq) shard.intake.run(() => this.#repair(shard, snap.seq)).catch(stepFailed);
    return shard;
  }

  #storeHead(shard: ShardState): void {
    const value = JSON.stringify({ epoch: shard.epoch, head: shard.head });
    this.#sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('shard_head', ?)`, value);
  }

  /** The root's stream: messages, deletes and presence in the root's order, delivered with this shard's batching. */
  async stream(items: StreamItem[], rootSeq: number | null): Promise<void> {
    if (!this.#role) return; // no socket ever joined this shard: nobody to deliver to, nothing to keep
    const shard = await this.#shardState();
    return shard.intake.run(() => this.#take(shard, items, rootSeq));
  }

  /**
   * One stream call, item by item in the root's order: consecutive messages go out together
   * (#deliverMessages); anything else goes after the messages before it, so a delete never
   * overtakes its own message on the sockets or in the tail.
   */
  #take(shard: ShardState, items: StreamItem[], rootSeq: number | null): Promise<void> | void {
    const before = shard.head;
    let run: string[] = [];
    const sendRun = () => {
      if (run.length > 0) this.#deliverMessages(shard, run);
      run = [];
    };
    for (const [k, item] of items.entries()) {
      if (item.seq === undefined) {
        sendRun();
        if (item.deleted !== undefined && item.deleted > shard.head) {
          // Its message never reached this shard (a lost call): the repair brings the delete in its place.
          return this.#repair(shard, item.deleted).then(() => this.#take(shard, items.slice(k + 1), rootSeq));
        }
        if (item.deleted !== undefined) this.#deleted(shard, item.deleted, item.text);
        else this.#deliverEvent(shard, item);
        continue;
      }
      shard.want = Math.max(shard.want, item.seq);
      const next = shard.head + run.length + 1;
      if (item.seq < next) continue; // already delivered (a repair fetched it)
      if (item.seq > next) {
        // A gap: the root restarted, or a call failed. Fetch it before anything newer goes out.
        sendRun();
        return this.#repair(shard, item.seq - 1).then(() => this.#take(shard, items.slice(k), rootSeq));
      }
      run.push(item.text);
    }
    sendRun();
    if (shard.head !== before) this.#storeHead(shard);
    if (rootSeq !== null) return this.#resync(shard, rootSeq);
  }

  /** Message `seq` was deleted: out of the tail, and its delete to every socket here. */
  #deleted(shard: ShardState, seq: number, text = JSON.stringify({ type: "delete", seq })): void {
    shard.tail.forget(seq);
    this.#count("delivered", this.#delivery.broadcast(text));
  }

  /**
   * Calls to this shard may have been lost (the root restarted, or a call failed): what they
   * carried is recovered from the root's storage. Messages up to `rootSeq` by the gap repair;
   * bans, deletes and the presence list from a fresh snapshot; the root's count of this shard's
   * members by reporting them all again.
   */
  async #resync(shard: ShardState, rootSeq: number): Promise<void> {
    shard.want = Math.max(shard.want, rootSeq);
    await this.#repair(shard, shard.want);
    // Deletes of anything a socket here may still show: the tail's reach back from the head.
    const from = Math.max(1, shard.head - TAIL_SIZE + 1);
    // (RPC types turn `unknown` presence state into `never`; the value is the Snapshot sent.)
    const snap = await this.#toRoot(shard, (root) => root.snapshot(shard.role.room, from) as Promise<Snapshot>);
    this.#bans.replace(snap.bans);
    this.#enforce(snap.bans);
    for (const seq of snap.deleted) if (seq <= shard.head && shard.tail.forget(seq)) this.#deleted(shard, seq);
    // Presence events may have been lost too: the list is replaced, here and on every client
    // (when it changed: a root that merely woke up sends nobody anything).
    const view = () => (shard.mirror.counting === null ? `"sync","users":${shard.mirror.listJson()}` : `"count","count":${shard.mirror.counting}`);
    const before = view();
    shard.mirror.reset(snap, Session.nextOrder);
    if (view() !== before) this.#delivery.broadcast(`{"type":"presence","event":${view()}}`);
    this.#reportAll(shard);
  }

  /** Closes this shard's sockets of banned users (4403), wherever the ban came from. */
  #enforce(bans: Ban[]): void {
    for (const ban of bans) if (this.#bans.until(ban.uid) !== undefined) this.#kickHere(ban.uid, closeReason(undefined));
  }

  /** A step or a report failed: resync from the root on the next alarm. */
  #retrySoon(shard: ShardState): void {
    shard.retry = true;
    this.#scheduleAlarm(Date.now() + REPAIR_AFTER_MS);
  }

  #retry(shard: ShardState): void {
    shard.retry = false;
    shard.intake.run(() => this.#resync(shard, shard.want)).catch(stepFailed);
  }

  /** Fetches and delivers what this shard missed, up to `upTo`, a page at a time. */
  async #repair(shard: ShardState, upTo: number): Promise<void> {
    while (shard.head < upTo) {
      const to = Math.min(upTo, shard.head + REPAIR_PAGE);
      const { first, frames } = await this.#toRoot(shard, (root) => root.range(shard.head + 1, to));
      // Messages past the root's retention are gone for good: skip exactly those. A client that
      // resumes from before them is told recovered:false.
      if (first > shard.head + 1) shard.head = first - 1;
      if (frames.length === 0) {
        if (first <= to) break; // the root has nothing further (asked past its seq)
        continue;
      }
      this.#deliverMessages(shard, frames.slice(0, to - shard.head));
    }
    this.#storeHead(shard);
  }

  /**
   * The messages after the shard's head, in order, sent to each socket together
   * (Delivery.broadcastAll). A TOMBSTONE (deleted before this shard got it) goes out as its
   * delete, as in a replay, so every client's position passes it.
   */
  #deliverMessages(shard: ShardState, texts: string[]): void {
    const frames = texts.map((text) => {
      shard.tail.push(++shard.head, text);
      return replayFrame(text, shard.head);
    });
    this.#count("delivered", this.#delivery.broadcastAll(frames));
  }

  /**
   * The root's kick, after the stream items sent before it: sets the ban (if any) here, then
   * closes `uid`'s sockets, so a join that was under way is refused when it reaches #admit.
   */
  async shardKick(uid: string, reason: string, ban?: Ban): Promise<number> {
    if (!this.#role) return 0; // no socket ever joined: a first join's snapshot carries the ban
    const shard = await this.#shardState();
    return shard.intake.run(() => {
      if (ban) this.#bans.set(ban);
      return this.#kickHere(uid, reason);
    });
  }

  #deliverEvent(shard: ShardState, item: StreamItem): void {
    if (item.to !== undefined) {
      const targets = [...this.#presence.sessionsOf(item.to)];
      for (const target of targets) this.#delivery.send(target, item.text);
      this.#count("delivered", targets.length);
      return;
    }
    const before = shard.mirror.apply(item, Session.nextOrder);
    // A count change updates the mirror only; a join goes to sessions whose welcome did not list the user.
    if (item.event !== "conns") this.#announceText(item.text, before);
  }

  /** Sends a frame's work to the root; a failed call is answered as the frame's error. */
  /**
   * Sends a frame's work to the root and hands its answer to `then`. A failed call is answered as
   * the frame's `internal` error. A root that refuses the user as banned means this shard missed
   * the ban: the socket is closed as a kick would have, and the shard resyncs its bans.
   */
  #viaRoot<T>(
    session: Session,
    id: string | undefined,
    call: (root: DurableObjectStub<Room>, room: string) => Promise<T | Failure>,
    then?: (answer: T) => void,
  ): void {
    void this.#shardState()
      .then(async (shard) => {
        const answer = await this.#toRoot(shard, (root) => call(root, shard.role.room));
        if (!isFailure(answer)) return then?.(answer);
        this.#close(session, CloseCode.forbidden, closeReason(undefined));
        this.#retrySoon(shard);
      })
      .catch(() =>
        this.#send(session, { type: "error", code: "internal", message: "the room is unavailable; try again", ...(id === undefined ? {} : { id }) }),
      );
  }

  /** A socket opened here: a shard tells its root the user's count; a room announces a first connection. */
  #joined(session: Session, first: boolean): void {
    if (this.#role) return this.#report(session.user);
    if (first) this.#announce("join", session.user.id, session);
  }

  /** A socket closed here: a shard tells its root the user's count; a room announces a last connection. */
  #left(user: UserRef, last: boolean): void {
    if (this.#role) {
      this.#shardNow()?.mirror.changed();
      return this.#report(user);
    }
    if (last) this.#announceLeave(user);
  }

  /** Queues `user`'s count here for the root; reports go together once this turn's events have run. */
  #report(user: UserRef): void {
    void this.#shardState()
      .then((shard) => {
        shard.reports.set(user.id, user.name);
        this.#sendReports(shard);
      })
      .catch(reportLost);
  }

  /** This shard's whole membership, replacing what the root had (after a restart or a resync). */
  #reportAll(shard: ShardState): void {
    shard.replace = true;
    this.#sendReports(shard);
  }

  /**
   * Counts are read when the report goes, not when it was asked for: a user whose sockets
   * came and went within the turn is reported once, as they are. A report that fails is not
   * lost: the next one, on the alarm's resync, is the whole membership.
   */
  #sendReports(shard: ShardState): void {
    if (this.#reporting) return;
    this.#reporting = true;
    setTimeout(() => {
      this.#reporting = false;
      const replace = shard.replace;
      const names = shard.reports;
      if (replace) for (const uid of this.#presence.uids()) names.set(uid, this.#presence.user(uid)!.name);
      shard.reports = new Map();
      shard.replace = false;
      if (names.size === 0 && !replace) return;
      const counts: MemberCount[] = [...names].map(([uid, name]) => ({ uid, name, conns: this.#presence.connections(uid) }));
      this.#toRoot(shard, (root) => root.shardMembers(shard.role.room, shard.role.index, counts, replace)).catch(() => this.#retrySoon(shard));
    }, 0);
  }

  #reporting = false;

  shardStats(): { connections: number; delivered: number } {
    return { connections: this.#sessions.size, delivered: this.#counters.values.delivered };
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

  /**
   * A user's first connection (`joiner`), or a state change; in a sharded root also a change of
   * a user's connection count (`conns`), which only updates the shards' mirrors.
   */
  #announce(event: "join" | "update" | "conns", uid: string, joiner?: Session): void {
    const entry = this.#members ? this.#members.entry(uid) : this.#presence.user(uid);
    if (!entry) return;
    if (event === "join") this.#webhooks?.joined({ id: entry.id, name: entry.name });
    if (event === "conns") {
      if (!this.#crowd.absorbs(this.#users))
        this.#fanout!.push({ text: "", uid, event, entry: this.#members!.entry(uid)!, shards: this.#members!.perShard(uid) });
      return;
    }
    if (this.#counted()) return;
    const user = { id: entry.id, name: entry.name, state: entry.state };
    const text = JSON.stringify({ type: "presence", event, user });
    if (this.#fanout) return this.#fanout.push({ text, uid, event, entry: this.#members!.entry(uid)!, shards: this.#members!.perShard(uid) });
    this.#announceText(text, joiner?.order);
  }

  /** A user's last connection is gone. */
  #announceLeave(user: UserRef): void {
    this.#webhooks?.left(user);
    if (this.#counted()) return;
    const text = JSON.stringify({ type: "presence", event: "leave", user: { ...user, state: {} } });
    if (this.#fanout) return this.#fanout.push({ text, uid: user.id, event: "leave" });
    this.#announceText(text);
  }

  /** Users in the room: its own, or a sharded root's room-wide count. */
  get #users(): number {
    return this.#members ? this.#members.size : this.#presence.size;
  }

  /**
   * True when the room is too big for per-user presence frames (crowd.ts): the change is told
   * as a count instead, at most once a second, on the alarm when it is not yet due.
   */
  #counted(): boolean {
    if (!this.#crowd.absorbs(this.#users)) return false;
    this.#countSoon(Date.now());
    return true;
  }

  #countSoon(now: number): void {
    if (now < this.#crowd.due) {
      this.#crowd.pending = true;
      return this.#scheduleAlarm(this.#crowd.due);
    }
    const users = this.#users;
    const frame = this.#crowd.tick(users, now);
    if (frame === "count") {
      const text = `{"type":"presence","event":"count","count":${users}}`;
      this.#delivery.broadcast(text);
      this.#fanout?.push({ text, event: "count", count: users });
    }
    if (frame === "sync") {
      const list = this.#members ? this.#members.list() : null;
      const text = `{"type":"presence","event":"sync","users":${list ? JSON.stringify(list) : this.#presence.listJson()}}`;
      this.#delivery.broadcast(text);
      this.#fanout?.push({ text, event: "sync", users: list ?? [], shardsOf: this.#perShard(list ?? []) });
    }
  }

  #announceText(text: string, before?: number): void {
    const due = this.#delivery.announce(text, before);
    if (due !== null) this.#scheduleAlarm(due);
  }

  #send(session: Session, frame: ServerFrame): void {
    this.#delivery.send(session, JSON.stringify(frame));
  }
}

/** A page of history as stored frames (History.pageFrames). */
type HistoryFrames = { frames: string[]; more: boolean };

/** A direct message frame, serialized once for every socket of its target. */
function directText(from: UserRef, data: unknown, id: string | undefined): string {
  return JSON.stringify({ type: "direct", from, data, ...(id === undefined ? {} : { id }) });
}

/** How long a failed stream call waits before the root tells that shard its seq again. */
const REPAIR_AFTER_MS = 1000;
/** Messages per root call when a shard repairs a gap. */
const REPAIR_PAGE = 256;

/** A close reason fits 123 UTF-8 bytes, or close() throws: a kick's reason is cut to fit. */
function closeReason(reason: string | undefined): string {
  let text = reason ? `kicked: ${reason}` : "kicked";
  while (new TextEncoder().encode(text).byteLength > 123) text = [...text].slice(0, -1).join("");
  return text;
}

/** A shard whose first snapshot failed cannot report yet: its next join or the root's resync makes one. */
function reportLost(): void {}

/** A failed step of a shard's intake has already scheduled its retry (Serial's onFailure). */
function stepFailed(): void {}

function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // already closing or closed
  }
}

/**
 * Reciprocates the peer's Close: the 2026-04-07 auto-reply flag covers accept()ed sockets, not
 * hibernatable ones, whose clients otherwise sit in CLOSING and report 1006 (the same fix as
 * partyserver#389). Reserved codes cannot be sent back, so they become 1000.
 */
export function answerClose(ws: WebSocket, code: number): void {
  closeQuietly(ws, code === 1005 || code === 1006 || code === 1015 ? CloseCode.normal : code, "");
}

/** 16 hex digits (64 random bits). */
function randomId(): string {
  const [a, b] = crypto.getRandomValues(new Uint32Array(2));
  return a!.toString(16).padStart(8, "0") + b!.toString(16).padStart(8, "0");
}
