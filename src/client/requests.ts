// Frames answered by a reply with their id (`history` → history page, `direct` → ack). Unlike
// publishes these are not queued: they need a live connection and fail when it drops.
import { RoomError } from "./errors";

interface Waiting {
  resolve(value: unknown): void;
  reject(err: RoomError): void;
  /** Set once the frame is written: the timeout counts from there, not from its wait for a token. */
  timer?: ReturnType<typeof setTimeout>;
}

export class Requests {
  readonly #waiting = new Map<string, Waiting>();
  #counter = 0;

  constructor(
    readonly prefix: string,
    readonly timeoutMs: number,
  ) {}

  /** Registers a request under a fresh id and hands the id to `send`, which calls `written` once it is on the socket. */
  start<T>(send: (id: string, written: () => void) => void): Promise<T> {
    const id = `${this.prefix}.r${++this.#counter}`;
    return new Promise<T>((resolve, reject) => {
      const waiting: Waiting = { resolve, reject };
      this.#waiting.set(id, waiting);
      send(id, () => {
        if (this.#waiting.get(id) !== waiting) return;
        waiting.timer = setTimeout(() => {
          this.settle(id, new RoomError("timeout", `no answer within ${this.timeoutMs} ms`));
        }, this.timeoutMs);
      });
    });
  }

  /** Resolves (a value) or rejects (a RoomError) the request `id`; false if it is not ours. */
  settle(id: string, outcome: unknown): boolean {
    const w = this.#waiting.get(id);
    if (!w) return false;
    this.#waiting.delete(id);
    clearTimeout(w.timer);
    if (outcome instanceof RoomError) w.reject(outcome);
    else w.resolve(outcome);
    return true;
  }

  rejectAll(err: RoomError): void {
    for (const id of [...this.#waiting.keys()]) this.settle(id, err);
  }
}
