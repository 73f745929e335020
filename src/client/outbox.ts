// Publishes waiting for their echo. A publish is written to a socket at most once: while
// offline it waits here (bounded), it is sent in order after the next welcome, and its echo —
// matched by id and sender (the caller checks the sender), possibly inside a resume replay —
// resolves it with the message's seq.
import { RoomError } from "./errors";

/**
 * Default bound. Sends are paced to the room's token bucket (pacer.ts), so the bound is not
 * about the burst any more: it caps memory and how late a publish may go out. A full outbox
 * drains in about (limit - burst) / rate seconds: 8 s at the room's defaults (burst 20, 10/s),
 * within the ack timeout, which runs from when a publish is written.
 */
export const OUTBOX_LIMIT = 100;
/** Default time from sending a publish to its echo. */
export const ACK_TIMEOUT_MS = 10_000;

interface Entry {
  id: string;
  text: string;
  /**
   * queued: not sent yet; paced: handed to the pacer, waiting for a token, not written yet;
   * sent: written to the current socket; in_doubt: written to a socket that dropped.
   */
  state: "queued" | "paced" | "sent" | "in_doubt";
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
  /** The room's frame limit in UTF-8 bytes, once a welcome has told it; before that, checked at flush. */
  maxBytes: number | undefined;

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
    const tooBig = tooLarge(text, this.maxBytes);
    if (tooBig) return Promise.reject(tooBig);
    return new Promise<number>((resolve, reject) => {
      this.#entries.set(id, { id, text, state: "queued", resolve, reject });
    });
  }

  /**
   * Hands every queued publish, in order, to `send`, which calls `written` once the frame is on
   * the socket; that starts the ack timeout. One queued before the room's limit was known and
   * over it is rejected here: the room could not name its id, so it would wait out the timeout.
   */
  flush(send: (text: string, written: () => void) => void): void {
    for (const entry of [...this.#entries.values()]) {
      if (entry.state !== "queued") continue;
      const tooBig = tooLarge(entry.text, this.maxBytes);
      if (tooBig) {
        this.#settle(entry.id, tooBig, true);
        continue;
      }
      entry.state = "paced";
      send(entry.text, () => this.#written(entry));
    }
  }

  #written(entry: Entry): void {
    if (this.#entries.get(entry.id) !== entry || entry.state !== "paced") return;
    entry.state = "sent";
    entry.timer = setTimeout(() => {
      this.#settle(entry.id, new RoomError("timeout", `no echo within ${this.#ackTimeoutMs} ms`));
    }, this.#ackTimeoutMs);
  }

  /** A `message` frame from this user with an id: ours resolves. Returns whether it was ours. */
  echo(id: string, seq: number): boolean {
    return this.#settle(id, seq);
  }

  /** An `error` frame with an id: ours rejects with its code. Returns whether it was ours. */
  error(id: string, err: RoomError): boolean {
    return this.#settle(id, err);
  }

  /**
   * The socket dropped: what was written to it waits for the resume's verdict; what was still
   * waiting for a token never left, so it is queued again for the next connection.
   */
  disconnected(): void {
    for (const entry of this.#entries.values()) {
      if (entry.state === "sent") entry.state = "in_doubt";
      else if (entry.state === "paced") entry.state = "queued";
    }
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
    // An entry not written yet cannot have an echo or error about it.
    const unwritten = entry?.state === "queued" || entry?.state === "paced";
    if (!entry || (unwritten && !evenQueued)) return false;
    this.#entries.delete(id);
    clearTimeout(entry.timer);
    if (typeof outcome === "number") entry.resolve(outcome);
    else entry.reject(outcome);
    return true;
  }
}

/**
 * The room reads at most `maxBytes` UTF-8 bytes of a frame; beyond, it answers `too_large`
 * without the frame's id. Undefined while the limit is unknown.
 */
export function tooLarge(text: string, maxBytes: number | undefined): RoomError | undefined {
  if (maxBytes === undefined || text.length * 3 <= maxBytes) return undefined; // ≤ 3 bytes per UTF-16 unit
  const bytes = new TextEncoder().encode(text).byteLength;
  return bytes > maxBytes ? new RoomError("too_large", `the frame is ${bytes} bytes; the room takes at most ${maxBytes}`) : undefined;
}

/** Random base-36 characters and the clock: ids from two clients of one user must not collide. */
export function randomPrefix(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => (b % 36).toString(36)).join("") + Date.now().toString(36).slice(-4);
}
