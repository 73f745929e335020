// The room's token bucket, mirrored on this side. Every frame but `ping` takes a token there,
// and a frame that finds none is refused and dropped; here it waits for one instead, in the
// order it was sent, so a burst of app calls or the catch-up after a reconnect reaches the room
// at the rate it allows rather than partly refused.
import type { ConnectionLimits } from "../protocol";

interface Waiting {
  text: string;
  /** Called once the frame is written; never if it is dropped with its connection. */
  written?: () => void;
  /** A frame sent with the same key while this one waits replaces its text, keeping its place. */
  key?: string;
}

export class Pacer {
  readonly #write: (text: string) => void;
  /** Undefined: no limits known (a room that advertises none), nothing waits. */
  #bucket: { ratePerSec: number; capacity: number; tokens: number; updated: number } | undefined;
  readonly #queue: Waiting[] = [];
  /** Set only while something waits: an idle client holds no timer. */
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(write: (text: string) => void) {
    this.#write = write;
  }

  /** A new connection: its bucket starts full, as the room's does. */
  start(limits: Pick<ConnectionLimits, "ratePerSec" | "burst"> | undefined, now = Date.now()): void {
    this.stop();
    // One token stays in reserve: frames can reach the room closer together than they left
    // (network jitter up to 1/rate), and the room refuses one that arrives before its token.
    const capacity = limits ? Math.max(1, limits.burst - 1) : 0;
    this.#bucket = limits && { ratePerSec: limits.ratePerSec, capacity, tokens: capacity, updated: now };
  }

  /** The connection is gone: what waits was never written and is dropped (the outbox re-queues its own). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
  }

  /** Writes `text` at once if a token is free and nothing waits ahead of it; otherwise queues it. */
  send(text: string, written?: () => void, key?: string): void {
    const same = key === undefined ? undefined : this.#queue.find((w) => w.key === key);
    if (same) same.text = text;
    else this.#queue.push({ text, written, key });
    this.#drain();
  }

  #drain(now = Date.now()): void {
    const bucket = this.#bucket;
    if (bucket) {
      const elapsedSec = Math.max(0, now - bucket.updated) / 1000;
      bucket.tokens = Math.min(bucket.capacity, bucket.tokens + elapsedSec * bucket.ratePerSec);
      bucket.updated = now;
    }
    while (this.#queue.length > 0 && (!bucket || bucket.tokens >= 1)) {
      if (bucket) bucket.tokens -= 1;
      const next = this.#queue.shift()!;
      this.#write(next.text);
      next.written?.();
    }
    if (bucket && this.#queue.length > 0 && this.#timer === undefined) {
      const waitMs = Math.ceil(((1 - bucket.tokens) / bucket.ratePerSec) * 1000);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#drain();
      }, waitMs);
    }
  }
}
