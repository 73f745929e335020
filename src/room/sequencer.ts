// The room's order: every publish, from a socket, over HTTP or from a shard, gets its seq here,
// is stored in history in the same turn, told to the webhooks outbox, then fanned out. Plain
// rooms and the roots of giant rooms sequence; shards never do (they ask their root).
//
// A room whose class defines `onPublish` (hooks.ts) asks it first, here: a refused publish takes
// no seq and leaves no trace. While an async decision is pending, later publishes wait behind it,
// so the room's order stays the order publishes arrived in; a room without the hook (or whose
// hook answers at once) never waits and never allocates a promise.
import { failure, isFailure, type Failure } from "../http";
import type { PublishResult, UserRef } from "../protocol";
import type { RoomContext } from "./context";
import { History } from "./history";
import { callHook, hookBug, publishVerdict, type Awaitable, type RoomHooks, type Verdict, type Via } from "./hooks";
import { IdempotencyKeys } from "./idempotency";
import { KeyedBuckets, type RateLimited } from "./rate-limit";
import type { Webhooks } from "./webhooks";

export type { Via };

/** A publish's outcome: its seq, or why it was refused (`rejected`, or `internal` for a hook's bug). */
export type Published = number | Failure;

interface Waiting {
  from: UserRef;
  data: unknown;
  via: Via;
  id: string | undefined;
  done: (outcome: Published) => void;
}

/**
 * Publishes that may wait behind a pending decision; past it, a publish is refused as
 * `rate_limited` (the socket's own bucket limits one connection, not the room).
 */
const MAX_WAITING = 1000;

/** Where a stored message goes next: this object's sockets, and a root's shards. */
export type FanOut = (text: string, seq: number) => void;

export class Sequencer {
  readonly history: History;
  readonly #idempotency: IdempotencyKeys;
  /**
   * HTTP publishes per sender. Held here because every publish to the room passes through this
   * one instance, so the limit is exact; in memory, like the sockets' buckets (rate-limit.ts):
   * the room leaves memory only after seconds of silence, by when a bucket has refilled at any
   * sane setting. Made on first use.
   */
  #publishLimits?: KeyedBuckets;
  /** Publishes behind a pending decision, in arrival order; null when none is pending. */
  #waiting: Waiting[] | null = null;
  /** HTTP publishes whose decision is pending, by idempotency key: a retry joins the first instead of publishing twice. */
  readonly #deciding = new Map<string, Promise<PublishResult | RateLimited | Failure>>();

  constructor(
    private readonly room: RoomContext,
    readonly epoch: string,
    private readonly webhooks: () => Webhooks | null,
    private readonly fanOut: FanOut,
    /** the room itself: its class's onPublish, if it defines one */
    private readonly hooks: RoomHooks,
    private readonly roomName: () => string,
  ) {
    this.history = new History(room.sql, room.config.HISTORY_LIMIT);
    this.#idempotency = new IdempotencyKeys(room.sql);
  }

  get seq(): number {
    return this.history.seq;
  }

  /**
   * The one place every publish passes before it gets its seq, whatever its path (`via`): the
   * hook decides (at once, or while later publishes wait), then the publish is stored.
   */
  publish(from: UserRef, data: unknown, via: Via, id?: string): Published | Promise<Published> {
    if (!this.hooks.onPublish) return this.#store(from, data, via, id);
    const waiting = this.#waiting;
    if (waiting) {
      if (waiting.length >= MAX_WAITING) {
        return failure("rate_limited", `the room is deciding ${waiting.length} publishes already; try again`, 1);
      }
      return new Promise((done) => waiting.push({ from, data, via, id, done }));
    }
    const verdict = this.#decide(from, data, via);
    if (!(verdict instanceof Promise)) return this.#apply(verdict, from, via, id);
    this.#waiting = [];
    return this.#settle(verdict, from, via, id).finally(() => this.#drainSoon());
  }

