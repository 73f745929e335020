// Idempotency keys for HTTP publish: a retried POST returns the first result and publishes
// nothing. A key is remembered while it is younger than 24 hours or among the newest 10,000,
// whichever keeps it longer.
import type { PublishResult } from "../protocol";

export const KEEP_MS = 24 * 60 * 60 * 1000;
export const KEEP_NEWEST = 10_000;
const TRIM_EVERY = 100;

export class IdempotencyKeys {
  /** Inserts by this instance. Memory starts over at every wake, so the first insert trims too. */
  #inserts = 0;

  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, epoch TEXT NOT NULL, ts INTEGER NOT NULL)`);
    sql.exec(`CREATE INDEX IF NOT EXISTS idempotency_ts ON idempotency (ts)`);
  }

  get(key: string): PublishResult | undefined {
    const row = this.sql.exec<{ seq: number; epoch: string }>(`SELECT seq, epoch FROM idempotency WHERE key = ?`, key).toArray()[0];
    return row && { seq: Number(row.seq), epoch: row.epoch };
  }

  put(key: string, result: PublishResult, now = Date.now()): void {
    this.sql.exec(`INSERT INTO idempotency (key, seq, epoch, ts) VALUES (?, ?, ?, ?)`, key, result.seq, result.epoch, now);
    // Trimming every TRIM_EVERY inserts keeps most publishes to one insert. Counting from the
    // first insert of each instance matters: a room that hibernates between a few keyed
    // publishes would otherwise never reach the 100th and never trim.
    if (this.#inserts++ % TRIM_EVERY === 0) this.trim(now);
  }

  trim(now = Date.now()): void {
    this.sql.exec(
      `DELETE FROM idempotency WHERE ts < ? AND key NOT IN (SELECT key FROM idempotency ORDER BY ts DESC LIMIT ?)`,
      now - KEEP_MS,
      KEEP_NEWEST,
    );
  }
}
