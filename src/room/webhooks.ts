// The room's side of webhooks: an outbox. Each event is written to SQLite in the same
// synchronous run as the change it reports, so it commits with that change (a message and its
// event are stored together or not at all), and a row leaves the outbox only once the queue has
// accepted it. Delivery to the receiver, its retries and the dead-letter queue are the queue's
// and its consumer's (worker/webhooks.ts); the room retries only a send the queue refused, on
// its alarm. Sends run after the current event's work, one round trip at a time, so they never
// delay a socket and what piles up during one round trip leaves together in the next: packed
// into queue messages, those into several sendBatch calls at once, since one call carries at
// most 256 KB and a room can produce more than that per round trip.
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

/** One sendBatch call of a round: its queue messages, and the number of the last event they hold. */
interface QueueCall {
  messages: MessageSendRequest<string>[];
  last: number;
}

/** A queue message holds at most 128 KB; the rest is the envelope's. */
export const MAX_QUEUE_MESSAGE_BYTES = 120_000;
/** One sendBatch call: at most 100 messages and 256 KB in all (Cloudflare Queues' limits; 1 KB = 1000 bytes). */
const MAX_SEND_MESSAGES = 100;
const MAX_SEND_BYTES = 256_000;
/** A message's bytes besides its events: the queue's metadata ("up to ~100 bytes"), and the envelope (~110 at most) with room to spare. */
const MESSAGE_OVERHEAD_BYTES = 300;
/**
 * sendBatch calls in flight at once. A send takes tens of ms (Cloudflare quotes a ~60 ms median),
 * so one call per round trip would hold a room to 256 KB per round trip, ~4 MB/s; four carry
 * ~1 MB, and leave two of the six connections a Worker may have open for the room's others.
 */
export const SENDS_PER_ROUND = 4;
/** Outbox rows one round reads at most, about a round's worth of the smallest events (the cursor reads only as far as the round takes). */
const ROWS_PER_ROUND = 8_000;
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
    for (let round = this.#read(); round.length > 0; round = this.#read()) {
      const sent = await Promise.allSettled(round.map((call) => this.queue.sendBatch(call.messages)));
      // The outbox stays the room's events after `webhook_sent`: what the queue took up to a
      // refused call leaves it, and the calls after that one are sent again (at least once).
      const refused = sent.findIndex((s) => s.status === "rejected");
      const taken = round.slice(0, refused === -1 ? round.length : refused).at(-1);
      if (taken) {
        this.sql.exec(`DELETE FROM webhook_outbox WHERE n <= ?`, taken.last);
        this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('webhook_sent', ?)`, String(taken.last));
      }
      if (refused !== -1) throw (sent[refused] as PromiseRejectedResult).reason;
    }
  }

  /**
   * The oldest events, in order, as one round's sendBatch calls (none: the outbox is empty):
   * queue messages of at most MAX_QUEUE_MESSAGE_BYTES of events, calls within the queue's
   * limits, at most SENDS_PER_ROUND of them, each with the number of the last event it holds.
   */
  #read(): QueueCall[] {
    const head = `{"room":${JSON.stringify(this.scope().room)},"n":`;
    const calls: QueueCall[] = [];
    let call: QueueCall = { messages: [], last: 0 };
    let callBytes = 0; // of its finished messages, overhead included
    let events: string[] = []; // the message being filled
    let bytes = 0;
    let first = 0;
    const finishMessage = () => {
      if (events.length === 0) return;
      call.messages.push({ body: `${head}${first},"events":[${events.join(",")}]}`, contentType: "text" });
      callBytes += bytes + MESSAGE_OVERHEAD_BYTES;
      events = [];
      bytes = 0;
    };
    const finishCall = () => {
      finishMessage();
      if (call.messages.length > 0) calls.push(call);
      call = { messages: [], last: 0 };
      callBytes = 0;
    };
    for (const row of this.sql.exec<{ n: number; event: string }>(`SELECT n, event FROM webhook_outbox ORDER BY n LIMIT ${ROWS_PER_ROUND}`)) {
      const size = utf8Length(row.event) + 1;
      if (events.length > 0 && bytes + size > MAX_QUEUE_MESSAGE_BYTES) finishMessage();
      // Into the message being filled, or a new one: either way the call must stay within its limits.
      const tooMany = events.length === 0 && call.messages.length === MAX_SEND_MESSAGES;
      const tooBig = call.messages.length + events.length > 0 && callBytes + bytes + size + MESSAGE_OVERHEAD_BYTES > MAX_SEND_BYTES;
      if (tooMany || tooBig) {
        finishCall();
        if (calls.length === SENDS_PER_ROUND) break;
      }
      if (events.length === 0) first = row.n;
      events.push(row.event);
      bytes += size;
      call.last = row.n;
    }
    finishCall();
    return calls;
  }
}