  /** The hook's decision about one publish, checked (hooks.ts): never a throw. */
  #decide(from: UserRef, data: unknown, via: Via): Verdict | Promise<Verdict> {
    const room = this.roomName();
    const limit = this.room.config.MAX_MESSAGE_BYTES;
    return callHook(
      // A copy of `from`: the sender's session keeps its own.
      () => this.hooks.onPublish!({ room, data, from: { ...from }, via }),
      (decision) => publishVerdict(room, data, decision, limit),
      (err) => hookBug(room, "onPublish", err),
      this.room.config.HOOK_TIMEOUT_MS,
    );
  }

  /** A verdict, applied; a sender banned while the decision was pending is refused like any banned publish. */
  #apply(verdict: Verdict, from: UserRef, via: Via, id: string | undefined): Published {
    if (isFailure(verdict)) return verdict;
    return this.room.banned(from.id) ?? this.#store(from, verdict.data, via, id);
  }

  /** A pending verdict, applied; a publish that failed to store (a bug, not a hook's) is its caller's `internal`, and the publishes behind it still go on. */
  async #settle(verdict: Promise<Verdict>, from: UserRef, via: Via, id: string | undefined): Promise<Published> {
    try {
      return this.#apply(await verdict, from, via, id);
    } catch (err) {
      console.error("edgerooms: a publish failed to store:", err);
      return failure("internal", "the publish could not be stored; try again");
    }
  }

  /** Starts the drain without holding up the first publish's answer (#settle catches every failure, so it cannot fail). */
  #drainSoon(): void {
    this.#drain().catch((err: unknown) => console.error("edgerooms: the publish queue failed:", err));
  }

  /** The publishes that waited behind a decision, decided one at a time in their order. */
  async #drain(): Promise<void> {
    const waiting = this.#waiting!;
    for (let next = waiting.shift(); next; next = waiting.shift()) {
      const verdict = this.#decide(next.from, next.data, next.via);
      next.done(await this.#settle(Promise.resolve(verdict), next.from, next.via, next.id));
    }
    this.#waiting = null;
  }

  /** Stores, then delivers to everyone (the sender included): the echo is the acknowledgement. */
  #store(from: UserRef, data: unknown, via: Via, id: string | undefined): number {
    const seq = this.history.next();
    const ts = Date.now();
    const text = JSON.stringify({ type: "message", seq, ts, from, data, ...(id === undefined ? {} : { id }) });
    this.history.append(seq, text);
    this.webhooks()?.emit({ type: "message", ts, seq, from, data, ...(id === undefined ? {} : { clientId: id }) });
    this.room.count("published");
    this.fanOut(text, seq);
    // In the INSERT's transaction: no commit of its own, and no alarm while the room keeps publishing.
    this.room.counters.flushDue(ts);
    return seq;
  }

  /**
   * An HTTP publish: its seq, or how long the sender must wait, or why it was refused. An
   * idempotent replay publishes nothing and costs no token; a refused publish keeps no key, so
   * its retry is decided again.
   */
  publishOnce(from: UserRef, data: unknown, key?: string): Awaitable<PublishResult | RateLimited | Failure> {
    const scoped = key === undefined ? undefined : `${from.id}\n${key}`;
    if (scoped !== undefined) {
      const earlier = this.#idempotency.get(scoped) ?? this.#deciding.get(scoped);
      if (earlier) return earlier;
    }
    this.#publishLimits ??= new KeyedBuckets(this.room.config.PUBLISH_RATE_PER_SEC, this.room.config.PUBLISH_BURST);
    const limited = this.#publishLimits.take(from.id);
    if (limited) {
      this.room.count("rateLimited");
      return limited;
    }
    const keep = (seq: Published): PublishResult | Failure => {
      if (isFailure(seq)) return seq;
      const result = { seq, epoch: this.epoch };
      if (scoped !== undefined) this.#idempotency.put(scoped, result);
      return result;
    };
    const outcome = this.publish(from, data, "http");
    if (!(outcome instanceof Promise)) return keep(outcome);
    const pending = outcome.then(keep).finally(() => scoped !== undefined && this.#deciding.delete(scoped));
    if (scoped !== undefined) this.#deciding.set(scoped, pending);
    return pending;
  }

  /** Message `seq` leaves history (its tombstone stays); its delete frame, or null when the log no longer holds it. */
  delete(seq: number): string | null {
    if (!this.history.delete(seq)) return null;
    this.webhooks()?.emit({ type: "delete", seq });
    return JSON.stringify({ type: "delete", seq });
  }

  /**
   * Stored messages from `first` to at most `to`, one entry per seq (a deleted one as TOMBSTONE,
   * so a shard's count of seqs stays right). `first` is `from` unless messages from `from` on
   * are past retention: then the oldest retained one. Nothing past this room's seq: a shard
   * asks on a client's word too (a resume's `since`), and must never skip ahead of what is to come.
   */
  range(from: number, to: number): { first: number; frames: string[] } {
    const first = Math.max(from, this.history.oldest());
    if (first > to || first > this.history.seq) return { first: Math.min(first, this.history.seq + 1), frames: [] };
    const frames: string[] = [];
    for (const page of this.history.rows(first - 1)) {
      frames.push(...page.slice(0, to - first + 1 - frames.length));
      if (frames.length > to - first) break;
    }
    return { first, frames };
  }
}
