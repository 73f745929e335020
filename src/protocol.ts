// The wire contract (docs/protocol.md) as zod schemas. Every frame type used by the
// server, the client SDK and the tests is inferred from here: one source of truth.
import { z } from "zod";

export const ROOM_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
export const MAX_ID_LENGTH = 64;
export const MAX_PRESENCE_STATE_BYTES = 1024;
export const HISTORY_PAGE_MAX = 100;
export const HISTORY_PAGE_DEFAULT = 50;

/** Capabilities a token can grant per room; `*` grants all of them. */
export const Capability = z.enum(["subscribe", "publish", "history", "admin"]);
export type Capability = z.infer<typeof Capability>;

/** Error codes, one list for HTTP bodies and `error` frames. */
export const ErrorCode = z.enum([
  "bad_request",
  "upgrade_required",
  "unauthorized",
  "forbidden",
  "not_found",
  "too_large",
  "rate_limited",
  /** the user was kicked with a ban that has not run out (POST /rooms/:room/kick) */
  "banned",
  /** the room's own code (a `Room` subclass's onPublish or onJoin hook) refused it; the message says why */
  "rejected",
  /** a connection (GET /connect) already holds MAX_ROOMS_PER_CONNECTION rooms: this subscribe is refused */
  "too_many_rooms",
  "auth_not_configured",
  "auth_unavailable",
  "misconfigured",
  "internal",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** Close codes the server uses. 4408 is the spec's idle close; the rest are RFC 6455. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  serverError: 1011,
  /** a connection (GET /connect) relayed MAX_FRAMES_PER_CONNECTION frames: reconnect and resume */
  reconnect: 1012,
  /** the token's `exp` passed without a `refresh` */
  tokenExpired: 4401,
  /** a `refresh` token no longer grants `subscribe` in this room, or an admin kicked the user */
  forbidden: 4403,
  idle: 4408,
} as const;

const utf8 = new TextEncoder();
export const utf8Length = (s: string): number => utf8.encode(s).byteLength;
/**
 * Whether `s` is over `maxBytes` of UTF-8. A UTF-16 code unit is at most 3 UTF-8 bytes (and at
 * least 1), so only strings between a third of the limit and the limit are encoded to tell.
 */
export const overBytes = (s: string, maxBytes: number): boolean => s.length > maxBytes || (s.length * 3 > maxBytes && utf8Length(s) > maxBytes);

const Id = z.string().min(1).max(MAX_ID_LENGTH);
const Seq = z.number().int().nonnegative();

// ---- client → server ---------------------------------------------------------------------

export const PublishFrame = z.object({
  type: z.literal("publish"),
  data: z.unknown(),
  id: Id.optional(),
});
export const DirectFrame = z.object({
  type: z.literal("direct"),
  to: z.string().min(1).max(MAX_ID_LENGTH),
  data: z.unknown(),
  id: Id.optional(),
});
export const PresenceState = z.record(z.string(), z.unknown()).refine((s) => !overBytes(JSON.stringify(s), MAX_PRESENCE_STATE_BYTES), {
  error: `presence state must be at most ${MAX_PRESENCE_STATE_BYTES} bytes serialized`,
});
export const PresenceFrame = z.object({
  type: z.literal("presence"),
  state: PresenceState,
  id: Id.optional(),
});
export const HistoryFrame = z.object({
  type: z.literal("history"),
  before: Seq.optional(),
  limit: z.number().int().min(1).max(HISTORY_PAGE_MAX).optional(),
  id: Id.optional(),
});

/** A fresh token for this connection: same `sub`; its expiry and capabilities replace the old ones. */
export const RefreshFrame = z.object({
  type: z.literal("refresh"),
  token: z.string().min(1).max(8192),
  id: Id.optional(),
});

export const ClientFrame = z.discriminatedUnion("type", [PublishFrame, DirectFrame, PresenceFrame, HistoryFrame, RefreshFrame]);
export type ClientFrame = z.infer<typeof ClientFrame>;

/** A client's text, read: the frame, or the error to answer it with. */
export type ParsedFrame = { frame: ClientFrame } | { code: ErrorCode; message: string; id?: string };

/** Cheap checks first (binary, size, JSON); zod only on what is left. */
export function parseClientFrame(message: string | ArrayBuffer, maxBytes: number): ParsedFrame {
  if (typeof message !== "string") return { code: "bad_request", message: "binary frames are not accepted" };
  if (overBytes(message, maxBytes)) {
    return { code: "too_large", message: `frame exceeds ${maxBytes} bytes` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(message);
  } catch {
    return { code: "bad_request", message: "frame is not JSON" };
  }
  const result = ClientFrame.safeParse(raw);
  if (result.success) return { frame: result.data };
  const issue = result.error.issues[0];
  const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
  // The id of a frame that parsed as JSON but failed the schema, so the client can match the error.
  const id = (raw as { id?: unknown } | null)?.id;
  return {
    code: "bad_request",
    message: `${issue?.message ?? "invalid frame"}${where}`,
    ...(typeof id === "string" && id.length > 0 && id.length <= MAX_ID_LENGTH ? { id } : {}),
  };
}

/** The exact text answered by the runtime's auto-response without waking the room. */
export const PING = "ping";
export const PONG = "pong";

// ---- server → client ---------------------------------------------------------------------

export const UserRef = z.object({ id: z.string(), name: z.string() });
export type UserRef = z.infer<typeof UserRef>;

export const PresenceEntry = z.object({
  id: z.string(),
  name: z.string(),
  state: z.record(z.string(), z.unknown()),
  connections: z.number().int().positive(),
});
export type PresenceEntry = z.infer<typeof PresenceEntry>;

/** What the room enforces on a connection, so a client can stay within it instead of being refused. */
export const ConnectionLimits = z.object({
  /** Largest client frame, UTF-8 bytes. */
  maxMessageBytes: z.number().int().positive(),
  /** Token-bucket refill, frames per second; every frame but `ping` takes a token. */
  ratePerSec: z.number().positive(),
  /** Token-bucket capacity; the bucket starts full on each connection. */
  burst: z.number().int().positive(),
  /** Seconds of silence (not even `ping`) before the room closes the socket with 4408. */
  idleTimeoutSec: z.number().int().positive(),
});
export type ConnectionLimits = z.infer<typeof ConnectionLimits>;

export const WelcomeFrame = z.object({
  type: z.literal("welcome"),
  room: z.string(),
  connectionId: z.string(),
  user: UserRef,
  epoch: z.string(),
  seq: Seq,
  /** everyone in the room; empty while it has more than PRESENCE_LIMIT users (crowd.ts) */
  presence: z.array(PresenceEntry),
  /** set while the list is left out: the room's user count instead */
  presenceCount: z.number().int().nonnegative().optional(),
  presenceTruncated: z.literal(true).optional(),
  /** the token's expiry (unix seconds): the socket closes with 4401 then, unless refreshed */
  exp: z.number().optional(),
  /** opaque: sent back as `?resume=` on the next connection (see resume-token.ts) */
  resume: z.string(),
  recovered: z.boolean().optional(),
  limits: ConnectionLimits,
});
export const MessageFrame = z.object({
  type: z.literal("message"),
  seq: z.number().int().positive(),
  ts: z.number(),
  from: UserRef,
  data: z.unknown(),
  id: z.string().optional(),
});
export const DirectMessageFrame = z.object({
  type: z.literal("direct"),
  from: UserRef,
  data: z.unknown(),
  id: z.string().optional(),
});
/** A `direct` or `refresh` accepted; after a refresh, `exp` is the connection's new expiry. */
export const AckFrame = z.object({ type: z.literal("ack"), id: z.string(), exp: z.number().optional() });
/** One user came, went or changed state (rooms at or below PRESENCE_LIMIT users). */
export const PresenceUserFrame = z.object({
  type: z.literal("presence"),
  event: z.enum(["join", "leave", "update"]),
  user: z.object({ id: z.string(), name: z.string(), state: z.record(z.string(), z.unknown()) }),
});
/** Above PRESENCE_LIMIT users: how many, at most once a second while it changes. */
export const PresenceCountFrame = z.object({
  type: z.literal("presence"),
  event: z.literal("count"),
  count: z.number().int().nonnegative(),
});
/** Back at or below PRESENCE_LIMIT: the whole list again, replacing what the client had. */
export const PresenceSyncFrame = z.object({
  type: z.literal("presence"),
  event: z.literal("sync"),
  users: z.array(PresenceEntry),
});
export const PresenceEventFrame = z.discriminatedUnion("event", [PresenceUserFrame, PresenceCountFrame, PresenceSyncFrame]);
export const HistoryPageFrame = z.object({
  type: z.literal("history"),
  id: z.string().optional(),
  messages: z.array(MessageFrame),
  more: z.boolean(),
});
/** An admin deleted message `seq`: it has left history; drop it if shown. */
export const DeleteFrame = z.object({ type: z.literal("delete"), seq: z.number().int().positive() });
export const ErrorFrame = z.object({
  type: z.literal("error"),
  code: ErrorCode,
  message: z.string(),
  id: z.string().optional(),
});

export const ServerFrame = z.discriminatedUnion("type", [
  WelcomeFrame,
  MessageFrame,
  DirectMessageFrame,
  AckFrame,
  PresenceEventFrame,
  HistoryPageFrame,
  DeleteFrame,
  ErrorFrame,
]);
export type ServerFrame = z.infer<typeof ServerFrame>;
export type WelcomeFrame = z.infer<typeof WelcomeFrame>;
export type MessageFrame = z.infer<typeof MessageFrame>;
export type DirectMessageFrame = z.infer<typeof DirectMessageFrame>;
export type AckFrame = z.infer<typeof AckFrame>;
export type PresenceEventFrame = z.infer<typeof PresenceEventFrame>;
export type PresenceUserFrame = z.infer<typeof PresenceUserFrame>;
export type HistoryPageFrame = z.infer<typeof HistoryPageFrame>;
export type DeleteFrame = z.infer<typeof DeleteFrame>;
export type ErrorFrame = z.infer<typeof ErrorFrame>;

// ---- one connection, many rooms (GET /connect, worker/connect.ts) ---------------------

/** Joins one connection has waiting for their room's answer at once: the platform lets a request wait on six connections' response headers. */
export const OPENING_AT_ONCE = 6;
/** Frames a subscription holds for its room until the room's socket opens (the SDK sends none before the welcome). */
export const MAX_EARLY_FRAMES = 64;
/** A connection's control frame (a refresh's token is at most 8 KiB). */
export const MAX_CONTROL_BYTES = 16_384;
/** A subscription's id, chosen by the client, unique on its connection: frames of an old one are told apart from a new one's. */
export const SubId = z.number().int().min(1).max(2_147_483_647);
/** Joins `room` over the connection, from a position as a direct socket's `?since=&epoch=&resume=` gives it. */
export const SubscribeFrame = z.object({
  type: z.literal("subscribe"),
  sub: SubId,
  room: z.string(),
  since: Seq.optional(),
  epoch: z.string().optional(),
  resume: z.string().optional(),
});
/** Leaves the subscription's room: its socket to the room closes, the other rooms go on. */
export const UnsubscribeFrame = z.object({ type: z.literal("unsubscribe"), sub: SubId });
/** What a client sends on /connect besides `ping` and room envelopes; `refresh` renews the token of every room at once. */
export const ConnectionFrame = z.discriminatedUnion("type", [SubscribeFrame, UnsubscribeFrame, RefreshFrame]);
export type ConnectionFrame = z.infer<typeof ConnectionFrame>;
/**
 * A room's frame on the connection, both ways: `data` is a client frame of that room's (client
 * → server) or the room's message, a frame or a batch (server → client). The server writes it as
 * exactly `{"sub":<id>,"data":<the room's text>}`, so a client may cut the room's text out unparsed.
 */
export const RoomEnvelope = z.object({ sub: SubId, data: z.unknown() });
/** The connection is up: who it is, until when, and how many rooms it may hold. */
export const ConnectedFrame = z.object({
  type: z.literal("connected"),
  user: UserRef,
  exp: z.number().optional(),
  maxRooms: z.number().int().positive(),
});
/**
 * A subscription ended: refused (`code` and `message`, nothing joined), closed by its room
 * (`close` and `reason`, as a direct socket's close event), or left (neither).
 */
export const UnsubscribedFrame = z.object({
  type: z.literal("unsubscribed"),
  sub: SubId,
  room: z.string(),
  code: ErrorCode.optional(),
  message: z.string().optional(),
  close: z.number().int().optional(),
  reason: z.string().optional(),
});
/** What the server sends on /connect besides `pong` and room envelopes (`ack` answers a connection's `refresh`). */
export const ConnectionServerFrame = z.discriminatedUnion("type", [ConnectedFrame, UnsubscribedFrame, AckFrame, ErrorFrame]);
export type ConnectionServerFrame = z.infer<typeof ConnectionServerFrame>;
export type ConnectedFrame = z.infer<typeof ConnectedFrame>;
export type UnsubscribedFrame = z.infer<typeof UnsubscribedFrame>;

// ---- HTTP --------------------------------------------------------------------------------

export const HistoryQuery = z.object({
  before: z.coerce.number().int().positive().optional(),
  limit: z.coerce.number().int().min(1).max(HISTORY_PAGE_MAX).default(HISTORY_PAGE_DEFAULT),
});
export const PublishBody = z.object({ data: z.unknown() });
export const IdempotencyKey = z.string().min(1).max(64);
/** The longest ban a kick can set: a week. */
export const MAX_BAN_SEC = 604_800;
/** `banSec` sets the user's ban in this room from now (0 lifts one); absent leaves it as it is. */
export const KickBody = z
  .object({
    user: z.string().min(1).max(MAX_ID_LENGTH),
    banSec: z.number().int().min(0).max(MAX_BAN_SEC).optional(),
    reason: z.string().max(200).optional(),
  })
  .strict();
export type KickBody = z.infer<typeof KickBody>;
/** A message's seq in a DELETE path. */
export const MessageSeq = z.coerce.number().int().positive();

export interface HttpError {
  error: { code: ErrorCode; message: string };
}
export interface HistoryPage {
  messages: MessageFrame[];
  more: boolean;
}
export interface PublishResult {
  seq: number;
  epoch: string;
}
export interface KickResult {
  /** the user's sockets closed, across the room's shards */
  closed: number;
}
export interface DeleteResult {
  deleted: number;
}
export interface RoomStats {
  room: string;
  connections: number;
  users: number;
  seq: number;
  epoch: string;
  /** times the room's object was started: first use, then each wake-up after hibernation or eviction */
  starts: number;
  published: number;
  delivered: number;
  rejected: number;
  rateLimited: number;
  /** a sharded room's shards, in shard order (`connections` is then their sum) */
  shards?: { connections: number }[];
}

// ---- webhooks (room/webhooks.ts → worker/webhooks.ts) -----------------------------------

/** What every event carries: `id` is the same on every retry (receivers dedupe by it). */
const EventBase = { id: z.string(), room: z.string(), ts: z.number() };
/** A message was published (stored with `seq`); `clientId` is the publisher's own `id`, if it gave one. */
export const MessageEvent = z.object({
  type: z.literal("message"),
  ...EventBase,
  seq: z.number().int().positive(),
  from: UserRef,
  data: z.unknown().optional(),
  clientId: z.string().optional(),
  /** set instead of `data` when the message is too large for a queue message: read it from history */
  dataTooLarge: z.literal(true).optional(),
});
/** A user's first connection to the room, or its last one gone (as presence sees it). */
export const UserEvent = z.object({ type: z.enum(["join", "leave"]), ...EventBase, user: UserRef });
/** The room's first socket arrived, or its last one is gone. */
export const RoomEvent = z.object({ type: z.enum(["occupied", "vacated"]), ...EventBase });
export const KickEvent = z.object({
  type: z.literal("kick"),
  ...EventBase,
  user: z.string(),
  closed: z.number().int().nonnegative(),
  banSec: z.number().int().nonnegative().optional(),
  reason: z.string().optional(),
});
export const DeleteEvent = z.object({ type: z.literal("delete"), ...EventBase, seq: z.number().int().positive() });
export const WebhookEvent = z.discriminatedUnion("type", [MessageEvent, UserEvent, RoomEvent, KickEvent, DeleteEvent]);
export type WebhookEvent = z.infer<typeof WebhookEvent>;
/** The body of every webhook POST. */
export const WebhookBody = z.object({ events: z.array(WebhookEvent).min(1) });
