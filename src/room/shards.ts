// Giant rooms: one room served by several Durable Objects. One object has one thread and at
// most 32,768 sockets, so a live event with 100,000 viewers cannot be one object; yet clients
// must still see one room: one gap-free `seq`, every message once and in order, resume on any
// shard. So the work is split by what needs one owner and what does not:
//
// - The root (the object named by the room, as for any room) sequences: it assigns `seq`, writes
//   history and idempotency keys, and keeps the room-wide presence index. It owns no sockets.
// - Shards (`<room>#<i>`, the same class) own sockets only. A shard forwards each accepted frame
//   to the root over RPC, and the root sends every stored message and presence event to every
//   shard over one stub per shard: calls through one stub arrive in order (E-order), so each
//   shard sees the room's events in the root's order and delivers them with its own batching.
// - A shard that sees a gap in `seq` (the root restarted and its in-flight calls were lost, or a
//   call failed) fetches the missing range from the root before it delivers anything newer.
// - A reconnect storm must not become one root call per client: a shard answers resumes from the
//   tail of recent messages it keeps, and asks the root only for what the tail lacks.
// - Presence reaches the root as absolute per-shard connection counts, batched per turn; absolute
//   counts make a repeated or re-sent report harmless. A shard that restarts (its sockets gone
//   without close events) reports its whole membership again, replacing what it had.
//
// Partyserver's sharding example and partysub fan out without a sequencer, so a message can be
// missed or reordered across shards; here the root's seq and the gap repair rule that out.
import type { Failure } from "../http";
import type { Capability, PresenceEntry, UserRef } from "../protocol";
import type { Ban } from "./bans";
import { replayFrame, TOMBSTONE } from "./history";

/** How long a failed call waits before it is repaired (the root resyncs that shard; a shard resyncs itself). */
export const REPAIR_AFTER_MS = 1000;
/** Messages per root call when a shard repairs a gap. */
export const REPAIR_PAGE = 256;

/** Room names cannot contain `#`, so no shard's name is a room's. */
export function shardName(room: string, index: number): string {
  return `${room}#${index}`;
}

/** What a shard knows of its role; kept in its storage, since it wakes with no request to tell it. */
export interface ShardRole {
  room: string;
  index: number;
  count: number;
}

/**
 * One event of the root's stream to its shards, in order. A message carries its `seq`; a
 * presence event the user it is about (`uid`), so a shard can spare a joiner the `join` its
 * welcome already listed; `to` limits a direct message to one user's sockets.
 */
export interface StreamItem {
  text: string;
  seq?: number;
  uid?: string;
  /** `conns`: only the user's connection count changed; it updates the mirror and sends nothing */
  event?: "join" | "leave" | "update" | "conns" | "count" | "sync";
  /** a presence user's entry (join/update/conns) or the whole list (sync), for the shard's mirror */
  entry?: PresenceEntry;
  /** with `entry`: the user's connections per shard as the root counts them ([shard, conns] pairs) */
  shards?: [number, number][];
  /** with `users`: the same for each user, by id */
  shardsOf?: Record<string, [number, number][]>;
  users?: PresenceEntry[];
  count?: number;
  to?: string;
  /** moderation: message `deleted` left history; the shard forgets it and sends `text` to all */
  deleted?: number;
}

/** What a shard needs before it can welcome anyone: the root's state at one instant. */
export interface Snapshot {
  epoch: string;
  seq: number;
  resumeKey: string;
  /** the room-wide list, or null while the room is above PRESENCE_LIMIT (then `count`) */
  users: PresenceEntry[] | null;
  /** each listed user's connections per shard ([shard, conns] pairs), by user id */
  shards: Record<string, [number, number][]>;
  count: number;
  /** bans still running, enforced by the shard on joins without asking the root */
  bans: Ban[];
  /**
   * the deleted messages' seqs from the `deletedFrom` asked for (none when not asked): with the
   * bans, what a lost stream call could have carried that the shard must enforce, re-read on a
   * resync so moderation is recovered from the root's storage as messages are
   */
  deleted: number[];
}

