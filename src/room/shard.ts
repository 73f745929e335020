// A shard of a giant room (shards.ts has the why): an object that owns sockets but no order.
// It admits joins from its view of the root (head, tail of recent messages, presence mirror),
// sends each acting frame on to the root, takes the root's stream in order, repairs what a lost
// call would have carried, and reports its members' counts to the root.
import { isFailure, type Failure } from "../http";
import { CloseCode, HISTORY_PAGE_DEFAULT, type UserRef } from "../protocol";
import type { Ban } from "./bans";
import type { Connections, Frames, Join, Membership } from "./connections";
import { closeReason, type RoomContext } from "./context";
import { replayFrame } from "./history";
import { ResumeTokens } from "./resume-token";
import { Serial } from "./serial";
import { Session } from "./session";
import {
  Mirror,
  REPAIR_AFTER_MS,
  REPAIR_PAGE,
  Tail,
  TAIL_SIZE,
  type HistoryFrames,
  type MemberCount,
  type RootTarget,
  type ShardRole,
  type Snapshot,
  type StreamItem,
} from "./shards";

/** What a shard holds of its root: made by its first snapshot, once per instance. */
interface View {
  /** One stub, so publishes reach the root in the order they were sent; replaced after it threw. */
  root: DurableObjectStub<RootTarget>;
  epoch: string;
  tokens: ResumeTokens;
  /** the last seq delivered to this shard's sockets (stored: hibernation must not lose it) */
  head: number;
  tail: Tail;
  mirror: Mirror;
  /** stream calls, repairs and kicks, one after another (a gap is repaired before anything newer goes out) */
  intake: Serial;
  /** the highest seq the root is known to have reached: what a retry repairs up to */
  want: number;
  /** a step or a report failed: the next alarm resyncs from the root */
  retry: boolean;
  /** users (id → name) whose count the root is told next, together once this turn's events have run */
  reports: Map<string, string>;
  /** the next report is the whole membership, replacing what the root had for this shard */
  replace: boolean;
}

export class Shard implements Frames, Membership {
  #view: Promise<View> | null = null;
  /** The view once made (a join awaits it before it welcomes anyone). */
  #ready: View | undefined;
  #reporting = false;

  constructor(
    readonly role: ShardRole,
    private readonly room: RoomContext,
    private readonly connections: Connections,
    private readonly rootOf: () => DurableObjectStub<RootTarget>,
  ) {}

