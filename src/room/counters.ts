// Room statistics. Counted in memory and written at most about once a second, not once per
// message: a write per frame would double the storage work of a publish. A room that keeps
// publishing writes them with a publish (flushDue), in the transaction the message's INSERT
// commits anyway; what no publish carries is written by the room's alarm, FLUSH_WITHIN_MS after
// the counts changed. An alarm per second instead cost each busy small room an alarm run, two
// setAlarm calls and a commit of its own every second (issue #15). A crash can lose up to that
// last second of counts; hibernation cannot, because the room hibernates only after ~10 s of
// silence and the alarm fires before that.

const KEYS = ["published", "delivered", "rejected", "rateLimited"] as const;
export type CounterName = (typeof KEYS)[number];
/** How often a publishing room writes its counts. */
export const FLUSH_AFTER_MS = 1000;
/**
 * When the alarm writes what no publish has. One second: the alarm is the room's last event
 * before it may hibernate (~10 s after it), so a later one keeps every quiet room awake longer
 * (5 s here made the hibernation e2e test's room stay awake past its 13 s of silence).
 */
export const FLUSH_WITHIN_MS = 1000;

export class Counters {
  readonly values: Record<CounterName, number> = { published: 0, delivered: 0, rejected: 0, rateLimited: 0 };
  /** true while there are counts not yet written */
  dirty = false;
  /** When the counts were last written (0: not by this instance). */
  #flushedAt = 0;

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

  /** For an event that writes anyway: writes the counts too when the last write is FLUSH_AFTER_MS old. */
  flushDue(now: number): void {
    if (now - this.#flushedAt >= FLUSH_AFTER_MS) this.flush(now);
  }

  flush(now: number): void {
    if (!this.dirty) return;
    this.sql.exec(
      `INSERT INTO counters (name, value) VALUES ${KEYS.map(() => "(?, ?)").join(", ")} ON CONFLICT(name) DO UPDATE SET value = excluded.value`,
      ...KEYS.flatMap((name) => [name, this.values[name]]),
    );
    this.dirty = false;
    this.#flushedAt = now;
  }
}
