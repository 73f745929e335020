// The room's side of webhooks: an outbox. Each event is written to SQLite in the same
// synchronous run as the change it reports, so it commits with that change (a message and its
// event are stored together or not at all), and a row leaves the outbox only once the queue has
// accepted it. Delivery to the receiver, its retries and the dead-letter queue are the queue's
// and its consumer's (worker/webhooks.ts); the room retries only a send the queue refused, on
// its alarm. Sends run after the current event's work, one at a time, so they never delay a
// socket and what piles up during one send leaves together in the next.
import { overBytes, utf8Length, type UserRef, type WebhookEvent } from "../protocol";

/** An event before the outbox gives it its id, room and time. */
export type EventInput = WebhookEvent extends infer E ? (E extends WebhookEvent ? Omit<E, "id" | "room" | "ts"> & { ts?: number } : never) : never;

/**
 * A queue message: one room's events in order, as JSON text (the consumer parses it once). `n`
 * is the first event's number in the room, so a consumer can order one room's queue messages.
 */
export interface QueuedEvents {
  room: string;
  n: number;
  events: WebhookEvent[];
}

/** A queue message holds at most 128 KB; the rest is the envelope's. */
export const MAX_QUEUE_MESSAGE_BYTES = 120_000;
/** A message event larger than this goes without its `data` (`dataTooLarge`): the receiver reads it from history. */
export const MAX_EVENT_BYTES = 100_000;
/** How soon the room looks at its outbox again after the queue refused a send, or after a crash. */
export const RESEND_AFTER_MS = 10_000;

export class Webhooks {
  /** The next event's number: ids never repeat within an epoch, even after the outbox empties. */
  #next: number;
  #sending: Promise<void> | null = null;
  /** Users the receiver was told joined and not yet told left (webhook_members). */
  #members: number;

  constructor(
    private readonly sql: SqlStorage,
    private readonly queue: Queue<string>,
    private readonly scope: () => { room: string; epoch: string },
    /** Called when rows are left in the outbox: the room's alarm calls drain() again later. */
    private readonly resendBy: (at: number) => void,
  ) {
    sql.exec(`CREATE TABLE IF NOT EXISTS webhook_outbox (n INTEGER PRIMARY KEY, event TEXT NOT NULL)`);
    const last = sql.exec<{ n: number | null }>(`SELECT max(n) AS n FROM webhook_outbox`).one().n;
    const sent = sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = 'webhook_sent'`).toArray()[0];
    this.#next = Math.max(last ?? 0, Number(sent?.value ?? 0)) + 1;
    sql.exec(`CREATE TABLE IF NOT EXISTS webhook_members (uid TEXT PRIMARY KEY, name TEXT NOT NULL)`);
    this.#members = sql.exec<{ n: number }>(`SELECT count(*) AS n FROM webhook_members`).one().n;
  }

  // The receiver's view of who is in the room is kept apart from presence, because presence
  // forgets users whose sockets died with the object (a deploy, a crash) without close events:
  // reconcile() tells their leaves. So joins and leaves alternate per user, and each room's
  // `occupied` and `vacated` alternate, whatever happened in between.

  /** A user's first connection; the room's first user makes it `occupied`. */
  joined(user: UserRef): void {
    const added = this.sql.exec(`INSERT INTO webhook_members (uid, name) VALUES (?, ?) ON CONFLICT DO NOTHING`, user.id, user.name).rowsWritten;
    if (added === 0) return;
    if (this.#members++ === 0) this.emit({ type: "occupied" });
    this.emit({ type: "join", user });
  }

  /** A user's last connection gone; the room's last user makes it `vacated`. */
  left(user: UserRef): void {
    if (this.sql.exec(`DELETE FROM webhook_members WHERE uid = ?`, user.id).rowsWritten === 0) return;
    this.emit({ type: "leave", user });
    if (--this.#members === 0) this.emit({ type: "vacated" });
  }

  /** On start: the leaves of members whose sockets are gone without a close event. */
  reconcile(present: (uid: string) => boolean): void {
    const gone = this.sql
      .exec<{ uid: string; name: string }>(`SELECT uid, name FROM webhook_members`)
      .toArray()
      .filter((m) => !present(m.uid));
    for (const m of gone) this.left({ id: m.uid, name: m.name });
  }

  emit(input: EventInput): void {
    const { room, epoch } = this.scope();
    const n = this.#next++;
    // `type` first, for whoever reads the bodies; `ts` is the change's own when it has one (a message's).
    const { type, ...fields } = input;
    const event = { type, id: `${room}:${epoch}:${n}`, room, ts: Date.now(), ...fields } as WebhookEvent;
    let text = JSON.stringify(event);
    if (event.type === "message" && overBytes(text, MAX_EVENT_BYTES)) {
      const { data: _dropped, ...rest } = event;
      text = JSON.stringify({ ...rest, dataTooLarge: true });
    }
    this.sql.exec(`INSERT INTO webhook_outbox (n, event) VALUES (?, ?)`, n, text);
    // A backstop, should this instance die before its send: the alarm sends what is left.
    this.resendBy(Date.now() + RESEND_AFTER_MS);
    this.drain();
  }

  /**
   * Sends what the outbox holds, after the current event's work; also the alarm's and a restart's
   * retry. While a send is in flight there is nothing to do: its loop reads the outbox again.
   */
  drain(): void {
    if (this.#sending) return;
    this.#sending = Promise.resolve()
      .then(() => this.#sendAll())
      .catch(() => this.resendBy(Date.now() + RESEND_AFTER_MS))
      .finally(() => {
        this.#sending = null;
      });
  }

  async #sendAll(): Promise<void> {
    for (let batch = this.#read(); batch; batch = this.#read()) {
      await this.queue.send(batch.body, { contentType: "text" });
      this.sql.exec(`DELETE FROM webhook_outbox WHERE n <= ?`, batch.last);
      this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('webhook_sent', ?)`, String(batch.last));
    }
  }

  /** The oldest events that fit one queue message, as its text, and the last one's number. */
  #read(): { body: string; last: number } | null {
    const events: string[] = [];
    let bytes = 0;
    let first = 0;
    let last = 0;
    for (const row of this.sql.exec<{ n: number; event: string }>(`SELECT n, event FROM webhook_outbox ORDER BY n LIMIT 1000`)) {
      const size = utf8Length(row.event) + 1;
      if (events.length > 0 && bytes + size > MAX_QUEUE_MESSAGE_BYTES) break;
      if (events.length === 0) first = row.n;
      events.push(row.event);
      bytes += size;
      last = row.n;
    }
    if (events.length === 0) return null;
    const { room } = this.scope();
    return { body: `{"room":${JSON.stringify(room)},"n":${first},"events":[${events.join(",")}]}`, last };
  }
}