  /** A shard that restarted lost the sockets its root counted, without close events: it reports its whole membership again. */
  started(): void {
    void this.#viewNow()
      .then((view) => this.#reportAll(view))
      .catch(reportLost);
  }

  /** The view, made once per instance from a snapshot (retried after a failure). */
  #viewNow(): Promise<View> {
    this.#view ??= this.#snapshot().catch((err: unknown) => {
      this.#view = null;
      throw err;
    });
    return this.#view;
  }

  async #snapshot(): Promise<View> {
    const root = this.rootOf();
    // (RPC types turn `unknown` presence state into `never`; the value is the Snapshot sent.)
    const snap = await (root.snapshot(this.role.room) as Promise<Snapshot>);
    // The head the sockets here last got survives hibernation; a new shard, or one whose root
    // lost its storage (a new epoch), starts at the root's seq.
    const stored = this.room.stored("shard_head");
    const kept = stored ? (JSON.parse(stored) as { epoch: string; head: number }) : undefined;
    const head = kept && kept.epoch === snap.epoch ? kept.head : snap.seq;
    const mirror = new Mirror(this.role.index, (uid) => this.room.presence.connections(uid));
    mirror.reset(snap, Session.nextOrder);
    this.room.bans.replace(snap.bans);
    const view: View = {
      root,
      epoch: snap.epoch,
      tokens: new ResumeTokens(snap.resumeKey),
      head,
      tail: new Tail(),
      mirror,
      intake: new Serial(() => this.#retrySoon(view)),
      want: snap.seq,
      retry: false,
      reports: new Map(),
      replace: false,
    };
    this.#storeHead(view);
    this.#ready = view;
    // Sockets that outlived the last instance (hibernated) and whose user was banned meanwhile.
    this.#enforce(snap.bans);
    if (head < snap.seq) view.intake.run(() => this.#repair(view, snap.seq)).catch(stepFailed);
    return view;
  }

  #storeHead(view: View): void {
    this.room.store("shard_head", JSON.stringify({ epoch: view.epoch, head: view.head }));
  }

  /** A call to the root; a stub that threw is replaced (it may stay broken), and the error is the caller's. */
  async #toRoot<T>(view: View, call: (root: DurableObjectStub<RootTarget>) => Promise<T>): Promise<T> {
    try {
      return await call(view.root);
    } catch (err) {
      view.root = this.rootOf();
      throw err;
    }
  }

  /** One call to the root, through this shard's stub (replaced if it threw). */
  async ask<T>(call: (root: DurableObjectStub<RootTarget>) => Promise<T>): Promise<T> {
    const view = await this.#viewNow();
    return this.#toRoot(view, call);
  }

  // ---- join ----------------------------------------------------------------------------

  /**
   * A join: as in a plain room, but from the shard's view of the root. Only what the tail lacks
   * is asked of the root, so a whole room reconnecting at once does not become a root call per client.
   */
  async join(join: Join): Promise<Response> {
    const view = await this.#viewNow();
    // A client that saw more on another shard than this one has delivered yet: catch up first.
    if (join.since !== undefined && join.epoch === view.epoch && join.since > view.head) {
      const since = join.since;
      await view.intake.run(() => this.#repair(view, since));
    }
    const scope = { room: join.room, epoch: view.epoch, user: join.user.id };
    const proven = await view.tokens.verify(join.resume, scope);
    const replayFrom = join.caps.includes("history") ? 0 : (proven ?? view.head);
    const since = join.since;
    let recovered = since === undefined ? undefined : join.epoch === view.epoch && since >= replayFrom && since <= view.head;
    // What the tail cannot answer comes from the root, up to the head at the time of asking.
    let fetched: { frames: string[]; upTo: number } | null = null;
    if (recovered && view.tail.after(since!, view.head) === undefined) {
      const upTo = view.head;
      const { first, frames } = await this.#toRoot(view, (root) => root.range(since! + 1, upTo));
      if (first !== since! + 1)
        recovered = false; // some of it is past the root's retention
      else fetched = { frames: frames.map((f, i) => replayFrame(f, first + i)), upTo };
    }
    const { token: resume } = await view.tokens.forWelcome(scope, join.resume, proven, () => view.head);
    // The rest (what reached the shard while this join awaited) is in the tail by now.
    const rest = recovered ? view.tail.after(fetched ? fetched.upTo : since!, view.head) : [];
    if (rest === undefined) recovered = false;
    const missed = recovered ? [fetched?.frames ?? [], rest ?? []] : [];
    return this.connections.admit(join, { epoch: view.epoch, seq: view.head, resume, recovered, missed }, (session) => {
      view.mirror.ensure(session.user, session.order);
      return { size: view.mirror.size, counting: view.mirror.counting !== null, listJson: () => view.mirror.listJson() };
    });
  }

  /** A socket opened here: the root is told this user's count. */
  joined(session: Session): void {
    this.#report(session.user);
  }

  /** A socket closed here: the root is told this user's count. */
  left(user: UserRef): void {
    this.#ready?.mirror.changed();
    this.#report(user);
  }

  // ---- frames: each sent on to the root --------------------------------------------------

  publish(session: Session, frame: { data: unknown; id?: string }): void {
    // Sequenced by the root; the echo comes back in its stream.
    this.#viaRoot(session, frame.id, (root) => root.shardPublish(this.role.room, session.user, frame.data, frame.id));
  }

  direct(session: Session, frame: { to: string; data: unknown; id?: string }): void {
    const text = directText(session.user, frame.data, frame.id);
    this.#viaRoot<boolean>(
      session,
      frame.id,
      (root) => root.shardDirect(this.role.room, session.user.id, frame.to, text),
      (sent) => {
        if (!sent) return this.connections.reject(session, "not_found", `user ${frame.to} is not in the room`, frame.id);
        if (frame.id !== undefined) this.room.send(session, { type: "ack", id: frame.id });
      },
    );
  }

  presence(session: Session, frame: { state: Record<string, unknown>; id?: string }): void {
    this.#viaRoot(session, frame.id, (root) => root.shardState(this.role.room, session.user.id, frame.state));
  }

  history(session: Session, frame: { before?: number; limit?: number; id?: string }): void {
    const limit = frame.limit ?? HISTORY_PAGE_DEFAULT;
    this.#viaRoot<HistoryFrames>(
      session,
      frame.id,
      (root) => root.historyFrames(session.user.id, frame.before, limit),
      (page) => this.room.delivery.send(session, historyText(frame.id, page)),
    );
  }

  /**
   * Sends a frame's work to the root and hands its answer to `then`. A failed call is answered as
   * the frame's `internal` error; any other refusal (the root's hook: `rejected`, or `internal`
   * for its bug; a full wait queue: `rate_limited`) as the frame's error with its own code. A
   * root that refuses the user as banned means this shard missed the ban: the socket is closed
   * as a kick would have, and the shard resyncs its bans.
   */
  #viaRoot<T>(
    session: Session,
    id: string | undefined,
    call: (root: DurableObjectStub<RootTarget>) => Promise<T | Failure>,
    then?: (answer: T) => void,
  ): void {
    void this.#viewNow()
      .then(async (view) => {
        const answer = await this.#toRoot(view, call);
        if (!isFailure(answer)) return then?.(answer);
        if (answer.code !== "banned") return this.connections.reject(session, answer.code, answer.message, id);
        this.connections.close(session, CloseCode.forbidden, closeReason(undefined));
        this.#retrySoon(view);
      })
      .catch(() =>
        this.room.send(session, {
          type: "error",
          code: "internal",
          message: "the room is unavailable; try again",
          ...(id === undefined ? {} : { id }),
        }),
      );
  }

  // ---- the root's stream -----------------------------------------------------------------

  /** Messages, deletes and presence in the root's order, delivered with this shard's batching. */
  async stream(items: StreamItem[], rootSeq: number | null): Promise<void> {
    const view = await this.#viewNow();
    return view.intake.run(() => this.#take(view, items, rootSeq));
  }

  /**
   * One stream call, item by item in the root's order: consecutive messages go out together
   * (#deliverMessages); anything else goes after the messages before it, so a delete never
   * overtakes its own message on the sockets or in the tail.
   */
  #take(view: View, items: StreamItem[], rootSeq: number | null): Promise<void> | void {
    const before = view.head;
    let run: string[] = [];
    const sendRun = () => {
      if (run.length > 0) this.#deliverMessages(view, run);
      run = [];
    };
    for (const [k, item] of items.entries()) {
      if (item.seq === undefined) {
        sendRun();
        if (item.deleted !== undefined && item.deleted > view.head) {
          // Its message never reached this shard (a lost call): the repair brings the delete in its place.
          return this.#repair(view, item.deleted).then(() => this.#take(view, items.slice(k + 1), rootSeq));
        }
        if (item.deleted !== undefined) this.#deleted(view, item.deleted, item.text);
        else this.#deliverEvent(view, item);
        continue;
      }
      view.want = Math.max(view.want, item.seq);
      const next = view.head + run.length + 1;
      if (item.seq < next) continue; // already delivered (a repair fetched it)
      if (item.seq > next) {
        // A gap: the root restarted, or a call failed. Fetch it before anything newer goes out.
        sendRun();
        return this.#repair(view, item.seq - 1).then(() => this.#take(view, items.slice(k), rootSeq));
      }
      run.push(item.text);
    }
    sendRun();
    if (view.head !== before) this.#storeHead(view);
    if (rootSeq !== null) return this.#resync(view, rootSeq);
  }

  /**
   * The messages after the shard's head, in order, sent to each socket together
   * (Delivery.broadcastAll). A TOMBSTONE (deleted before this shard got it) goes out as its
   * delete, as in a replay, so every client's position passes it.
   */
  #deliverMessages(view: View, texts: string[]): void {
    const frames = texts.map((text) => {
      view.tail.push(++view.head, text);
      return replayFrame(text, view.head);
    });
    this.room.count("delivered", this.room.delivery.broadcastAll(frames));
  }

  /** Message `seq` was deleted: out of the tail, and its delete to every socket here. */
  #deleted(view: View, seq: number, text = JSON.stringify({ type: "delete", seq })): void {
    view.tail.forget(seq);
    this.room.count("delivered", this.room.delivery.broadcast(text));
  }

  #deliverEvent(view: View, item: StreamItem): void {
    if (item.to !== undefined) {
      const targets = [...this.room.presence.sessionsOf(item.to)];
      for (const target of targets) this.room.delivery.send(target, item.text);
      this.room.count("delivered", targets.length);
      return;
    }
    const before = view.mirror.apply(item, Session.nextOrder);
    // A count change updates the mirror only; a join goes to sessions whose welcome did not list the user.
    if (item.event === "conns") return;
    const due = this.room.delivery.announce(item.text, before);
    if (due !== null) this.room.scheduleAlarm(due);
  }

  /** Fetches and delivers what this shard missed, up to `upTo`, a page at a time. */
  async #repair(view: View, upTo: number): Promise<void> {
    while (view.head < upTo) {
      const to = Math.min(upTo, view.head + REPAIR_PAGE);
      const { first, frames } = await this.#toRoot(view, (root) => root.range(view.head + 1, to));
      // Messages past the root's retention are gone for good: skip exactly those. A client that
      // resumes from before them is told recovered:false.
      if (first > view.head + 1) view.head = first - 1;
      if (frames.length === 0) {
        if (first <= to) break; // the root has nothing further (asked past its seq)
        continue;
      }
      this.#deliverMessages(view, frames.slice(0, to - view.head));
    }
    this.#storeHead(view);
  }

  /**
   * Calls to this shard may have been lost (the root restarted, or a call failed): what they
   * carried is recovered from the root's storage. Messages up to `rootSeq` by the gap repair;
   * bans, deletes and the presence list from a fresh snapshot; the root's count of this shard's
   * members by reporting them all again.
   */
  async #resync(view: View, rootSeq: number): Promise<void> {
    view.want = Math.max(view.want, rootSeq);
    await this.#repair(view, view.want);
    // Deletes of anything a socket here may still show: the tail's reach back from the head.
    const from = Math.max(1, view.head - TAIL_SIZE + 1);
    const snap = await this.#toRoot(view, (root) => root.snapshot(this.role.room, from) as Promise<Snapshot>);
    this.room.bans.replace(snap.bans);
    this.#enforce(snap.bans);
    for (const seq of snap.deleted) if (seq <= view.head && view.tail.forget(seq)) this.#deleted(view, seq);
    // Presence events may have been lost too: the list is replaced, here and on every client
    // (when it changed: a root that merely woke up sends nobody anything).
    const list = () => (view.mirror.counting === null ? `"sync","users":${view.mirror.listJson()}` : `"count","count":${view.mirror.counting}`);
    const before = list();
    view.mirror.reset(snap, Session.nextOrder);
    if (list() !== before) this.room.delivery.broadcast(`{"type":"presence","event":${list()}}`);
    this.#reportAll(view);
  }

  /** Closes this shard's sockets of banned users (4403), wherever the ban came from. */
  #enforce(bans: Ban[]): void {
    for (const ban of bans) if (this.room.bans.until(ban.uid) !== undefined) this.connections.kick(ban.uid, closeReason(undefined));
  }

  /** The root's kick, after the stream items sent before it: the ban (if any) first, so a join under way is refused at admission. */
  async kick(uid: string, reason: string, ban?: Ban): Promise<number> {
    const view = await this.#viewNow();
    return view.intake.run(() => {
      if (ban) this.room.bans.set(ban);
      return this.connections.kick(uid, reason);
    });
  }

  /** The alarm: a failed step or report resyncs from the root. */
  alarm(): void {
    const view = this.#ready;
    if (!view?.retry) return;
    view.retry = false;
    view.intake.run(() => this.#resync(view, view.want)).catch(stepFailed);
  }

  #retrySoon(view: View): void {
    view.retry = true;
    this.room.scheduleAlarm(Date.now() + REPAIR_AFTER_MS);
  }

  // ---- reports: this shard's members, to the root ------------------------------------------

  /** Queues `user`'s count here for the root; reports go together once this turn's events have run. */
  #report(user: UserRef): void {
    void this.#viewNow()
      .then((view) => {
        view.reports.set(user.id, user.name);
        this.#sendReports(view);
      })
      .catch(reportLost);
  }

  /** This shard's whole membership, replacing what the root had (after a restart or a resync). */
  #reportAll(view: View): void {
    view.replace = true;
    this.#sendReports(view);
  }

  /**
   * Counts are read when the report goes, not when it was asked for: a user whose sockets
   * came and went within the turn is reported once, as they are. A report that fails is not
   * lost: the next one, on the alarm's resync, is the whole membership.
   */
  #sendReports(view: View): void {
    if (this.#reporting) return;
    this.#reporting = true;
    setTimeout(() => {
      this.#reporting = false;
      const replace = view.replace;
      const names = view.reports;
      const { presence } = this.room;
      if (replace) for (const uid of presence.uids()) names.set(uid, presence.user(uid)!.name);
      view.reports = new Map();
      view.replace = false;
      if (names.size === 0 && !replace) return;
      const counts: MemberCount[] = [...names].map(([uid, name]) => ({ uid, name, conns: presence.connections(uid) }));
      this.#toRoot(view, (root) => root.shardMembers(this.role.room, this.role.index, counts, replace)).catch(() => this.#retrySoon(view));
    }, 0);
  }
}

/** A direct message frame, serialized once for every socket of its target. */
export function directText(from: UserRef, data: unknown, id: string | undefined): string {
  return JSON.stringify({ type: "direct", from, data, ...(id === undefined ? {} : { id }) });
}

/** A `history` frame's answer, its stored frames spliced in as they are. */
export function historyText(id: string | undefined, { frames, more }: HistoryFrames): string {
  const idField = id === undefined ? "" : `"id":${JSON.stringify(id)},`;
  return `{"type":"history",${idField}"messages":[${frames.join(",")}],"more":${more}}`;
}

/** A shard whose first snapshot failed cannot report yet: its next join or the root's resync makes one. */
function reportLost(): void {}

/** A failed step of a shard's intake has already scheduled its retry (Serial's onFailure). */
function stepFailed(): void {}
