// One step after another, like a promise chain, except that a failed step fails only its own
// caller: the steps queued behind it still run. A shard's intake (stream calls, repairs, kicks)
// is such a queue; a plain `p = p.then(step)` chain would skip every step after one rejected
// RPC, and the shard would deliver nothing more until it restarted.
export class Serial {
  #last: Promise<unknown> = Promise.resolve();

  constructor(private readonly onFailure: (err: unknown) => void) {}

  /** Runs `step` once every step queued before it has settled; its result is the caller's. */
  run<T>(step: () => T | Promise<T>): Promise<T> {
    const result = this.#last.then(step);
    this.#last = result.catch(this.onFailure);
    return result;
  }
}
