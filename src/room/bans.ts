// Users an admin kicked with a ban (POST /rooms/:room/kick): their upgrades into the room are
// refused until the ban runs out. Kept in the room's SQLite with its expiry, so a ban outlives
// hibernation and restarts; an expired one is ignored at once and trimmed when next seen.

/** One ban: the user, and when it ends (ms since the epoch). */
export interface Ban {
  uid: string;
  until: number;
}

export class Bans {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS bans (uid TEXT PRIMARY KEY, until INTEGER NOT NULL)`);
    sql.exec(`DELETE FROM bans WHERE until <= ?`, Date.now());
  }

  /** Sets `uid`'s ban to end at `until`; one that has already ended lifts it. */
  set(ban: Ban, now = Date.now()): void {
    if (ban.until <= now) {
      this.sql.exec(`DELETE FROM bans WHERE uid = ?`, ban.uid);
      return;
    }
    this.sql.exec(`INSERT INTO bans (uid, until) VALUES (?, ?) ON CONFLICT(uid) DO UPDATE SET until = excluded.until`, ban.uid, ban.until);
  }

  /** When `uid`'s ban ends, or undefined when the user is not banned. */
  until(uid: string, now = Date.now()): number | undefined {
    const row = this.sql.exec<{ until: number }>(`SELECT until FROM bans WHERE uid = ?`, uid).toArray()[0];
    if (!row) return undefined;
    if (Number(row.until) > now) return Number(row.until);
    this.sql.exec(`DELETE FROM bans WHERE uid = ?`, uid);
    return undefined;
  }

  /** Every ban still running, trimming the rest (a shard's snapshot carries them). */
  list(now = Date.now()): Ban[] {
    this.sql.exec(`DELETE FROM bans WHERE until <= ?`, now);
    return this.sql
      .exec<{ uid: string; until: number }>(`SELECT uid, until FROM bans`)
      .toArray()
      .map((r) => ({ uid: r.uid, until: Number(r.until) }));
  }

  /** Replaces every ban with `bans` (a shard taking its root's list). */
  replace(bans: Ban[]): void {
    this.sql.exec(`DELETE FROM bans`);
    for (const ban of bans) this.set(ban);
  }
}
