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

export class ResumePoint {
  #epoch: string | undefined;
  /** The room's proof of where this client's connections started (the welcome's `resume`). */
  #token: string | undefined;
  /** Highest seq delivered to the app. */
  #seq: number | undefined;
  /** The replay after a recovered welcome ends when `#seq` reaches this. */
  #replayUntil = 0;

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
      return "recovered";
    }
    this.#epoch = w.epoch;
    this.#seq = w.seq;
    this.#replayUntil = w.seq;
    return resuming ? "stale" : "fresh";
  }

  /** True while a recovered welcome's replay has not been read to its end. */
  replaying(): boolean {
    return this.#seq !== undefined && this.#seq < this.#replayUntil;
  }

  /**
   * A message arrived (or a replay's `delete` in a deleted one's place): false if the app already
   * has it, a duplicate or out-of-order copy.
   */
  accept(seq: number): boolean {
    if (this.#seq !== undefined && seq <= this.#seq) return false;
    this.#seq = seq;
    return true;
  }
}
