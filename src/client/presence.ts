// Who is in the room, as this client knows it: set from each welcome (so a reconnect replaces a
// stale view wholesale) and kept current by presence events.
import type { PresenceEntry, PresenceEventFrame } from "../protocol";

export type PresenceUser = PresenceEventFrame["user"];

export class PresenceMap {
  readonly #users = new Map<string, PresenceUser>();

  get users(): ReadonlyMap<string, PresenceUser> {
    return this.#users;
  }

  reset(entries: readonly PresenceEntry[]): void {
    this.#users.clear();
    for (const { id, name, state } of entries) this.#users.set(id, { id, name, state });
  }

  apply(frame: PresenceEventFrame): void {
    if (frame.event === "leave") this.#users.delete(frame.user.id);
    else this.#users.set(frame.user.id, frame.user);
  }

  clear(): void {
    this.#users.clear();
  }
}
