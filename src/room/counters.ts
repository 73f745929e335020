// Room statistics. Counted in memory and written at most about once a second (by the room's
// alarm), not once per message: a write per frame would double the storage work of a publish.
// A crash can lose up to that last second of counts; hibernation cannot, because the room
// hibernates only after ~10 s of silence and the flush alarm fires well before that.

const KEYS = ["published", "delivered", "rejected", "rateLimited"] as const;
export type CounterName = (typeof KEYS)[number];
export const FLUSH_AFTER_MS = 1000;

export class Counters {
  readonly values: Record<CounterName, number> = { published: 0, delivered: 0, rejected: 0, rateLimited: 0 };
  /** true while there are counts not yet written */
  dirty = false;

  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`);
    for (const row of sql.exec<{ name: string; value: number }>(`SELECT name, value FROM counters`)) {
      if ((KEYS as readonly string[]).includes(row.name)) this.values[row.name as CounterName] = Number(row.value);
    }
  }

  /**
   * Counts one start of the room's object: its first use, or a wake-up after hibernation or
   * eviction. Written at once, unlike the others: starts are rare, and the count must outlive
   * the very eviction it records. Returns the count, this start included.
   */
  countStart(): number {
    return this.sql
      .exec<{ value: number }>(
        `INSERT INTO counters (name, value) VALUES ('starts', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value`,
      )
      .one().value;
  }

  /** Adds to a counter; returns true when this made the set dirty (a flush must be scheduled). */
  add(name: CounterName, n = 1): boolean {
    this.values[name] += n;
    const wasClean = !this.dirty;
    this.dirty = true;
    return wasClean;
  }

  flush(): void {
    if (!this.dirty) return;
    for (const name of KEYS) {
      this.sql.exec(
        `INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value`,
        name,
        this.values[name],
      );
    }
    this.dirty = false;
  }
}
