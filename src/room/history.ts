// The room's message log in Durable Object SQLite, colocated with the sockets. Each row keeps
// the message frame already serialized, so replay and history pages never re-encode it.
//
// A deleted message leaves a tombstone (its row with an empty frame) rather than no row: the
// room's seq is recovered from MAX(seq), so removing the newest row would let a restarted room
// hand out that seq again, and shards repairing a gap rely on the log holding every seq.
import type { HistoryPage, MessageFrame } from "../protocol";

/** The frame of a deleted message's row. */
export const TOMBSTONE = "";

/**
 * A row as a replay sends it: the message, or for a deleted one a `delete` frame in its place, so
 * a resumed client's position passes every seq (it would otherwise wait for one that never comes).
 */
export function replayFrame(frame: string, seq: number): string {
  return frame === TOMBSTONE ? `{"type":"delete","seq":${seq}}` : frame;
}

/** Rows per read of a resume replay (see `after`). */
export const REPLAY_PAGE = 32;

export class History {
  /** Last seq assigned; recovered from the log itself, which never trims its newest row. */
  seq: number;

  constructor(
    private readonly sql: SqlStorage,
    private readonly limit: number,
  ) {
    sql.exec(`CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, frame TEXT NOT NULL)`);
    this.seq = Number(sql.exec(`SELECT COALESCE(MAX(seq), 0) AS s FROM messages`).one().s);
  }

  /** Takes the next seq. The caller stores the frame with `append` before delivering it. */
  next(): number {
    return ++this.seq;
  }

  /**
   * Stores a message and trims what fell out of retention. The trim is a range delete on the
   * primary key, so it touches only the expired rows, never the whole table. The room's output
   * gate holds every send made after this write until it is durable.
   */
  append(seq: number, frame: string): void {
    this.sql.exec(`INSERT INTO messages (seq, frame) VALUES (?, ?)`, seq, frame);
    if (seq > this.limit) this.sql.exec(`DELETE FROM messages WHERE seq <= ?`, seq - this.limit);
  }

  /** Deletes message `seq`, keeping its tombstone; false when the log no longer holds it. */
  delete(seq: number): boolean {
    if (seq <= this.seq - this.limit) return false;
    const rows = this.sql.exec(`UPDATE messages SET frame = ? WHERE seq = ? AND frame != ?`, TOMBSTONE, seq, TOMBSTONE);
    return rows.rowsWritten > 0;
  }

  /** The deleted messages' seqs from `from` on, oldest first (a shard re-reading moderation). */
  deletedFrom(from: number): number[] {
    const rows = this.sql.exec<{ seq: number }>(`SELECT seq FROM messages WHERE seq >= ? AND frame = ? ORDER BY seq`, from, TOMBSTONE);
    return rows.toArray().map((r) => Number(r.seq));
  }

  /** The oldest seq still retained (seq + 1 when the log is empty). */
  oldest(): number {
    const row = this.sql.exec(`SELECT MIN(seq) AS s FROM messages`).one();
    const min = row.s === null ? this.seq + 1 : Number(row.s);
    return Math.max(min, this.seq - this.limit + 1);
  }

  /** True when every message after `since` is still retained. */
  covers(since: number): boolean {
    return since <= this.seq && since + 1 >= this.oldest();
  }

  /** A resume replay: the frames after `since`, oldest first, in pages (replayFrame). */
  *after(since: number, pageSize = REPLAY_PAGE): Generator<string[]> {
    for (const page of this.#read(since, pageSize)) yield page.map((r) => replayFrame(r.frame, r.seq));
  }

  /** Every seq's frame after `since`, oldest first, tombstones included (one entry per seq), in pages. */
  *rows(since: number, pageSize = REPLAY_PAGE): Generator<string[]> {
    for (const page of this.#read(since, pageSize)) yield page.map((r) => r.frame);
  }

  /** The rows after `since`, read `pageSize` at a time: a replay of the whole log never holds more than one page. */
  *#read(since: number, pageSize: number): Generator<{ seq: number; frame: string }[]> {
    let from = Math.max(since, this.seq - this.limit);
    for (;;) {
      const rows = this.sql
        .exec<{ seq: number; frame: string }>(`SELECT seq, frame FROM messages WHERE seq > ? ORDER BY seq LIMIT ?`, from, pageSize)
        .toArray();
      if (rows.length === 0) return;
      yield rows;
      if (rows.length < pageSize) return;
      from = Number(rows.at(-1)!.seq);
    }
  }

  /** A page of frames before `before` (exclusive), newest first, as serialized strings. */
  pageFrames(before: number | undefined, limit: number): { frames: string[]; more: boolean } {
    const upper = before ?? this.seq + 1;
    const floor = this.seq - this.limit;
    const rows = this.sql
      .exec<{ frame: string }>(
        `SELECT frame FROM messages WHERE seq < ? AND seq > ? AND frame != ? ORDER BY seq DESC LIMIT ?`,
        upper,
        floor,
        TOMBSTONE,
        limit + 1,
      )
      .toArray();
    const more = rows.length > limit;
    return { frames: rows.slice(0, limit).map((r) => r.frame), more };
  }

  page(before: number | undefined, limit: number): HistoryPage {
    const { frames, more } = this.pageFrames(before, limit);
    return { messages: frames.map((f) => JSON.parse(f) as MessageFrame), more };
  }
}
