// The sockets this object holds, from admission to close: the welcome and its replay, each
// frame's rate limit, parse and capability check, refresh, rejections, and the idle and expiry
// sweep. What a frame does is not decided here: a plain room or a root acts on it itself
// (room.ts), a shard sends it on to its root (shard.ts), both behind the `Frames` interface.
import { capabilitiesFor, verifyToken } from "../auth";
import { errorResponse, isFailure } from "../http";
import {
  CloseCode,
  parseClientFrame,
  type Capability,
  type ClientFrame,
  type ConnectionLimits,
  type ErrorCode,
  type UserRef,
  type WelcomeFrame,
} from "../protocol";
import { randomId, type RoomContext } from "./context";
import { capsToBits, Session, type Attachment, type Limits } from "./session";

/** What the Worker tells the room about a verified upgrade (an internal header, never the client's). */
export interface Join {
  room: string;
  user: UserRef;
  caps: Capability[];
  /** the token's expiry, unix seconds */
  exp: number;
  since?: number;
  epoch?: string;
  /** the resume token of the client's last welcome (resume-token.ts) */
  resume?: string;
  /** set when the room is sharded (shards.ts): which shard object this is */
  shard?: { index: number; count: number };
}

/** Where a welcome stands in the room's stream, and what the joiner missed. */
export interface Welcome {
  epoch: string;
  seq: number;
  resume: string;
  recovered?: boolean;
  missed: Iterable<string[]>;
}

/** The presence list a welcome carries (the joiner on it): the room's own, or a shard's mirror of its root's. */
export interface WelcomeList {
  readonly size: number;
  /** true above PRESENCE_LIMIT: the welcome carries a count instead (crowd.ts) */
  readonly counting: boolean;
  listJson(): string;
}

type FrameOf<T extends ClientFrame["type"]> = Extract<ClientFrame, { type: T }>;

/** What the frames that act on the room do, once the connection may send them. */
export interface Frames {
  publish(session: Session, frame: FrameOf<"publish">): void;
  direct(session: Session, frame: FrameOf<"direct">): void;
  presence(session: Session, frame: FrameOf<"presence">): void;
  history(session: Session, frame: FrameOf<"history">): void;
}

/** The room's answers to a socket opening and closing here. */
export interface Membership {
  /** A socket was admitted; `first`: the user's first here. */
  joined(session: Session, first: boolean): void;
  /** A socket closed; `last`: the user has none left here. */
  left(user: UserRef, last: boolean): void;
}

export class Connections {
  readonly #limits: Limits;
  /** What every welcome advertises: the limits this room enforces on a connection. */
  readonly #welcomeLimits: ConnectionLimits;
  /** Sockets this instance closed itself and announced: their late close events announce nothing. */
  readonly #closedByRoom = new WeakSet<WebSocket>();
  /**
   * Users whose leave this instance announced for a socket that closed while the room slept
   * (see drop): their other sockets that closed meanwhile must not announce it again.
   */
  readonly #leftWhileAsleep = new Set<string>();
  /** When the idle sweep is next due; -Infinity while unknown (a new instance), so the next alarm sweeps. */
  #sweepAt = -Infinity;

