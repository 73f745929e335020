// One Durable Object per room: the class wrangler binds, read as the table of contents of a
// room's life. It owns the room's sockets through the Hibernation API and its state in SQLite,
// and hands each event to the part that holds it:
//
//   connections.ts  the sockets here: admission, frames in, rejections, close, the idle sweep
//   sequencer.ts    the room's order: seq, history, idempotency, the webhooks outbox
//   roster.ts       who is here, told as join/leave/update or a count
//   root.ts         a giant room's root: the stream to its shards, their members
//   shard.ts        a giant room's shard: its view of the root, the stream in, reports out
//
// A room that SHARDED_ROOMS names is served by several objects of this class (shards.ts): its
// root sequences and owns no sockets, its shards own sockets and ask the root for order.
//
// A subclass adds the hooks of hooks.ts (onPublish, onJoin, onLeave); they run in the room's own
// object (a giant room's root), on every path, and a room without them pays nothing for them.
import { DurableObject } from "cloudflare:workers";
import { loadConfig, shardsFor, type Config, type ConfigKey, type ConfigValue } from "../config";
import { isFailure, joinRefusal, type Failure } from "../http";
import {
  PING,
  PONG,
  HISTORY_PAGE_DEFAULT,
  type DeleteResult,
  type HistoryPage,
  type KickResult,
  type PresenceEntry,
  type PublishResult,
  type RoomStats,
  type Capability,
  type UserRef,
} from "../protocol";
import type { Ban } from "./bans";
import { answerClose, Connections, type Frames, type Join, type Membership } from "./connections";
import { closeReason, RoomContext } from "./context";
import {
  askJoin,
  tellLeave,
  type Awaitable,
  type JoinDecision,
  type JoinEvent,
  type LeaveEvent,
  type PublishDecision,
  type PublishEvent,
  type RoomHooks,
  reservedOverrides,
} from "./hooks";
import { ownNamespace } from "./namespace";
import type { RateLimited } from "./rate-limit";
import { ResumeTokens } from "./resume-token";
import type { Session } from "./session";
import { Root } from "./root";
import { Roster } from "./roster";
import { Sequencer } from "./sequencer";
import { directText, historyText, Shard } from "./shard";
import {
  shardName,
  type HistoryFrames,
  type MemberCount,
  type RootTarget,
  type ShardRole,
  type ShardTarget,
  type Snapshot,
  type StreamItem,
} from "./shards";
import { Webhooks } from "./webhooks";

export { answerClose, type Join };
export const JOIN_HEADER = "x-edgerooms-join";

/**
 * What a room reads of its Worker's env: the webhooks queue and the vars `config.ts` parses. Its
 * own namespace is whichever binding its id belongs to (namespace.ts), so a subclass may be bound
 * under any name.
 */
export type RoomEnv = {
  /** Webhook events, from the rooms to the Worker's queue consumer (room/webhooks.ts). */
  WEBHOOKS?: Queue<string>;
} & { [K in ConfigKey]?: ConfigValue };

/** The stub of room (or shard) `name` in `rooms`. */
export function roomStub(rooms: DurableObjectNamespace<Room>, name: string): DurableObjectStub<Room> {
  return rooms.get(rooms.idFromName(name));
}

/** What a subclass may define over Room's own: the runtime's handlers (calling super) and `batching`. */
const EXTENDABLE = new Set(["constructor", "fetch", "alarm", "webSocketMessage", "webSocketClose", "webSocketError", "batching"]);

export class Room<E extends object = RoomEnv> extends DurableObject<E> implements RootTarget, ShardTarget, RoomHooks {
  readonly #room: RoomContext;
  readonly #connections: Connections;
  readonly #sequencer: Sequencer;
  readonly #roster: Roster;
  readonly #resumeTokens: ResumeTokens;
  /** This room's name, once a call has told it (stored: an alarm or a shard's call arrives without it). */
  #name: string | undefined;
  /** A giant room's root (root.ts), made once the name says the room is sharded. */
  #root: Root | null = null;
  /** A giant room's shard (shard.ts): its role is stored, since it wakes with no request to tell it. */
  #shard: Shard | null = null;
  /** The room's events for WEBHOOK_URL (webhooks.ts); null when unset, and on a shard (its root tells them). */
  #webhooks: Webhooks | null = null;

