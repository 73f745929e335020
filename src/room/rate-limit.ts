// The room's rate limits: a token bucket per connection and per HTTP publisher, and a sliding
// count of rejected frames per connection. (The Worker's per-IP upgrade cap is in
// ../worker/upgrade-limit.ts.)

/**
 * Token bucket. Lives in the room's memory, not in storage: a room hibernates only after
 * seconds of silence from every socket, and by then any bucket (burst / rate = 2 s at the
 * defaults) has refilled, so a fresh full bucket after wake-up grants nothing the old one
 * would not have. Persisting it would cost a write per frame for no gain.
 */
export class TokenBucket {
  #tokens: number;
  #updated: number;
  constructor(
    readonly ratePerSec: number,
    readonly burst: number,
    now = Date.now(),
  ) {
    this.#tokens = burst;
    this.#updated = now;
  }
  /** Takes one token; false when the bucket is empty. */
  take(now = Date.now()): boolean {
    this.#tokens = this.#level(now);
    this.#updated = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
  /** Milliseconds until a take can succeed (0: now). */
  waitMs(now = Date.now()): number {
    return Math.max(0, ((1 - this.#level(now)) / this.ratePerSec) * 1000);
  }
  /** Whether the bucket has refilled to its burst: then it is no different from a new one. */
  full(now = Date.now()): boolean {
    return this.#level(now) >= this.burst;
  }
  #level(now: number): number {
    const elapsed = Math.max(0, now - this.#updated) / 1000;
    return Math.min(this.burst, this.#tokens + elapsed * this.ratePerSec);
  }
}

/** A refused take, as the HTTP edge answers it: whole seconds until a token is back (Retry-After). */
export interface RateLimited {
  retryAfterSec: number;
}

/**
 * A token bucket per key (the room's HTTP publishers, by `sub`), bounded in memory. When
 * MAX_KEYS are held, the buckets that are full again are dropped first: a full bucket is what a
 * new one would be, so that forgets nothing. Only if more than 3/4 of the keys are still
 * draining (thousands of senders within burst/rate seconds) are the least recently used
 * forgotten too, each of which may then get one fresh burst: bounded memory over exactness.
 */
export class KeyedBuckets {
  static readonly MAX_KEYS = 10_000;
  readonly #buckets = new Map<string, TokenBucket>();
  constructor(
    readonly ratePerSec: number,
    readonly burst: number,
  ) {}

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token for `key`: null when granted, else how long to wait. */
  take(key: string, now = Date.now()): RateLimited | null {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      this.#buckets.delete(key); // set again below: the map stays in least-recently-used order
    } else {
      if (this.#buckets.size >= KeyedBuckets.MAX_KEYS) this.#evict(now);
      bucket = new TokenBucket(this.ratePerSec, this.burst, now);
    }
    this.#buckets.set(key, bucket);
    if (bucket.take(now)) return null;
    return { retryAfterSec: Math.max(1, Math.ceil(bucket.waitMs(now) / 1000)) };
  }

  #evict(now: number): void {
    for (const [key, bucket] of this.#buckets) if (bucket.full(now)) this.#buckets.delete(key);
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size <= (KeyedBuckets.MAX_KEYS * 3) / 4) break;
      this.#buckets.delete(key);
    }
  }
}

/**
 * Remembers the times of the last `limit` events in a ring: `record` says whether more than
 * `limit` happened within `windowMs` (this one and the `limit` before it). Exact, O(1), and
 * bounded in memory.
 */
export class SlidingCounter {
  #ring: number[];
  #next = 0;
  constructor(
    readonly limit: number,
    readonly windowMs: number,
  ) {
    this.#ring = new Array<number>(limit).fill(-Infinity);
  }
  /** Records one event; true when this one is past the limit. */
  record(now = Date.now()): boolean {
    const oldest = this.#ring[this.#next]!; // the event `limit` records ago
    this.#ring[this.#next] = now;
    this.#next = (this.#next + 1) % this.#ring.length;
    return now - oldest < this.windowMs;
  }
}