  constructor(
    private readonly room: RoomContext,
    private readonly members: Membership,
  ) {
    const { config } = room;
    this.#limits = {
      ratePerSec: config.RATE_LIMIT_PER_SEC,
      burst: config.RATE_LIMIT_BURST,
      touchEveryMs: Math.min(10_000, (config.IDLE_TIMEOUT_SEC * 1000) / 10),
    };
    this.#welcomeLimits = {
      maxMessageBytes: config.MAX_MESSAGE_BYTES,
      ratePerSec: config.RATE_LIMIT_PER_SEC,
      burst: config.RATE_LIMIT_BURST,
      idleTimeoutSec: config.IDLE_TIMEOUT_SEC,
    };
  }

  /**
   * Hibernation is handled here once: the session index and presence are rebuilt from the
   * sockets' attachments. getWebSockets() leaves out sockets whose close is already under way
   * (and can return some that are closing): their close events arrive later (see drop).
   */
  rebuild(): void {
    for (const ws of this.room.state.getWebSockets()) {
      if (ws.readyState !== WebSocket.READY_STATE_OPEN) continue;
      const attachment = Session.readAttachment(ws);
      if (!attachment || attachment.x) {
        closeQuietly(ws, CloseCode.serverError, "unreadable session");
        continue;
      }
      this.room.sessions.set(ws, new Session(ws, attachment, this.#limits));
    }
    this.room.presence.rebuild(this.room.sessions.values());
  }

  // ---- join ----------------------------------------------------------------------------

  /**
   * Accepts the socket and welcomes it, then sends what it missed: all in one synchronous run,
   * so nothing new can overtake the replay. The ban is checked here, in the same run as the
   * accept: a kick while the join awaited (a token check, a root call) has set the ban by now,
   * and its close would have missed this socket.
   */
  admit(join: Join, w: Welcome, listFor: (session: Session) => WelcomeList): Response {
    const banned = this.room.banned(join.user.id);
    if (banned) return errorResponse(banned);
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    const now = Date.now();
    const attachment: Attachment = { v: 1, c: randomId(), u: join.user.id, n: join.user.name, k: capsToBits(join.caps), s: now, e: join.exp };
    this.room.state.acceptWebSocket(server);
    server.serializeAttachment(attachment);
    const session = new Session(server, attachment, this.#limits);
    this.room.sessions.set(server, session);
    const first = this.room.presence.add(session);
    if (first) this.#leftWhileAsleep.delete(session.user.id); // its next leave is owed again
    const list = listFor(session);

    const welcome: Omit<WelcomeFrame, "presence"> = {
      type: "welcome",
      room: join.room,
      connectionId: attachment.c,
      user: session.user,
      epoch: w.epoch,
      seq: w.seq,
      resume: w.resume,
      exp: join.exp,
      ...(w.recovered === undefined ? {} : { recovered: w.recovered }),
      limits: this.#welcomeLimits,
      ...(list.counting ? { presenceCount: list.size, presenceTruncated: true as const } : {}),
    };
    // The presence list is spliced in as text: it is serialized once per change (presence.ts).
    const text = JSON.stringify(welcome);
    this.room.delivery.send(session, `${text.slice(0, -1)},"presence":${list.counting ? "[]" : list.listJson()}}`);
    for (const page of w.missed) {
      for (const frame of page) this.room.delivery.send(session, frame);
      this.room.count("delivered", page.length);
    }
    this.members.joined(session, first);
    this.#sweepBy(Math.min(now + this.room.config.IDLE_TIMEOUT_SEC * 1000, session.expiresAt));
    return new Response(null, { status: 101, webSocket: client });
  }

  // ---- frames --------------------------------------------------------------------------

  /** One frame from a socket: rate limit, parse, capability; then `frames` acts on it. */
  frame(ws: WebSocket, message: string | ArrayBuffer, frames: Frames, roomName: () => string): void {
    const session = this.room.sessions.get(ws);
    if (!session) return; // closing, or closed by the room: nothing it sends counts
    const now = Date.now();
    // Past its token's expiry a connection is done, whether or not the alarm has acted yet.
    if (this.#expire(session, now)) return;
    session.touch(now);
    const limited = !session.bucket.take(now);
    // A refused frame is still read, so its error carries its id and the client can fail that
    // publish at once instead of waiting out a timeout. What a flood costs stays bounded: past
    // 100 rejections in 10 s the connection is closed.
    const parsed = parseClientFrame(message, this.room.config.MAX_MESSAGE_BYTES);
    if (limited) {
      this.room.count("rateLimited");
      const id = "frame" in parsed ? parsed.frame.id : parsed.id;
      return this.reject(session, "rate_limited", "too many frames; slow down", id, now);
    }
    if ("code" in parsed) return this.reject(session, parsed.code, parsed.message, parsed.id, now);

    const frame = parsed.frame;
    if (frame.type === "refresh") {
      this.#refresh(session, frame.token, frame.id, roomName()).catch(() => {
        // Only the attachment write can throw, on a socket that closed during the check: nobody to answer.
      });
      return;
    }
    const needs: Capability = frame.type === "history" ? "history" : "publish";
    if (!session.can(needs)) return this.reject(session, "forbidden", `token lacks the ${needs} capability for this room`, frame.id, now);
    switch (frame.type) {
      case "publish":
        return frames.publish(session, frame);
      case "direct":
        return frames.direct(session, frame);
      case "presence":
        return frames.presence(session, frame);
      case "history":
        return frames.history(session, frame);
    }
  }

  /**
   * A fresh token for a live connection, verified exactly as the Worker verifies one (same keys,
   * algorithms, `iss`/`aud`). It must be the same user's; its expiry and this room's capabilities
   * replace the connection's. A bad one changes nothing; one that no longer grants `subscribe`
   * ends the connection (4403).
   */
  async #refresh(session: Session, token: string, id: string | undefined, room: string): Promise<void> {
    const identity = await verifyToken(token, this.room.config);
    if (!this.room.sessions.has(session.ws)) return; // closed while the token was checked
    const now = Date.now();
    if (isFailure(identity)) {
      const code = identity.code === "auth_unavailable" ? "auth_unavailable" : "unauthorized";
      return this.reject(session, code, `refresh refused: ${identity.message}`, id, now);
    }
    if (identity.id !== session.user.id) {
      return this.reject(session, "unauthorized", "refresh refused: the token is for another user", id, now);
    }
    const caps = capabilitiesFor(identity, room);
    if (!caps.has("subscribe")) return this.close(session, CloseCode.forbidden, "token no longer grants subscribe");
    session.attachment.k = capsToBits(caps);
    session.attachment.e = identity.exp;
    session.ws.serializeAttachment(session.attachment);
    // A shorter lifetime than the sweep was set for must still end on time.
    this.#sweepBy(session.expiresAt);
    if (id !== undefined) this.room.send(session, { type: "ack", id, exp: identity.exp });
  }

  /** Answers a rejected frame; a connection that keeps sending rejected frames is closed. */
  reject(session: Session, code: ErrorCode, message: string, id: string | undefined, now = Date.now()): void {
    if (code !== "rate_limited") this.room.count("rejected");
    this.room.send(session, { type: "error", code, message, ...(id === undefined ? {} : { id }) });
    if (session.rejects.record(now)) this.close(session, CloseCode.policy, "too many rejected frames");
  }

  // ---- leave ---------------------------------------------------------------------------

  /** A socket closed by its client or the network: remove it, and tell the room. */
  drop(ws: WebSocket): void {
    const session = this.room.sessions.get(ws);
    if (session) {
      this.room.sessions.delete(ws);
      this.members.left(session.user, this.room.presence.remove(session));
      return;
    }
    // Not in the index: the room closed it itself (and announced then), or it closed while the
    // room slept. The second owes the others a leave unless the user is still here, or one of
    // their other sockets that closed meanwhile has announced it already.
    if (this.#closedByRoom.has(ws)) return;
    const attachment = Session.readAttachment(ws);
    if (!attachment || attachment.x) return;
    if (this.room.presence.has(attachment.u) || this.#leftWhileAsleep.has(attachment.u)) return;
    this.#leftWhileAsleep.add(attachment.u);
    this.members.left({ id: attachment.u, name: attachment.n }, true);
  }

  /** The room closes a socket itself (abuse, idle, a kick): mark it, close it, tell the room at once. */
  close(session: Session, code: number, reason: string): void {
    // Marked twice: in memory for this instance (the write below can throw on a socket the
    // runtime already closed), and in the attachment for an instance woken after hibernation.
    this.#closedByRoom.add(session.ws);
    session.attachment.x = true;
    try {
      session.ws.serializeAttachment(session.attachment);
    } catch {
      // already closed by the runtime: nothing to mark
    }
    this.room.delivery.flush(session);
    closeQuietly(session.ws, code, reason);
    this.room.sessions.delete(session.ws);
    this.members.left(session.user, this.room.presence.remove(session));
  }

  /** Closes this object's own sockets of `uid` with 4403 (a kick, a ban); returns how many. */
  kick(uid: string, reason: string): number {
    const sessions = [...this.room.presence.sessionsOf(uid)];
    for (const session of sessions) this.close(session, CloseCode.forbidden, reason);
    return sessions.length;
  }

  // ---- the sweep (the alarm's) -----------------------------------------------------------

  /**
   * Closes idle and expired sockets when the sweep is due, for when the quietest socket could
   * next exceed the idle timeout (pings answered by the auto-response count as activity); the
   * alarm is set again for the next sweep only while sockets exist.
   */
  sweep(now: number): void {
    if (now >= this.#sweepAt) this.#sweepAt = this.#sweepNow(now);
    if (this.room.sessions.size > 0) this.room.scheduleAlarm(this.#sweepAt);
  }

  #sweepNow(now: number): number {
    const idleMs = this.room.config.IDLE_TIMEOUT_SEC * 1000;
    let next = Infinity;
    for (const session of [...this.room.sessions.values()]) {
      if (this.#expire(session, now)) continue;
      const last = session.lastActive(this.room.state);
      if (now - last > idleMs) this.close(session, CloseCode.idle, "idle timeout");
      else next = Math.min(next, last + idleMs + 1, session.expiresAt);
    }
    return next;
  }

  /** Closes `session` with 4401 when its token has expired by `now`; true when it did. */
  #expire(session: Session, now: number): boolean {
    if (now < session.expiresAt) return false;
    this.close(session, CloseCode.tokenExpired, "token expired");
    return true;
  }

  #sweepBy(at: number): void {
    if (this.#sweepAt > at) this.#sweepAt = at;
    this.room.scheduleAlarm(at);
  }
}

export function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // already closing or closed
  }
}

/**
 * Reciprocates the peer's Close: the 2026-04-07 auto-reply flag covers accept()ed sockets, not
 * hibernatable ones, whose clients otherwise sit in CLOSING and report 1006 (the same fix as
 * partyserver#389). Reserved codes cannot be sent back, so they become 1000.
 */
export function answerClose(ws: WebSocket, code: number): void {
  closeQuietly(ws, code === 1005 || code === 1006 || code === 1015 ? CloseCode.normal : code, "");
}
