// What every part of a room shares: its storage and config, the sockets this object holds and
// the one way frames reach them (delivery.ts), the users banned from it, its counters, and its
// one alarm. Each role (connections.ts, sequencer.ts, roster.ts, root.ts, shard.ts) is handed
// this and keeps only its own state.
import type { Config } from "../config";
import { failure, type Failure } from "../http";
import type { ServerFrame } from "../protocol";
import { Bans } from "./bans";
import { Counters, FLUSH_WITHIN_MS, type CounterName } from "./counters";
import { Delivery } from "./delivery";
import { Presence } from "./presence";
import type { Session } from "./session";

export class RoomContext {
  readonly sql: SqlStorage;
  /** Live sessions by socket: the in-memory index the hot path reads instead of getWebSockets(). */
  readonly sessions = new Map<WebSocket, Session>();
  readonly delivery: Delivery;
  /** Who is on this object's own sockets (a shard's part of a giant room). */
  readonly presence: Presence;
  /** Kicked users' bans: the room's own, or a shard's copy of its root's. */
  readonly bans: Bans;
  readonly counters: Counters;
  /** How many times the room's object has been started (counters.ts). */
  readonly starts: number;
  /** When the alarm is set for, as far as this instance knows (null: none). */
  #alarmAt: number | null = null;

  constructor(
    readonly state: DurableObjectState,
    readonly config: Config,
    batching: boolean,
  ) {
    // SQLite calls are synchronous, so start-up needs no blockConcurrencyWhile; every statement
    // is idempotent, so a constructor that throws half-way is simply run again on the next event.
    this.sql = state.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.delivery = new Delivery(this.sessions, batching);
    this.presence = new Presence(this.sql);
    this.bans = new Bans(this.sql);
    this.counters = new Counters(this.sql);
    this.starts = this.counters.countStart();
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- a throw inside resets the object (blockConcurrencyWhile's contract): nothing is left to handle it
    void state.blockConcurrencyWhile(async () => {
      this.#alarmAt = await state.storage.getAlarm();
    });
  }

  /** A value kept in the room's `meta` table, or undefined. */
  stored(key: string): string | undefined {
    return this.sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = ?`, key).toArray()[0]?.value;
  }

  store(key: string, value: string): void {
    this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)`, key, value);
  }

  /**
   * A random value made once, when the room's storage is new, and kept for its life: the epoch
   * (history from another epoch cannot resume) and the resume tokens' key.
   */
  made(key: "epoch" | "resume_key"): string {
    const kept = this.stored(key);
    if (kept !== undefined) return kept;
    const value = key === "epoch" ? randomId() : randomId() + randomId() + randomId() + randomId();
    this.store(key, value);
    return value;
  }

  /** The alarm is due by `at`: one alarm serves every job, because timers would keep the room awake. */
  scheduleAlarm(at: number): void {
    if (at === Infinity || (this.#alarmAt !== null && this.#alarmAt <= at)) return;
    this.#alarmAt = at;
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- a failed write breaks the output gate and resets the object; the caller is synchronous
    void this.state.storage.setAlarm(at);
  }

  /** The alarm is running: the next one is for whoever asks. */
  alarmFired(): void {
    this.#alarmAt = null;
  }

  count(name: CounterName, n = 1): void {
    if (n > 0 && this.counters.add(name, n)) this.scheduleAlarm(Date.now() + FLUSH_WITHIN_MS);
  }

  send(session: Session, frame: ServerFrame): void {
    this.delivery.send(session, JSON.stringify(frame));
  }

  /**
   * `banned` (403, with the seconds left as Retry-After) while `uid` is banned from this room;
   * null when not. Every path that acts as a user asks: upgrades, frames a shard sends on, and
   * each HTTP route, admin ones included (a banned admin's token still acts as that user;
   * another admin can lift the ban). A sharded room's root holds the bans its shards copy.
   */
  banned(uid: string): Failure | null {
    const until = this.bans.until(uid);
    if (until === undefined) return null;
    const left = Math.ceil((until - Date.now()) / 1000);
    return failure("banned", `user ${uid} is banned from this room for ${left} more seconds`, left);
  }
}

/** 16 hex digits (64 random bits). */
export function randomId(): string {
  const [a, b] = crypto.getRandomValues(new Uint32Array(2));
  return a!.toString(16).padStart(8, "0") + b!.toString(16).padStart(8, "0");
}

/** A close reason fits 123 UTF-8 bytes, or close() throws: a kick's reason is cut to fit. */
export function closeReason(reason: string | undefined): string {
  let text = reason ? `kicked: ${reason}` : "kicked";
  while (new TextEncoder().encode(text).byteLength > 123) text = [...text].slice(0, -1).join("");
  return text;
}
