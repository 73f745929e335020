// Users an admin kicked with a ban (POST /rooms/:room/kick): their upgrades into the room are
// refused until the ban runs out. Kept in the room's SQLite with its expiry, so a ban outlives
// hibernation and restarts; an expired one is ignored at once and trimmed when next seen.
// Every upgrade asks, so the list is also held in memory (it is small, usually empty): a join
// costs no SQL statement for it.

/** One ban: the user, and when it ends (ms since the epoch). */
export interface Ban {
  uid: string;
  until: number;
}

export class Bans {
  /** The stored bans, by user: written through on every change. */
  readonly #until = new Map<string, number>();

  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS bans (uid TEXT PRIMARY KEY, until INTEGER NOT NULL)`);
    sql.exec(`DELETE FROM bans WHERE until <= ?`, Date.now());
    for (const row of sql.exec<{ uid: string; until: number }>(`SELECT uid, until FROM bans`)) this.#until.set(row.uid, Number(row.until));
  }

  /** Sets `uid`'s ban to end at `until`; one that has already ended lifts it. */
  set(ban: Ban, now = Date.now()): void {
    if (ban.until <= now) return this.#lift(ban.uid);
    this.sql.exec(`INSERT INTO bans (uid, until) VALUES (?, ?) ON CONFLICT(uid) DO UPDATE SET until = excluded.until`, ban.uid, ban.until);
    this.#until.set(ban.uid, ban.until);
  }

  /** When `uid`'s ban ends, or undefined when the user is not banned. */
  until(uid: string, now = Date.now()): number | undefined {
    const until = this.#until.get(uid);
    if (until === undefined) return undefined;
    if (until > now) return until;
    this.#lift(uid);
    return undefined;
  }

  /** Every ban still running, trimming the rest (a shard's snapshot carries them). */
  list(now = Date.now()): Ban[] {
    for (const [uid, until] of this.#until) if (until <= now) this.#lift(uid);
    return [...this.#until].map(([uid, until]) => ({ uid, until }));
  }

  #lift(uid: string): void {
    if (!this.#until.delete(uid)) return;
    this.sql.exec(`DELETE FROM bans WHERE uid = ?`, uid);
  }

  /** Replaces every ban with `bans` (a shard taking its root's list). */
  replace(bans: Ban[]): void {
    this.sql.exec(`DELETE FROM bans`);
    this.#until.clear();
    for (const ban of bans) this.set(ban);
  }
}
