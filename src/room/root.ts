// The root of a giant room (shards.ts has the why): the room's own object, which sequences like
// any room (sequencer.ts) but owns no sockets. Here is what only a root does: stream every event
// to every shard in order, keep the room-wide membership its shards report, reach every shard
// for a kick or stats, and resync shards that may have lost calls.
import type { Ban } from "./bans";
import type { RoomContext } from "./context";
import { Fanout, REPAIR_AFTER_MS, ShardedMembers, type MemberCount, type ShardTarget, type StreamItem } from "./shards";
import type { PresenceEntry, UserRef } from "../protocol";

export class Root {
  readonly members: ShardedMembers;
  readonly #fanout: Fanout;

  constructor(
    private readonly room: RoomContext,
    readonly count: number,
    shard: (index: number) => DurableObjectStub<ShardTarget>,
  ) {
    // Counts from shards beyond today's count (SHARDED_ROOMS lowered in a deploy) would be ghosts:
    // no socket can reach those shards again, so none would ever report them gone.
    this.members = new ShardedMembers(room.sql, count);
    this.#fanout = new Fanout(count, shard, () => room.scheduleAlarm(Date.now() + REPAIR_AFTER_MS));
  }

  /** An event to every shard (`only`: to these), after the ones before it. */
  stream(item: StreamItem, only?: Iterable<number>): void {
    this.#fanout.push(item, only);
  }

  /** A user's entry and its connections per shard, as a presence event carries them. */
  entryOf(uid: string): Pick<StreamItem, "entry" | "shards"> {
    return { entry: this.members.entry(uid)!, shards: this.members.perShard(uid) };
  }

  perShard(users: PresenceEntry[]): Record<string, [number, number][]> {
    return Object.fromEntries(users.map((u) => [u.id, this.members.perShard(u.id)]));
  }

  /**
   * This instance just started, and may have lost calls it had queued or in flight, and may
   * still count sockets that died with a shard: every shard repairs up to `seq`, re-reads
   * moderation and reports its whole membership again.
   */
  woke(seq: number): void {
    this.#fanout.resync(seq);
  }

  /** The alarm: shards whose call failed are resynced. */
  alarm(seq: number): void {
    if (this.#fanout.failed.size) this.#fanout.flush(seq);
  }

  /**
   * Moderation must reach every shard even if this instance dies before its stream call goes
   * out: the alarm set here wakes a new one, which resyncs them all (each re-reads bans and
   * deletes from this room's storage).
   */
  #moderated(): void {
    this.room.scheduleAlarm(Date.now() + REPAIR_AFTER_MS);
  }

  /** A message left history: its delete to every shard, after the message. */
  deleted(text: string, seq: number): void {
    this.stream({ text, deleted: seq });
    this.#moderated();
  }

  /**
   * Closes `uid`'s sockets on every shard, not only those a report placed the user on: one may
   * be admitting a socket of theirs right now. Each sets the ban first. Returns how many closed.
   */
  async kick(uid: string, reason: string, ban: Ban | undefined): Promise<number> {
    if (ban) this.#moderated();
    let closed = 0;
    for (const n of await this.#fanout.everyShard((shard) => shard.shardKick(uid, reason, ban))) closed += n;
    return closed;
  }

  /** A direct message for `to`, on the shards its sockets are on; false when the user is not in the room. */
  direct(to: string, text: string): boolean {
    const shards = this.members.shardsOf(to);
    if (shards.length === 0) return false;
    this.stream({ text, to }, shards);
    return true;
  }

  /** A shard's member counts (`replace`: its whole membership): who joined and left the room, and whose count changed. */
  report(shard: number, counts: MemberCount[], replace: boolean): { joined: string[]; left: UserRef[]; changed: string[] } {
    const { joined, left, changed } = this.members.report(shard, counts, replace);
    return { joined, left: left.map((uid) => ({ id: uid, name: counts.find((c) => c.uid === uid)?.name ?? uid })), changed };
  }

  /** Each shard's connections and deliveries, in shard order. */
  stats(): Promise<{ connections: number; delivered: number }[]> {
    return Promise.all(Array.from({ length: this.count }, (_, i) => this.#fanout.stubOf(i).shardStats()));
  }
}
