// Who is in the room: one entry per user with their live connections. Membership is derived
// from the sockets (rebuilt from attachments after hibernation), never from memory alone; the
// per-user state lives in SQLite because it must outlive a hibernation too.
import type { PresenceEntry, UserRef } from "../protocol";
import type { Session } from "./session";

type State = Record<string, unknown>;

interface Member {
  name: string;
  state: State;
  /** whether a row holds its state: only then does its last leave delete one (a write, a commit) */
  stored: boolean;
  sessions: Set<Session>;
  /** its entry as JSON, kept until it changes: every welcome carries the whole list */
  json?: string;
}

export class Presence {
  readonly #members = new Map<string, Member>();
  /** listJson()'s answer until a member changes */
  #listJson: string | undefined;

  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS presence (uid TEXT PRIMARY KEY, state TEXT NOT NULL)`);
  }

  /**
   * Adds a connection; true when it is the user's first (a `join` to announce). A user who
   * was not a member has no stored state: rows are deleted with a user's last connection, and
   * rebuild() deletes those whose sockets died with a restart.
   */
  add(session: Session, stateOf = (_uid: string): State | undefined => undefined): boolean {
    const { id, name } = session.user;
    let member = this.#members.get(id);
    const first = !member;
    if (!member) {
      const state = stateOf(id);
      member = { name, state: state ?? {}, stored: state !== undefined, sessions: new Set() };
      this.#members.set(id, member);
    }
    member.name = name;
    member.sessions.add(session);
    if (first && this.#listJson !== undefined) {
      // A new member is the list's last entry: extend the text rather than rebuild it (V8 keeps
      // the concatenation as a rope, so a join storm does not copy the list once per join).
      member.json = JSON.stringify(this.#entry(id, member));
      this.#listJson = `${this.#listJson.slice(0, -1)}${this.#members.size > 1 ? "," : ""}${member.json}]`;
    } else {
      this.#changed(member);
    }
    return first;
  }

  /** Removes a connection; true when it was the user's last (a `leave` to announce). */
  remove(session: Session): boolean {
    const member = this.#members.get(session.user.id);
    if (!member || !member.sessions.delete(session)) return false;
    this.#changed(member);
    if (member.sessions.size > 0) return false;
    this.#members.delete(session.user.id);
    if (member.stored) this.sql.exec(`DELETE FROM presence WHERE uid = ?`, session.user.id);
    return true;
  }

  has(uid: string): boolean {
    return this.#members.has(uid);
  }

  uids(): IterableIterator<string> {
    return this.#members.keys();
  }

  sessionsOf(uid: string): Iterable<Session> {
    return this.#members.get(uid)?.sessions ?? [];
  }

  /** How many connections `uid` has here. */
  connections(uid: string): number {
    return this.#members.get(uid)?.sessions.size ?? 0;
  }

  setState(uid: string, state: State): void {
    const member = this.#members.get(uid);
    if (!member) return;
    member.state = state;
    member.stored = true;
    this.#changed(member);
    this.sql.exec(
      `INSERT INTO presence (uid, state) VALUES (?, ?) ON CONFLICT(uid) DO UPDATE SET state = excluded.state`,
      uid,
      JSON.stringify(state),
    );
  }

  user(uid: string): (UserRef & { state: State }) | undefined {
    const m = this.#members.get(uid);
    return m && { id: uid, name: m.name, state: m.state };
  }

  get size(): number {
    return this.#members.size;
  }

  /** The first `max` members (all by default), in the order they came. */
  list(max = Infinity): PresenceEntry[] {
    const out: PresenceEntry[] = [];
    for (const [id, m] of this.#members) {
      if (out.length >= max) break;
      out.push(this.#entry(id, m));
    }
    return out;
  }

  /**
   * list() as JSON text. A join storm sends a welcome per join with the whole list in it, so
   * each entry is serialized once per change, not once per welcome.
   */
  listJson(): string {
    if (this.#listJson === undefined) {
      const entries: string[] = [];
      for (const [id, m] of this.#members) entries.push((m.json ??= JSON.stringify(this.#entry(id, m))));
      this.#listJson = `[${entries.join(",")}]`;
    }
    return this.#listJson;
  }

  #entry(id: string, m: Member): PresenceEntry {
    return { id, name: m.name, state: m.state, connections: m.sessions.size };
  }

  #changed(member: Member): void {
    member.json = undefined;
    this.#listJson = undefined;
  }

  /**
   * After a wake-up: loads every stored state in one query for the members just rebuilt, and
   * drops the states of users with no socket left (their sockets died with a restart, which
   * delivers no close event), so a restarted room shows no ghosts.
   */
  rebuild(sessions: Iterable<Session>): void {
    const stored = new Map<string, State>();
    for (const row of this.sql.exec<{ uid: string; state: string }>(`SELECT uid, state FROM presence`)) {
      stored.set(row.uid, JSON.parse(row.state) as State);
    }
    for (const s of sessions) this.add(s, (uid) => stored.get(uid));
    for (const uid of stored.keys()) {
      if (!this.#members.has(uid)) this.sql.exec(`DELETE FROM presence WHERE uid = ?`, uid);
    }
  }
}
