// Who is in the room, as this client knows it: set from each welcome (so a reconnect replaces a
// stale view wholesale) and kept current by presence events. In a room above PRESENCE_LIMIT
// users the room tells only a count: the map is then empty and `count` is the room's.
import type { PresenceEntry, PresenceEventFrame, PresenceUserFrame, WelcomeFrame } from "../protocol";

export type PresenceUser = PresenceUserFrame["user"];

export class PresenceMap {
  readonly #users = new Map<string, PresenceUser>();
  /** The room's count while it tells only counts; undefined while the map is the whole room. */
  #count: number | undefined;

  get users(): ReadonlyMap<string, PresenceUser> {
    return this.#users;
  }

  get count(): number {
    return this.#count ?? this.#users.size;
  }

  /** True while the room is too big to list (the map is empty, `count` is the room's). */
  get truncated(): boolean {
    return this.#count !== undefined;
  }

  welcome(w: Pick<WelcomeFrame, "presence" | "presenceCount" | "presenceTruncated">): void {
    this.#reset(w.presence);
    if (w.presenceTruncated) this.#count = w.presenceCount ?? 0;
  }

  apply(frame: PresenceEventFrame): void {
    switch (frame.event) {
      case "count":
        // Whoever was listed may have left unannounced since: the list no longer holds.
        this.#users.clear();
        this.#count = frame.count;
        return;
      case "sync":
        this.#reset(frame.users);
        return;
      case "leave":
        this.#users.delete(frame.user.id);
        return;
      default:
        this.#users.set(frame.user.id, frame.user);
    }
  }

  clear(): void {
    this.#users.clear();
    this.#count = undefined;
  }

  #reset(entries: readonly PresenceEntry[]): void {
    this.clear();
    for (const { id, name, state } of entries) this.#users.set(id, { id, name, state });
  }
}
