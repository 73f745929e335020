// Presence in large rooms. A list of 100,000 users cannot go in a welcome, and a join or leave
// to everyone for each user is O(N²) frames; so above PRESENCE_LIMIT users the room tells a
// count instead: no per-user frames, and `{"type":"presence","event":"count","count":n}` to
// everyone at most once a second while the count changes. (Ably caps presence members per
// channel; Pusher keeps presence channels to small groups.)
//
// Falling back to the limit ends count mode with one `sync` frame carrying the whole list, since
// clients that joined while counting know nobody by name. The switch back happens on the same
// once-a-second tick, so a room hovering at the limit costs at most one such list a second.
// The mode is stored: an evicted room must still owe its clients that sync after it wakes.

export const COUNT_INTERVAL_MS = 1000;

export type CrowdFrame = "count" | "sync";

export class Crowd {
  /** True while clients are told counts rather than who. */
  #counting: boolean;
  /** When a count or sync went out last, and the count it carried. */
  #sentAt = -Infinity;
  #sentCount = -1;
  /** A change is waiting for the next tick (the room's alarm is set for `due`). */
  pending = false;

  constructor(
    private readonly sql: SqlStorage,
    readonly limit: number,
  ) {
    this.#counting = sql.exec(`SELECT 1 FROM meta WHERE key = 'presence_counting'`).toArray().length > 0;
  }

  get counting(): boolean {
    return this.#counting;
  }

  /** When the next count may go out. */
  get due(): number {
    return this.#sentAt + COUNT_INTERVAL_MS;
  }

  /**
   * A presence change in a room of `users`: true when it is told as a count (so the caller
   * sends no per-user frame). Entering count mode happens at once; leaving it waits for a tick.
   */
  absorbs(users: number): boolean {
    if (this.#counting) return true;
    if (users <= this.limit) return false;
    this.#set(true);
    return true;
  }

  /** The tick: what to send everyone now, if anything. */
  tick(users: number, now: number): CrowdFrame | null {
    this.pending = false;
    if (!this.#counting) return null;
    this.#sentAt = now;
    if (users <= this.limit) {
      this.#set(false);
      this.#sentCount = -1;
      return "sync";
    }
    if (users === this.#sentCount) return null;
    this.#sentCount = users;
    return "count";
  }

  #set(counting: boolean): void {
    this.#counting = counting;
    if (counting) this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('presence_counting', '1')`);
    else this.sql.exec(`DELETE FROM meta WHERE key = 'presence_counting'`);
  }
}
