// Publishes waiting for their echo. A publish is written to a socket at most once: while
// offline it waits here (bounded), it is sent in order after the next welcome, and its echo —
// matched by id and sender (the caller checks the sender), possibly inside a resume replay —
// resolves it with the message's seq.
import { RoomError } from "./errors";

/** Default bound. It equals the room's default burst (RATE_LIMIT_BURST), so a full outbox
 * flushed at once after a reconnect is not answered `rate_limited`. */
export const OUTBOX_LIMIT = 20;
/** Default time from sending a publish to its echo. */
export const ACK_TIMEOUT_MS = 10_000;

interface Entry {
  id: string;
  text: string;
  /** queued: not sent yet; sent: on the current socket; in_doubt: sent on a socket that dropped. */
  state: "queued" | "sent" | "in_doubt";
  resolve(seq: number): void;
  reject(err: RoomError): void;
  timer?: ReturnType<typeof setTimeout>;
}

export class Outbox {
  readonly #limit: number;
  readonly #ackTimeoutMs: number;
  readonly #prefix: string;
  #counter = 0;
  /** In publish order: Map iteration order is insertion order. */
  readonly #entries = new Map<string, Entry>();

  constructor(opts: { limit?: number; ackTimeoutMs?: number; idPrefix?: string } = {}) {
    this.#limit = opts.limit ?? OUTBOX_LIMIT;
    this.#ackTimeoutMs = opts.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    this.#prefix = opts.idPrefix ?? randomPrefix();
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Queues a publish; it is sent by the next `flush`. */
  add(data: unknown): Promise<number> {
    if (this.#entries.size >= this.#limit) {
      return Promise.reject(new RoomError("outbox_full", `${this.#limit} publishes are already waiting`));
    }
    // JSON.stringify would silently drop it, and the room requires `data`.
    if (data === undefined) return Promise.reject(new RoomError("bad_request", "data is required"));
    const id = `${this.#prefix}.${++this.#counter}`;
    let text: string;
    try {
      text = JSON.stringify({ type: "publish", data, id });
    } catch (err) {
      return Promise.reject(new RoomError("bad_request", `data is not JSON-serializable: ${String(err)}`));
    }
    return new Promise<number>((resolve, reject) => {
      this.#entries.set(id, { id, text, state: "queued", resolve, reject });
    });
  }

  /** Sends every queued publish, in order, exactly once. */
  flush(send: (text: string) => void): void {
    for (const entry of this.#entries.values()) {
      if (entry.state !== "queued") continue;
      entry.state = "sent";
      entry.timer = setTimeout(() => {
        this.#settle(entry.id, new RoomError("timeout", `no echo within ${this.#ackTimeoutMs} ms`));
      }, this.#ackTimeoutMs);
      send(entry.text);
    }
  }

  /** A `message` frame from this user with an id: ours resolves. Returns whether it was ours. */
  echo(id: string, seq: number): boolean {
    return this.#settle(id, seq);
  }

  /** An `error` frame with an id: ours rejects with its code. Returns whether it was ours. */
  error(id: string, err: RoomError): boolean {
    return this.#settle(id, err);
  }

  /** The socket dropped: what was sent on it waits for the resume's verdict. */
  disconnected(): void {
    for (const entry of this.#entries.values()) if (entry.state === "sent") entry.state = "in_doubt";
  }

  /**
   * The resume is complete (its replay has been read) or impossible: whatever is still in
   * doubt was not seen accepted. It is rejected, not re-sent, because a frame still travelling
   * to the old socket could yet be accepted and would then appear twice.
   */
  settleInDoubt(): void {
    for (const entry of [...this.#entries.values()]) {
      if (entry.state === "in_doubt") {
        this.#settle(entry.id, new RoomError("connection_lost", "the connection dropped before the echo arrived"));
      }
    }
  }

  /** Rejects everything (the client is closing for good). */
  rejectAll(err: RoomError): void {
    for (const id of [...this.#entries.keys()]) this.#settle(id, err, true);
  }

  #settle(id: string, outcome: number | RoomError, evenQueued = false): boolean {
    const entry = this.#entries.get(id);
    // A queued entry was never sent, so no echo or error can be about it.
    if (!entry || (entry.state === "queued" && !evenQueued)) return false;
    this.#entries.delete(id);
    clearTimeout(entry.timer);
    if (typeof outcome === "number") entry.resolve(outcome);
    else entry.reject(outcome);
    return true;
  }
}

/** Random base-36 characters and the clock: ids from two clients of one user must not collide. */
export function randomPrefix(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => (b % 36).toString(36)).join("") + Date.now().toString(36).slice(-4);
}
