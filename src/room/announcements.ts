// Presence announcements while users churn. Each join, leave or update goes to everyone in
// the room, so N users arriving together cost about N²/2 frames: 500 joins are ~125,000 frames,
// and the bench showed they were the whole gap between the room's handshake and the floor's
// (1.63× → 1.10× without them). So in a wide room an announcement that comes within a hold
// window of the previous one is held, and the held ones go out together when that window ends:
// one WebSocket message per recipient (docs/protocol.md, "Batching"). The first announcement after a
// quiet spell goes at once, so a room that is not churning never delays one.
//
// A held frame goes to the sockets that were in the room when it happened, not to later ones:
// those learned the set from their welcome. Sessions are numbered as they are created (and
// iterated in that order), so each held frame keeps the number of the first session that must
// not get it, and every recipient gets a suffix of the held list.
//
// delivery.ts flushes the held frames before a socket is sent anything else, so each recipient
// still sees events in the order they happened, and the room schedules its alarm for `due` (a
// timer would be simpler but keeps the object awake: STYLE rule 5). Held frames live in memory only:
// the alarm fires long before the room could hibernate, and an eviction that loses them also
// disconnects their recipients, who learn the set again from their next welcome.
import { MIN_BATCH_FANOUT, type Outbox } from "./outbox";
import { Session } from "./session";

/**
 * How long an announcement may wait for the ones behind it while presence churns, in ms: one
 * per socket, so churn costs a room at most ~1,000 sends a second (fan-out × flushes; ~2% of
 * its thread at ~20 µs a send), within 25–250 ms. The bench measured a 500-user join storm at
 * 1.56× the floor's handshake time with a fixed 25 ms, 1.24× with 100 ms, 1.07× with 250 ms.
 * (For scale: Phoenix.Tracker broadcasts presence diffs every 1,500 ms by default.)
 */
export function holdMs(fanout: number): number {
  return Math.min(250, Math.max(25, fanout));
}

interface Held {
  text: string;
  /** sessions numbered from here on do not get it */
  before: number;
}

export class Announcements {
  #held: Held[] = [];
  #lastSentAt = -Infinity;
  /** When the held frames must go out (meaningful while some are held). */
  #due = 0;

  constructor(private readonly outbox: Outbox) {}

  /**
   * Decides whether an announcement to `fanout` sockets waits (true) or is sent by the caller
   * now (false). Only sessions numbered below `before` get it (a join is not for the joiner,
   * nor for anyone whose welcome listed the user).
   */
  hold(text: string, fanout: number, now: number, before = Session.nextOrder): boolean {
    if (!this.outbox.batching || fanout < MIN_BATCH_FANOUT) return false;
    const window = holdMs(fanout);
    if (this.#held.length === 0) {
      if (now - this.#lastSentAt >= window) {
        this.#lastSentAt = now;
        return false;
      }
      this.#due = this.#lastSentAt + window;
    }
    this.#held.push({ text, before: Math.min(before, Session.nextOrder) });
    return true;
  }

  /** When the held frames must go out, or null when none are held. */
  get due(): number | null {
    return this.#held.length === 0 ? null : this.#due;
  }

  /** Whether `session` is owed held frames (which must precede anything else it is sent). */
  owes(session: Session): boolean {
    const last = this.#held.at(-1);
    return last !== undefined && session.order < last.before;
  }

  /** Sends every held frame to the sessions it is for; `sessions` in creation order. */
  flush(sessions: Iterable<Session>, now: number): void {
    const held = this.#held;
    if (held.length === 0) return;
    this.#held = [];
    this.#lastSentAt = now;
    let from = 0;
    let frames: string[] | undefined;
    for (const session of sessions) {
      while (from < held.length && held[from]!.before <= session.order) {
        from++;
        frames = undefined;
      }
      if (from === held.length) break; // later sessions joined after every held event
      frames ??= held.slice(from).map((h) => h.text);
      this.outbox.sendAll(session.ws, frames);
    }
  }
}
