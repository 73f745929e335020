// Who is in the room, as the room tells it: `join` for a user's first connection, `update` for a
// state change, `leave` for the last connection gone, or above PRESENCE_LIMIT a count at most
// once a second (crowd.ts). A plain room tells its own sockets (held while it churns,
// announcements.ts); the root of a giant room tells its shards, from the room-wide membership
// its shards report (root.ts). The webhooks' join and leave come from the same places.
import type { PresenceEntry, UserRef } from "../protocol";
import type { RoomContext } from "./context";
import { Crowd } from "./crowd";
import type { Root } from "./root";
import type { Session } from "./session";
import type { Webhooks } from "./webhooks";

export class Roster {
  readonly crowd: Crowd;

  constructor(
    private readonly room: RoomContext,
    private readonly root: () => Root | null,
    private readonly webhooks: () => Webhooks | null,
  ) {
    this.crowd = new Crowd(room.sql, room.config.PRESENCE_LIMIT);
  }

  /** Users in the room: its own, or a sharded root's room-wide count. */
  get users(): number {
    return this.root()?.members.size ?? this.room.presence.size;
  }

  /** At most `limit` users, in the order they came. */
  list(limit: number): PresenceEntry[] {
    return (this.root()?.members ?? this.room.presence).list(limit);
  }

  /**
   * A user's first connection (`joiner`, whose welcome listed it already), or a state change;
   * in a sharded root also a change of a user's connection count (`conns`), which only updates
   * the shards' mirrors.
   */
  announce(event: "join" | "update" | "conns", uid: string, joiner?: Session): void {
    const root = this.root();
    const entry = root ? root.members.entry(uid) : this.room.presence.user(uid);
    if (!entry) return;
    if (event === "join") this.webhooks()?.joined({ id: entry.id, name: entry.name });
    if (event === "conns") {
      if (!this.crowd.absorbs(this.users)) root!.stream({ text: "", uid, event, ...root!.entryOf(uid) });
      return;
    }
    if (this.#counted()) return;
    const text = JSON.stringify({ type: "presence", event, user: { id: entry.id, name: entry.name, state: entry.state } });
    if (root) return root.stream({ text, uid, event, ...root.entryOf(uid) });
    this.#announceText(text, joiner?.order);
  }

  /** A user's last connection to the room is gone: the one place a leave is decided. */
  left(user: UserRef): void {
    this.webhooks()?.left(user);
    if (this.#counted()) return;
    const text = JSON.stringify({ type: "presence", event: "leave", user: { ...user, state: {} } });
    const root = this.root();
    if (root) return root.stream({ text, uid: user.id, event: "leave" });
    this.#announceText(text);
  }

  /**
   * True when the room is too big for per-user presence frames (crowd.ts): the change is told
   * as a count instead, at most once a second, on the alarm when it is not yet due.
   */
  #counted(): boolean {
    if (!this.crowd.absorbs(this.users)) return false;
    this.countSoon(Date.now());
    return true;
  }

  /** The count tick: now when due, else on the alarm (which calls this again). */
  countSoon(now: number): void {
    if (now < this.crowd.due) {
      this.crowd.pending = true;
      return this.room.scheduleAlarm(this.crowd.due);
    }
    const users = this.users;
    const frame = this.crowd.tick(users, now);
    const root = this.root();
    if (frame === "count") {
      const text = `{"type":"presence","event":"count","count":${users}}`;
      this.room.delivery.broadcast(text);
      root?.stream({ text, event: "count", count: users });
    }
    if (frame === "sync") {
      const list = root ? root.members.list() : null;
      const text = `{"type":"presence","event":"sync","users":${list ? JSON.stringify(list) : this.room.presence.listJson()}}`;
      this.room.delivery.broadcast(text);
      root?.stream({ text, event: "sync", users: list ?? [], shardsOf: root.perShard(list ?? []) });
    }
  }

  #announceText(text: string, before?: number): void {
    const due = this.room.delivery.announce(text, before);
    if (due !== null) this.room.scheduleAlarm(due);
  }
}
