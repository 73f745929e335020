// Reconnect delays: exponential backoff with full jitter (AWS Architecture Blog, "Exponential
// Backoff And Jitter", 2015). Full jitter spreads a room's clients over the whole window after a
// server restart instead of having them all return at the same instants.

export interface BackoffOptions {
  /** First window in ms. Default 500. */
  baseMs?: number;
  /** Largest window in ms. Default 30 000. */
  capMs?: number;
  /** A connection that stays up this long resets the windows to `baseMs`. Default 10 000. */
  stableMs?: number;
  /** Source of randomness in [0, 1); tests pass their own. Default Math.random. */
  random?: () => number;
}

export const BACKOFF_DEFAULTS = { baseMs: 500, capMs: 30_000, stableMs: 10_000 } as const;

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly stableMs: number;
  readonly #random: () => number;
  /** Failed attempts since the last reset. */
  #attempt = 0;
  #openedAt: number | null = null;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? BACKOFF_DEFAULTS.baseMs;
    this.capMs = opts.capMs ?? BACKOFF_DEFAULTS.capMs;
    this.stableMs = opts.stableMs ?? BACKOFF_DEFAULTS.stableMs;
    this.#random = opts.random ?? Math.random;
    if (!(this.baseMs > 0 && this.capMs >= this.baseMs)) throw new RangeError("backoff needs 0 < baseMs <= capMs");
  }

  get attempt(): number {
    return this.#attempt;
  }

  /** The window the next delay is drawn from: min(cap, base · 2^attempt). */
  window(): number {
    // 2^attempt overflows to Infinity long after the cap is reached; min() keeps it finite.
    return Math.min(this.capMs, this.baseMs * 2 ** this.#attempt);
  }

  /** The delay before the next attempt, uniform in [0, window), and one more attempt counted. */
  next(): number {
    const delay = Math.floor(this.#random() * this.window());
    this.#attempt++;
    return delay;
  }

  /** A connection is up (welcome received). Its stability is judged when it closes. */
  opened(now: number): void {
    this.#openedAt = now;
  }

  /**
   * A connection ended. Only one that lasted `stableMs` resets the windows, so a server that
   * accepts and then drops every connection at once is still backed off from.
   */
  closed(now: number): void {
    if (this.#openedAt !== null && now - this.#openedAt >= this.stableMs) this.#attempt = 0;
    this.#openedAt = null;
  }

  reset(): void {
    this.#attempt = 0;
    this.#openedAt = null;
  }
}
