// The room's order: every publish, from a socket, over HTTP or from a shard, gets its seq here,
// is stored in history in the same turn, told to the webhooks outbox, then fanned out. Plain
// rooms and the roots of giant rooms sequence; shards never do (they ask their root).
import type { PublishResult, UserRef } from "../protocol";
import type { RoomContext } from "./context";
import { History } from "./history";
import { IdempotencyKeys } from "./idempotency";
import { KeyedBuckets, type RateLimited } from "./rate-limit";
import type { Webhooks } from "./webhooks";

/** Where a publish came from: a socket (in a giant room, a shard's socket) or the HTTP route. */
export type Via = "socket" | "http";

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

  constructor(
    private readonly room: RoomContext,
    readonly epoch: string,
    private readonly webhooks: () => Webhooks | null,
    private readonly fanOut: FanOut,
  ) {
    this.history = new History(room.sql, room.config.HISTORY_LIMIT);
    this.#idempotency = new IdempotencyKeys(room.sql);
  }

  get seq(): number {
    return this.history.seq;
  }

  /**
   * Stores, then delivers to everyone (the sender included): the echo is the acknowledgement.
   * The one place every publish passes before it gets its seq, whatever its path (`via`).
   */
  publish(from: UserRef, data: unknown, via: Via, id?: string): number {
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

  /** An HTTP publish: its seq, or how long the sender must wait. An idempotent replay publishes nothing and costs no token. */
  publishOnce(from: UserRef, data: unknown, key?: string): PublishResult | RateLimited {
    const scoped = key === undefined ? undefined : `${from.id}\n${key}`;
    if (scoped !== undefined) {
      const earlier = this.#idempotency.get(scoped);
      if (earlier) return earlier;
    }
    this.#publishLimits ??= new KeyedBuckets(this.room.config.PUBLISH_RATE_PER_SEC, this.room.config.PUBLISH_BURST);
    const limited = this.#publishLimits.take(from.id);
    if (limited) {
      this.room.count("rateLimited");
      return limited;
    }
    const result = { seq: this.publish(from, data, "http"), epoch: this.epoch };
    if (scoped !== undefined) this.#idempotency.put(scoped, result);
    return result;
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
