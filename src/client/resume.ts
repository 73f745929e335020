// Where this client is in the room's message stream, so a reconnect can ask for what it missed
// (`?since=&epoch=`) and drop anything it already has.
import type { WelcomeFrame } from "../protocol";

/** What a welcome means for the client's view of the room. */
export type WelcomeOutcome =
  /** First join: nothing to resume. */
  | "fresh"
  /** The missed messages follow the welcome, up to its seq. */
  | "recovered"
  /** The view is stale (history trimmed, or the room lost its storage): refetch. */
  | "stale";

/**
 * Deletes remembered ahead of the position. A live delete overtakes its message by a batch at
 * most, so a handful is normal; the bound only keeps a misbehaving server from growing the set.
 */
export const AHEAD_LIMIT = 1024;

export class ResumePoint {
  #epoch: string | undefined;
  /** The room's proof of where this client's connections started (the welcome's `resume`). */
  #token: string | undefined;
  /** Highest seq passed: delivered to the app, or known deleted. */
  #seq: number | undefined;
  /** The replay after a recovered welcome ends when `#seq` reaches this. */
  #replayUntil = 0;
  /**
   * Deletes that arrived before their message (seq above the next one expected): the message is
   * still to come, and when it does it moves the position but is not delivered.
   */
  readonly #ahead = new Set<number>();

  get seq(): number | undefined {
    return this.#seq;
  }

  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** Query parameters for the next connection. */
  params(): Record<string, string> {
    if (this.#epoch === undefined || this.#seq === undefined) return {};
    return { since: String(this.#seq), epoch: this.#epoch, ...(this.#token ? { resume: this.#token } : {}) };
  }

  welcome(w: Pick<WelcomeFrame, "epoch" | "seq" | "recovered" | "resume">): WelcomeOutcome {
    const resuming = this.#seq !== undefined;
    this.#token = w.resume;
    if (resuming && w.recovered === true && w.epoch === this.#epoch) {
      this.#replayUntil = w.seq;
      // The position stays, so deletes ahead of it still wait for their messages in the replay.
      return "recovered";
    }
    this.#epoch = w.epoch;
    this.#seq = w.seq;
    this.#replayUntil = w.seq;
    // A new starting point (or another epoch's seqs): nothing remembered about the old stream holds.
    this.#ahead.clear();
    return resuming ? "stale" : "fresh";
  }

  /** True while a recovered welcome's replay has not been read to its end. */
  replaying(): boolean {
    return this.#seq !== undefined && this.#seq < this.#replayUntil;
  }

  /**
   * A message arrived: false if the app must not get it, a duplicate or out-of-order copy, or
   * one whose delete came first. The position passes any but a duplicate.
   */
  accept(seq: number): boolean {
    if (this.#seq !== undefined && seq <= this.#seq) return false;
    const deleted = this.#ahead.has(seq);
    this.#moveTo(seq);
    return !deleted;
  }

  /**
   * A `delete` frame arrived. Only one for the next seq moves the position: that is a replay's
   * delete in a deleted message's place (or a live one just ahead of its message, which then
   * arrives as a duplicate). One further ahead overtook its message (e.g. in a batch): moving the
   * position to it would drop the undelivered messages below it as duplicates, so it is
   * remembered instead. One at or below the position is of a message the app already has.
   */
  deleted(seq: number): void {
    if (this.#seq === undefined || seq <= this.#seq) return;
    if (seq === this.#seq + 1) return this.#moveTo(seq);
    if (this.#ahead.size >= AHEAD_LIMIT) {
      // Full: forget the oldest; its message, if it ever comes, is delivered (the app had the delete).
      this.#ahead.delete(this.#ahead.values().next().value as number);
    }
    this.#ahead.add(seq);
  }

  #moveTo(seq: number): void {
    this.#seq = seq;
    // What the position passed can no longer arrive (it would be a duplicate): forget its deletes.
    for (const s of this.#ahead) if (s <= seq) this.#ahead.delete(s);
  }
}