  // The hooks (hooks.ts): declared, not defined, so a room without them knows at a glance.
  onPublish?(event: PublishEvent): Awaitable<PublishDecision>;
  onJoin?(event: JoinEvent): Awaitable<JoinDecision>;
  onLeave?(event: LeaveEvent): Awaitable<void>;

  constructor(ctx: DurableObjectState, env: E) {
    super(ctx, env);
    const clashes = reservedOverrides(this, Room.prototype, EXTENDABLE);
    if (clashes.length > 0) {
      throw new TypeError(`${new.target.name} redefines ${clashes.join(", ")}: edgerooms calls these on every room; give your methods other names`);
    }
    const config: Config = loadConfig(env);
    this.#room = new RoomContext(ctx, config, this.batching);
    const epoch = this.#room.made("epoch");
    this.#resumeTokens = new ResumeTokens(this.#room.made("resume_key"));
    this.#connections = new Connections(this.#room, this.#membership);
    this.#sequencer = new Sequencer(
      this.#room,
      epoch,
      () => this.#webhooks,
      (text, seq) => this.#fanOut(text, seq),
      this,
      () => this.#name!,
    );
    this.#roster = new Roster(
      this.#room,
      () => this.#root,
      () => this.#webhooks,
    );
    // Answered by the runtime itself, without waking a hibernated room.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
    this.#connections.rebuild();
    const role = this.#room.stored("shard_role");
    if (role) this.#becomeShard(JSON.parse(role) as ShardRole).started();
    const name = this.#room.stored("room");
    if (name) this.#named(name, true);
    if (config.WEBHOOK_URL && !this.#shard) {
      this.#webhooks = new Webhooks(
        this.#room.sql,
        (env as RoomEnv).WEBHOOKS!, // loadConfig refuses WEBHOOK_URL without the binding
        () => ({ room: this.#name!, epoch }),
        (at) => this.#room.scheduleAlarm(at),
      );
      // Users whose sockets died with the last instance (a deploy, a crash) left without a close event.
      this.#webhooks.reconcile((uid) => (this.#root ? this.#root.members.has(uid) : this.#room.presence.has(uid)));
      this.#webhooks.drain();
    }
  }

  /**
   * Whether busy rooms coalesce frames (outbox.ts). Always on here; a subclass may send frame by
   * frame (the bench's comparison room). A getter, since a subclass's field would be set too late.
   */
  protected get batching(): boolean {
    return true;
  }

  // ---- join ----------------------------------------------------------------------------

  override async fetch(request: Request): Promise<Response> {
    const header = request.headers.get(JOIN_HEADER);
    if (!header || request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("room endpoint is internal", { status: 400 });
    }
    const join = JSON.parse(header) as Join;
    if (join.shard) {
      const shard = this.#shard ?? this.#becomeShard({ room: join.room, ...join.shard }, true);
      // Asked of the root, where every hook runs; a room without onJoin makes no call for it.
      const refused = this.onJoin ? await shard.ask((root) => root.admission(join.room, join.user, join.caps, false)) : null;
      return refused ? joinRefusal(refused) : shard.join(join);
    }
    this.#named(join.room);
    const refused = await this.#admission(join.user, join.caps, false);
    if (refused) return joinRefusal(refused);
    const { epoch, history } = this.#sequencer;
    // Where this user's connections provably started: a valid token from an earlier welcome
    // carries its start forward, anything else starts at the seq this welcome will carry.
    const scope = { room: join.room, epoch, user: join.user.id };
    const proven = await this.#resumeTokens.verify(join.resume, scope);
    const { start, token: resume } = await this.#resumeTokens.forWelcome(scope, join.resume, proven, () => history.seq);
    // Without `history`, a resume may replay only what this user could have received live:
    // messages after its start. `since` below the start (or no token at all) recovers nothing.
    const replayFrom = join.caps.includes("history") ? 0 : start;
    const recovered = join.since === undefined ? undefined : join.epoch === epoch && join.since >= replayFrom && history.covers(join.since);
    const missed = recovered ? history.after(join.since!) : [];
    return this.#connections.admit(join, { epoch, seq: history.seq, resume, recovered, missed }, () => {
      const { presence } = this.#room;
      return { size: presence.size, counting: this.#roster.crowd.absorbs(presence.size), listJson: () => presence.listJson() };
    });
  }

  /** A socket opening or closing here: a shard tells its root; a room announces a user's first and last. */
  readonly #membership: Membership = {
    joined: (session, first) => {
      if (this.#shard) return this.#shard.joined(session);
      if (first) this.#roster.announce("join", session.user.id, session);
    },
    left: (user, last) => {
      if (this.#shard) return this.#shard.left(user);
      if (last) this.#left(user);
    },
  };

  /**
   * Whether `user` may join (or, for the SDK's probe, could): a ban refuses first, then onJoin.
   * Null admits; the socket's own admission checks the ban again as it accepts (connections.ts).
   */
  #admission(user: UserRef, caps: Capability[], probe: boolean): Failure | null | Promise<Failure | null> {
    const banned = this.#room.banned(user.id);
    if (banned || !this.onJoin) return banned;
    return askJoin(this, this.#name!, user, caps, probe, this.#room.config.HOOK_TIMEOUT_MS);
  }

  /** A user's last connection to the room has gone: told once, room-wide (a giant room's root tells it). */
  #left(user: UserRef): void {
    this.#roster.left(user);
    const done = this.onLeave && tellLeave(this, this.#name!, user, this.#room.config.HOOK_TIMEOUT_MS);
    if (done) this.ctx.waitUntil(done);
  }

  // ---- frames --------------------------------------------------------------------------

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.#connections.frame(ws, message, this.#shard ?? this.#frames, () => this.#shard?.role.room ?? this.#name!);
  }

  /** What a plain room does with a frame (a shard sends it on to its root instead). */
  readonly #frames: Frames = {
    publish: (session, frame) => {
      const outcome = this.#sequencer.publish(session.user, frame.data, "socket", frame.id);
      if (typeof outcome === "number") return; // stored: the echo answers it
      if (!(outcome instanceof Promise)) return this.#refused(session, outcome, frame.id);
      outcome
        .then((decided) => typeof decided === "number" || this.#refused(session, decided, frame.id))
        .catch((err: unknown) => console.error("edgerooms: a refusal could not be told:", err));
    },
    direct: (session, frame) => {
      const targets = [...this.#room.presence.sessionsOf(frame.to)];
      if (targets.length === 0) return this.#connections.reject(session, "not_found", `user ${frame.to} is not in the room`, frame.id);
      const text = directText(session.user, frame.data, frame.id);
      for (const target of targets) this.#room.delivery.send(target, text);
      this.#room.count("delivered", targets.length);
      if (frame.id !== undefined) this.#room.send(session, { type: "ack", id: frame.id });
    },
    presence: (session, frame) => {
      this.#room.presence.setState(session.user.id, frame.state);
      this.#roster.announce("update", session.user.id);
    },
    history: (session, frame) => {
      const page = this.#sequencer.history.pageFrames(frame.before, frame.limit ?? HISTORY_PAGE_DEFAULT);
      this.#room.delivery.send(session, historyText(frame.id, page));
    },
  };

  /** A publish the room refused (its hook, a ban, a full wait queue), told to its socket as the frame's error. */
  #refused(session: Session, why: Failure, id: string | undefined): void {
    this.#connections.reject(session, why.code, why.message, id);
  }

  /** A stored message, to this object's sockets and to a root's shards. */
  #fanOut(text: string, seq: number): void {
    this.#room.count("delivered", this.#room.delivery.broadcast(text));
    this.#root?.stream({ text, seq });
  }

  // ---- leave ---------------------------------------------------------------------------

  override webSocketClose(ws: WebSocket, code: number): void {
    this.#connections.drop(ws);
    answerClose(ws, code);
  }

  override webSocketError(ws: WebSocket): void {
    this.#connections.drop(ws);
  }

  // ---- alarm: held presence, counts, repairs, webhooks, idle sweep -----------------------

  override alarm(): void {
    this.#room.alarmFired();
    const now = Date.now();
    this.#room.delivery.flushHeld(now);
    if (this.#roster.crowd.pending) this.#roster.countSoon(now);
    this.#root?.alarm(this.#sequencer.seq);
    this.#shard?.alarm();
    this.#room.counters.flush(now);
    this.#webhooks?.drain();
    this.#connections.sweep(now);
  }

  // ---- the Worker's HTTP routes, over RPC ---------------------------------------------
  // Each acts as the user the Worker verified (`from`, `actor`) and refuses a banned one.

  /** The publish's seq, or how long the sender must wait, or `banned` or `rejected`; a refused publish stores, sends and numbers nothing. */
  publish(room: string, from: UserRef, data: unknown, key?: string): Awaitable<PublishResult | RateLimited | Failure> {
    this.#named(room);
    return this.#room.banned(from.id) ?? this.#sequencer.publishOnce(from, data, key);
  }

  /**
   * Closes every socket of `uid` with 4403 (on every shard of a sharded room) and sets its ban
   * when `banSec` is given. The ban goes first, so a reconnect racing the close is refused.
   */
  async kick(room: string, actor: string, uid: string, banSec: number | undefined, reason: string | undefined): Promise<KickResult | Failure> {
    this.#named(room);
    const banned = this.#room.banned(actor);
    if (banned) return banned;
    const ban: Ban | undefined = banSec === undefined ? undefined : { uid, until: Date.now() + banSec * 1000 };
    if (ban) this.#room.bans.set(ban);
    const why = closeReason(reason);
    let closed = this.#connections.kick(uid, why);
    if (this.#root) closed += await this.#root.kick(uid, why, ban);
    this.#webhooks?.emit({
      type: "kick",
      user: uid,
      closed,
      ...(banSec === undefined ? {} : { banSec }),
      ...(reason === undefined ? {} : { reason }),
    });
    return { closed };
  }

  /** Removes message `seq` from history (pages, replays, shards' tails) and tells every socket; null when the room never had it or no longer holds it. */
  deleteMessage(room: string, actor: string, seq: number): DeleteResult | Failure | null {
    this.#named(room);
    const banned = this.#room.banned(actor);
    if (banned) return banned;
    const text = this.#sequencer.delete(seq);
    if (text === null) return null;
    this.#room.count("delivered", this.#room.delivery.broadcast(text));
    this.#root?.deleted(text, seq);
    return { deleted: seq };
  }

  history(room: string, actor: string, before: number | undefined, limit: number): HistoryPage | Failure {
    this.#named(room);
    return this.#room.banned(actor) ?? this.#sequencer.history.page(before, limit);
  }

  /** At most PRESENCE_LIMIT users, and the room's count (which may be larger). */
  presence(room: string, actor: string): { users: PresenceEntry[]; count: number } | Failure {
    this.#named(room);
    return this.#room.banned(actor) ?? { users: this.#roster.list(this.#room.config.PRESENCE_LIMIT), count: this.#roster.users };
  }

  /** A sharded room's adds each shard's connections (in shard order) and sums them. */
  async stats(room: string, actor: string): Promise<RoomStats | Failure> {
    this.#named(room);
    const banned = this.#room.banned(actor);
    if (banned) return banned;
    const stats: RoomStats = {
      room,
      connections: this.#room.sessions.size,
      users: this.#roster.users,
      seq: this.#sequencer.seq,
      epoch: this.#sequencer.epoch,
      starts: this.#room.starts,
      ...this.#room.counters.values,
    };
    if (!this.#root) return stats;
    const shards = await this.#root.stats();
    for (const s of shards) {
      stats.connections += s.connections;
      stats.delivered += s.delivered;
    }
    return { ...stats, shards: shards.map((s) => ({ connections: s.connections })) };
  }

  // ---- a giant room's root (root.ts): what its shards call ------------------------------------

  /**
   * The room's name, from the first call that carries it (stored for calls that do not: alarms,
   * shards' calls after a restart). A room that SHARDED_ROOMS names becomes its shards' root.
   */
  #named(room: string, waking = false): void {
    // Decided once per instance: the name and the config cannot change while it lives.
    if (this.#shard || this.#name !== undefined) return;
    this.#name = room;
    if (!waking) this.#room.store("room", room);
    const count = shardsFor(this.#room.config, room);
    if (count < 2) return;
    this.#root = new Root(this.#room, count, (i) => roomStub(this.#namespace(room), shardName(room, i)));
    if (waking) this.#root.woke(this.#sequencer.seq);
  }

  snapshot(room: string, deletedFrom?: number): Snapshot {
    this.#named(room);
    const root = this.#root;
    const users = this.#roster.crowd.counting ? null : (root?.members.list() ?? []);
    return {
      epoch: this.#sequencer.epoch,
      seq: this.#sequencer.seq,
      resumeKey: this.#room.made("resume_key"),
      users,
      shards: root?.perShard(users ?? []) ?? {},
      count: this.#roster.users,
      bans: this.#room.bans.list(),
      deleted: deletedFrom === undefined ? [] : this.#sequencer.history.deletedFrom(deletedFrom),
    };
  }

  range(from: number, to: number): { first: number; frames: string[] } {
    return this.#sequencer.range(from, to);
  }

  // A shard's frames, sent on by the root. Each checks the sender's ban, as every path that acts
  // as a user does: a shard that has not heard of a ban yet must not let its user act.

  /** Null once the publish is stored; else why not (`banned`, or the hook's `rejected`), for the shard to tell its socket. */
  shardPublish(room: string, from: UserRef, data: unknown, id?: string): Awaitable<Failure | null> {
    this.#named(room);
    const banned = this.#room.banned(from.id);
    if (banned) return banned;
    const outcome = this.#sequencer.publish(from, data, "socket", id);
    return outcome instanceof Promise ? outcome.then(refusedOrNull) : refusedOrNull(outcome);
  }

  /** Whether a user may join: the SDK's probe asks it over HTTP, a shard before it admits a socket (when the class has onJoin). */
  admission(room: string, user: UserRef, caps: Capability[], probe: boolean): Awaitable<Failure | null> {
    this.#named(room);
    return this.#admission(user, caps, probe);
  }

  shardDirect(room: string, from: string, to: string, text: string): boolean | Failure {
    this.#named(room);
    return this.#room.banned(from) ?? this.#root?.direct(to, text) ?? false;
  }

  shardState(room: string, uid: string, state: Record<string, unknown>): Failure | null {
    this.#named(room);
    const banned = this.#room.banned(uid);
    if (banned) return banned;
    this.#root?.members.setState(uid, state);
    this.#roster.announce("update", uid);
    return null;
  }

  historyFrames(uid: string, before: number | undefined, limit: number): HistoryFrames | Failure {
    return this.#room.banned(uid) ?? this.#sequencer.history.pageFrames(before, limit);
  }

  /** Joins, leaves and count changes follow from a shard's counts, room-wide. */
  shardMembers(room: string, shard: number, counts: MemberCount[], replace: boolean): void {
    this.#named(room);
    if (!this.#root) return;
    const { joined, left, changed } = this.#root.report(shard, counts, replace);
    for (const user of left) this.#left(user);
    for (const uid of joined) this.#roster.announce("join", uid);
    for (const uid of changed) this.#roster.announce("conns", uid);
  }

  // ---- a giant room's shard (shard.ts): what its root calls -------------------------------------

  #becomeShard(role: ShardRole, store = false): Shard {
    if (store) this.#room.store("shard_role", JSON.stringify(role));
    const rooms = () => this.#namespace(shardName(role.room, role.index));
    return (this.#shard = new Shard(role, this.#room, this.#connections, () => roomStub(rooms(), role.room)));
  }

  #rooms: DurableObjectNamespace<Room> | undefined;
  /** This class's namespace, for stubs to its root or shards; `name` is this object's own. */
  #namespace(name: string): DurableObjectNamespace<Room> {
    return (this.#rooms ??= ownNamespace(this.env, this.ctx.id, name));
  }

  /** No socket ever joined a shard without a role: nobody to deliver to, nothing to keep. */
  async stream(items: StreamItem[], rootSeq: number | null): Promise<void> {
    await this.#shard?.stream(items, rootSeq);
  }

  /** A shard without a role has no sockets; its first join's snapshot carries the ban. */
  async shardKick(uid: string, reason: string, ban?: Ban): Promise<number> {
    return this.#shard ? this.#shard.kick(uid, reason, ban) : 0;
  }

  shardStats(): { connections: number; delivered: number } {
    return { connections: this.#room.sessions.size, delivered: this.#room.counters.values.delivered };
  }
}

function refusedOrNull(outcome: number | Failure): Failure | null {
  return isFailure(outcome) ? outcome : null;
}