/** A shard's report of one user: how many of its sockets that user has now (0: none left). */
export interface MemberCount {
  uid: string;
  name: string;
  conns: number;
}

/** Messages a shard keeps for resumes, newest last; covers `size` messages of traffic. */
export const TAIL_SIZE = 2048;

export class Tail {
  readonly #frames: string[] = [];
  /** seq of #frames[0] */
  #first = 1;

  constructor(private readonly size = TAIL_SIZE) {}

  /** Appends the message `seq` (always the next one: the shard repairs gaps before this); a deleted one as TOMBSTONE. */
  push(seq: number, text: string): void {
    if (this.#frames.length === 0 || seq !== this.#first + this.#frames.length) {
      this.#frames.length = 0;
      this.#first = seq;
    }
    this.#frames.push(text);
    if (this.#frames.length > this.size) {
      this.#frames.splice(0, this.#frames.length - this.size);
      this.#first = seq - this.size + 1;
    }
  }

  /** A replay of the frames after `since` up to `head` (replayFrame), or undefined when the tail does not reach back that far. */
  after(since: number, head: number): string[] | undefined {
    if (since >= head) return [];
    if (this.#frames.length === 0 || since + 1 < this.#first) return undefined;
    return this.#frames.slice(since + 1 - this.#first, head + 1 - this.#first).map((f, i) => replayFrame(f, since + 1 + i));
  }

  /**
   * Message `seq` was deleted: a resume must not replay it. False only when the tail had its
   * tombstone already (the delete was applied here); a seq outside the tail may not have been.
   */
  forget(seq: number): boolean {
    const at = seq - this.#first;
    if (at < 0 || at >= this.#frames.length) return true;
    if (this.#frames[at] === TOMBSTONE) return false;
    this.#frames[at] = TOMBSTONE;
    return true;
  }
}

/** Root side: the room-wide presence of a sharded room, as connection counts per shard. */
export class ShardedMembers {
  readonly #users = new Map<string, { name: string; shards: Map<number, number> }>();
  /** Per-user presence state, kept like an unsharded room's (the `presence` table). */
  readonly #states = new Map<string, Record<string, unknown>>();

  constructor(
    private readonly sql: SqlStorage,
    shards: number,
  ) {
    sql.exec(
      `CREATE TABLE IF NOT EXISTS shard_members (shard INTEGER NOT NULL, uid TEXT NOT NULL, name TEXT NOT NULL, conns INTEGER NOT NULL, PRIMARY KEY (shard, uid))`,
    );
    sql.exec(`CREATE TABLE IF NOT EXISTS presence (uid TEXT PRIMARY KEY, state TEXT NOT NULL)`);
    sql.exec(`DELETE FROM shard_members WHERE shard >= ?`, shards);
    for (const row of sql.exec<{ shard: number; uid: string; name: string; conns: number }>(`SELECT shard, uid, name, conns FROM shard_members`)) {
      this.#set(Number(row.shard), row.uid, row.name, Number(row.conns));
    }
    for (const row of sql.exec<{ uid: string; state: string }>(`SELECT uid, state FROM presence`)) {
      this.#states.set(row.uid, JSON.parse(row.state) as Record<string, unknown>);
    }
  }

  setState(uid: string, state: Record<string, unknown>): void {
    if (!this.#users.has(uid)) return;
    this.#states.set(uid, state);
    this.sql.exec(
      `INSERT INTO presence (uid, state) VALUES (?, ?) ON CONFLICT(uid) DO UPDATE SET state = excluded.state`,
      uid,
      JSON.stringify(state),
    );
  }

  entry(uid: string): PresenceEntry | undefined {
    const u = this.#users.get(uid);
    return u && { id: uid, name: u.name, state: this.#states.get(uid) ?? {}, connections: this.connections(uid) };
  }

  /** The first `max` users, in the order they came. */
  list(max = Infinity): PresenceEntry[] {
    const out: PresenceEntry[] = [];
    for (const uid of this.#users.keys()) {
      if (out.length >= max) break;
      out.push(this.entry(uid)!);
    }
    return out;
  }

  get size(): number {
    return this.#users.size;
  }

  has(uid: string): boolean {
    return this.#users.has(uid);
  }

  /** Room-wide connections of `uid`. */
  connections(uid: string): number {
    let n = 0;
    for (const c of this.#users.get(uid)?.shards.values() ?? []) n += c;
    return n;
  }

  /** `uid`'s connections on each shard, as [shard, conns] pairs. */
  perShard(uid: string): [number, number][] {
    return [...(this.#users.get(uid)?.shards ?? [])];
  }

  /** The shards `uid` has sockets on. */
  shardsOf(uid: string): number[] {
    return [...(this.#users.get(uid)?.shards.keys() ?? [])];
  }

  user(uid: string): UserRef | undefined {
    const u = this.#users.get(uid);
    return u && { id: uid, name: u.name };
  }

  uids(): IterableIterator<string> {
    return this.#users.keys();
  }

  /**
   * Applies one shard's report; `replace`: it is the shard's whole membership (after a restart).
   * Returns the users who arrived in the room, those who left it, and those still here whose
   * connection count changed.
   */
  report(shard: number, counts: MemberCount[], replace: boolean): { joined: string[]; left: string[]; changed: string[] } {
    // Only the users the report is about can change: a join storm's reports cost their own size,
    // not the room's (a replace also touches everyone this shard had).
    const about = new Set(counts.map((c) => c.uid));
    const gone = replace ? [...this.#users].filter(([uid, u]) => u.shards.has(shard) && !about.has(uid)) : [];
    const before = new Map([...about, ...gone.map(([uid]) => uid)].map((uid) => [uid, this.#users.has(uid) ? this.connections(uid) : -1]));
    for (const [uid, u] of gone) this.#store(shard, uid, u.name, 0);
    for (const c of counts) this.#store(shard, c.uid, c.name, c.conns);
    const after = [...before].map(([uid, n]) => ({ uid, n, here: this.#users.has(uid) }));
    const joined = after.filter((a) => a.n === -1 && a.here).map((a) => a.uid);
    const left = after.filter((a) => a.n !== -1 && !a.here).map((a) => a.uid);
    const changed = after.filter((a) => a.n !== -1 && a.here && this.connections(a.uid) !== a.n).map((a) => a.uid);
    for (const uid of left) {
      this.#states.delete(uid);
      this.sql.exec(`DELETE FROM presence WHERE uid = ?`, uid);
    }
    return { joined, left, changed };
  }

  #store(shard: number, uid: string, name: string, conns: number): void {
    if (conns > 0) {
      this.sql.exec(
        `INSERT INTO shard_members (shard, uid, name, conns) VALUES (?, ?, ?, ?) ON CONFLICT(shard, uid) DO UPDATE SET name = excluded.name, conns = excluded.conns`,
        shard,
        uid,
        name,
        conns,
      );
    } else {
      this.sql.exec(`DELETE FROM shard_members WHERE shard = ? AND uid = ?`, shard, uid);
    }
    this.#set(shard, uid, name, conns);
  }

  #set(shard: number, uid: string, name: string, conns: number): void {
    let u = this.#users.get(uid);
    if (conns <= 0) {
      u?.shards.delete(shard);
      if (u && u.shards.size === 0) this.#users.delete(uid);
      return;
    }
    if (!u) this.#users.set(uid, (u = { name, shards: new Map() }));
    u.name = name;
    u.shards.set(shard, conns);
  }
}

/** Root side: one ordered stream per shard, flushed together once the events queued behind this one have run. */
export class Fanout {
  readonly #stubs: DurableObjectStub<ShardTarget>[] = [];
  readonly #queues: StreamItem[][];
  #flushing = false;
  /** Shards whose last call failed: the alarm resyncs them (their seq, their moderation, their members). */
  readonly failed = new Set<number>();

  constructor(
    readonly count: number,
    private readonly stub: (index: number) => DurableObjectStub<ShardTarget>,
    private readonly onFailure: () => void,
  ) {
    // One stub per shard, so calls through it arrive in order; replaced only after it threw
    // (a stub that threw may stay broken: Cloudflare's docs say to make a new one).
    for (let i = 0; i < count; i++) this.#stubs.push(stub(i));
    this.#queues = Array.from({ length: count }, () => []);
  }

  /** To every shard (`only`: to these shards). */
  push(item: StreamItem, only?: Iterable<number>): void {
    for (const i of only ?? this.#queues.keys()) this.#queues[i]!.push(item);
    if (this.#flushing) return;
    this.#flushing = true;
    // A zero-delay turn, like the outbox's drain: it exists only while events flow, and lets a
    // burst of publishes reach each shard as one call instead of one call each.
    setTimeout(() => this.flush(), 0);
  }

  /**
   * Sends what is queued; `seq`: the root's current seq, sent to the shards whose last call
   * failed as a resync (they repair up to it, re-read moderation and report their members).
   */
  flush(seq?: number): void {
    this.#flushing = false;
    for (const [i, queue] of this.#queues.entries()) {
      const resync = seq !== undefined && this.failed.has(i);
      if (queue.length === 0 && !resync) continue;
      this.#queues[i] = [];
      this.failed.delete(i);
      this.#stubs[i]!.stream(queue, resync ? seq : null).catch(() => this.#lost(i));
    }
  }

  /** Every shard may have missed events (this root restarted): resync them all. */
  resync(seq: number): void {
    for (let i = 0; i < this.count; i++) this.failed.add(i);
    this.flush(seq);
  }

  /**
   * `call` on every shard, after what is queued for it; one that fails is tried once more on a
   * fresh stub, then left to the resync. The answers of the shards that answered.
   */
  async everyShard<T>(call: (shard: DurableObjectStub<ShardTarget>) => Promise<T>): Promise<T[]> {
    this.flush();
    const answers = await Promise.all(
      this.#stubs.map(async (_, i) => {
        try {
          return await call(this.#stubs[i]!);
        } catch {
          this.#stubs[i] = this.stub(i);
          return call(this.#stubs[i]).catch(() => (this.#lost(i), undefined));
        }
      }),
    );
    return answers.filter((a): a is Awaited<T> => a !== undefined);
  }

  stubOf(index: number): DurableObjectStub<ShardTarget> {
    return this.#stubs[index]!;
  }

  #lost(i: number): void {
    this.#stubs[i] = this.stub(i);
    this.failed.add(i);
    this.onFailure();
  }
}

/** A page of history as stored frames (History.pageFrames). */
export type HistoryFrames = { frames: string[]; more: boolean };

/**
 * The root-side RPC surface a shard calls (implemented by Room in its root role). Each call that
 * acts as a user answers `banned` when the root holds that user banned.
 */
export interface RootTarget extends Rpc.DurableObjectBranded {
  /** The root's state at one instant; `deletedFrom`: with the deleted seqs from there on. */
  snapshot(room: string, deletedFrom?: number): Snapshot;
  range(from: number, to: number): { first: number; frames: string[] };
  /** A publish a shard accepted; its echo returns in the stream like every other copy. */
  shardPublish(room: string, from: UserRef, data: unknown, id?: string): Failure | null | Promise<Failure | null>;
  /** Whether `user` may join (a ban, then the room's onJoin hook, which runs here); null admits. */
  admission(room: string, user: UserRef, caps: Capability[], probe: boolean): Failure | null | Promise<Failure | null>;
  /** A direct message for `to`, wherever its sockets are; false when the user is not in the room. */
  shardDirect(room: string, from: string, to: string, text: string): boolean | Failure;
  shardState(room: string, uid: string, state: Record<string, unknown>): Failure | null;
  historyFrames(uid: string, before: number | undefined, limit: number): HistoryFrames | Failure;
  /** A shard's member counts (`replace`: its whole membership). */
  shardMembers(room: string, shard: number, counts: MemberCount[], replace: boolean): void;
}

/** The shard-side RPC surface the root calls (implemented by Room in its shard role). */
export interface ShardTarget extends Rpc.DurableObjectBranded {
  /**
   * Events in the root's order. A non-null `rootSeq` is a resync: calls may have been lost, so
   * the shard repairs up to it, re-reads moderation and reports its whole membership.
   */
  stream(items: StreamItem[], rootSeq: number | null): Promise<void>;
  /** Applies `ban` (if any) and closes this shard's sockets of `uid` (a kick); returns how many it closed for it. */
  shardKick(uid: string, reason: string, ban?: Ban): Promise<number>;
  shardStats(): { connections: number; delivered: number };
}

/**
 * Shard side: the room-wide presence as the root last told it, for welcomes. A user's connections
 * are this shard's own as they are now plus the other shards' as the root last counted them, so
 * a welcome does not wait for this shard's report to come back from the root.
 */
export class Mirror {
  /** Each user, the first session order that learned it from a welcome (the join is not for them), and its connections on other shards. */
  readonly #users = new Map<string, { entry: PresenceEntry; since: number; elsewhere: number }>();
  /** The room's count while it is above PRESENCE_LIMIT (the list is then empty). */
  counting: number | null = null;
  #json: string | undefined;

  constructor(
    /** this shard's index */
    private readonly me: number,
    /** this shard's live connections of a user */
    private readonly here: (uid: string) => number,
  ) {}

  reset(snapshot: Pick<Snapshot, "users" | "count" | "shards">, nextOrder: number): void {
    this.#users.clear();
    this.#json = undefined;
    this.counting = snapshot.users === null ? snapshot.count : null;
    for (const entry of snapshot.users ?? []) {
      this.#users.set(entry.id, { entry, since: nextOrder, elsewhere: this.#elsewhere(snapshot.shards[entry.id]) });
    }
  }

  get size(): number {
    return this.counting ?? this.#users.size;
  }

  /** A local session opened: a user the mirror lacks is listed in its welcome now, before the root's join arrives. */
  ensure(user: UserRef, order: number): void {
    this.#json = undefined;
    if (this.counting !== null || this.#users.has(user.id)) return;
    this.#users.set(user.id, { entry: { ...user, state: {}, connections: 1 }, since: order, elsewhere: 0 });
  }

  /** A local session closed: the counts listed change. */
  changed(): void {
    this.#json = undefined;
  }

  /**
   * Applies one presence event of the stream; returns the session order below which sessions
   * must be sent it (Infinity: all; a join goes only to sessions whose welcome did not list the user).
   */
  apply(item: StreamItem, nextOrder: number): number {
    this.#json = undefined;
    switch (item.event) {
      case "join":
      case "update":
      case "conns": {
        const since = this.#users.get(item.uid!)?.since ?? nextOrder;
        this.#users.set(item.uid!, { entry: item.entry!, since, elsewhere: this.#elsewhere(item.shards) });
        return item.event === "join" ? since : Infinity;
      }
      case "leave":
        this.#users.delete(item.uid!);
        return Infinity;
      case "count":
        this.#users.clear();
        this.counting = item.count!;
        return Infinity;
      case "sync":
        this.reset({ users: item.users!, count: item.users!.length, shards: item.shardsOf ?? {} }, nextOrder);
        return Infinity;
      default:
        return Infinity;
    }
  }

  listJson(): string {
    // A listed user is in the room: until its leave arrives it has at least one connection.
    const entry = (uid: string, u: { entry: PresenceEntry; elsewhere: number }) => ({
      ...u.entry,
      connections: Math.max(1, u.elsewhere + this.here(uid)),
    });
    return (this.#json ??= JSON.stringify([...this.#users].map(([uid, u]) => entry(uid, u))));
  }

  /** The connections the root counts on other shards than this one. */
  #elsewhere(shards: [number, number][] | undefined): number {
    let n = 0;
    for (const [shard, conns] of shards ?? []) if (shard !== this.me) n += conns;
    return n;
  }
}
