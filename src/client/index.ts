// The edgerooms client SDK (`edgerooms/client`): RoomClient, one room over its own socket, and
// Connection, many rooms over one socket. Frame types come from ../protocol as types only, so a
// browser bundle of the SDK carries no zod.
export { RoomClient } from "./room-client";
export { Backoff, type BackoffOptions } from "./backoff";
export { RoomError, type ClientErrorCode, type RoomErrorCode } from "./errors";
export type { PresenceUser } from "./presence";
export type { HistoryPage, PresenceEvent, RoomClientOptions, RoomEvents, Status, StatusEvent } from "./options";
export { decodeServerMessage, type SocketClose, type SocketFactory, type WebSocketConstructor, type WebSocketLike } from "./socket";
export { Connection, RoomHandle, type ConnectionEvents, type ConnectionOptions, type RoomHandleOptions } from "./connection";
export type { ConnectionLimits, DirectMessageFrame, MessageFrame, UserRef, WelcomeFrame } from "../protocol";
