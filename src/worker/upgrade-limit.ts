// The Worker's per-IP cap on upgrade attempts, checked before anything else (even auth), so a
// client that reconnects in a tight loop cannot make the Worker verify tokens or wake rooms.
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
      this.#previous = window === this.#window + 1 ? this.#counts : new Map<string, number>();
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
