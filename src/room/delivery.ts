// Who gets which frame, and in what order. Everything the room sends goes through here: the
// outbox keeps each recipient's order and coalesces frames into arrays while the room is busy
// (outbox.ts), and presence announcements may be held while the room churns (announcements.ts).
// Anything else a socket is sent first flushes what is held for it, so every recipient still
// sees the room's events in the order they happened.
import { Announcements } from "./announcements";
import { MIN_BATCH_FANOUT, Outbox } from "./outbox";
import type { Session } from "./session";

export class Delivery {
  readonly outbox: Outbox;
  readonly #announcements: Announcements;

  /** `sessions`: the room's live index, iterated in creation order; `batching`: see outbox.ts. */
  constructor(
    private readonly sessions: Map<WebSocket, Session>,
    batching = true,
  ) {
    this.outbox = new Outbox(batching);
    this.#announcements = new Announcements(this.outbox);
  }

  /** To one session, behind anything queued or held for it. */
  send(session: Session, text: string): void {
    if (this.#announcements.owes(session)) this.flushHeld(Date.now());
    this.outbox.send(session.ws, text);
  }

  /**
   * Serialized once, sent to every live session (numbered below `before`) with no await in the
   * loop. Returns recipients.
   */
  broadcast(text: string, before = Infinity): number {
    this.flushHeld(Date.now());
    this.outbox.broadcasting(this.sessions.size);
    let n = 0;
    for (const session of this.sessions.values()) {
      if (session.order >= before) continue;
      this.outbox.send(session.ws, text);
      n++;
    }
    return n;
  }

  /**
   * Several frames one event produced (a shard's stream call carries a burst the root sequenced
   * in one turn), to every live session. The outbox batches only across events, so a wide room
   * sends them to each session together here, as its drain would have. Returns deliveries.
   */
  broadcastAll(texts: string[]): number {
    if (texts.length === 0) return 0;
    if (texts.length === 1 || !this.outbox.batching || this.sessions.size < MIN_BATCH_FANOUT) {
      return texts.reduce((n, text) => n + this.broadcast(text), 0);
    }
    this.flushHeld(Date.now());
    this.outbox.broadcasting(this.sessions.size);
    for (const session of this.sessions.values()) this.outbox.sendAll(session.ws, texts);
    return texts.length * this.sessions.size;
  }

  /**
   * A presence announcement, for the sessions numbered below `before` (the others learned the set
   * from their welcome). Sent now, or held: then returns when the room's alarm must flush it.
   */
  announce(text: string, before = Infinity): number | null {
    if (this.#announcements.hold(text, this.sessions.size, Date.now(), before)) return this.#announcements.due;
    this.broadcast(text, before);
    return null;
  }

  /** Sends the held announcements (the alarm's job, or before anything else goes out). */
  flushHeld(now: number): void {
    this.#announcements.flush(this.sessions.values(), now);
  }

  /** Before the room closes a socket: what is queued for it (the error that closed it) goes first. */
  flush(session: Session): void {
    this.outbox.flush(session.ws);
  }
}
