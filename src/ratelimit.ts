// Rate limits: a token bucket per connection, a sliding count of rejected frames per
// connection, and the per-IP cap on upgrade attempts at the Worker.

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
    const elapsed = Math.max(0, now - this.#updated) / 1000;
    this.#tokens = Math.min(this.burst, this.#tokens + elapsed * this.ratePerSec);
    this.#updated = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
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

/**
 * Per-IP upgrade attempts, counted in 10 s windows, held in the isolate's memory.
 *
 * An attempt is refused when it and those counted in the current and the previous window
 * exceed the limit. Any 10 s span lies within those two windows, so no span ever sees more
 * than `limit` allowed attempts (a single fixed window let 2 x limit through in a burst that
 * straddled a window boundary); the price is that an IP that hit the limit may wait up to
 * 20 s instead of 10.
 *
 * Why in-isolate: Cloudflare's Rate Limiting binding fixes its limit in wrangler.toml (so
 * `UPGRADE_LIMIT` could not be honoured as a var) and is approximate per location anyway; a
 * limiter Durable Object per IP is exact but adds a round trip to every handshake. Counts in
 * the isolate cost nothing and hold per isolate: under `wrangler dev` (one isolate) the bound
 * is exact; at the edge an attacker spread over many isolates gets at most the limit per
 * isolate, which still bounds the handshake rate each isolate and room sees. The maps are
 * bounded so a spray of spoofed addresses cannot grow them without limit.
 */
export class UpgradeLimiter {
  static readonly WINDOW_MS = 10_000;
  static readonly MAX_TRACKED = 50_000;
  #window = 0;
  #counts = new Map<string, number>();
  #previous = new Map<string, number>();

  allow(ip: string, limit: number, now = Date.now()): boolean {
    const window = Math.floor(now / UpgradeLimiter.WINDOW_MS);
    if (window !== this.#window) {
      this.#previous = window === this.#window + 1 ? this.#counts : new Map();
      this.#counts = new Map();
      this.#window = window;
    } else if (this.#counts.size >= UpgradeLimiter.MAX_TRACKED) {
      this.#counts.clear();
    }
    const count = (this.#counts.get(ip) ?? 0) + 1;
    this.#counts.set(ip, count);
    return count + (this.#previous.get(ip) ?? 0) <= limit;
  }
}
