// `edgerooms/server`: the rooms as a library. Your Worker mounts them with createRooms, your
// Durable Object class extends Room (adding hooks), and the standalone server (src/index.ts) is
// one such Worker.
export { Room, type RoomEnv } from "../room/room";
export { createRooms, type Rooms, type RoomsOptions } from "../worker/index";
export type { ConfigKey, ConfigOverrides } from "../config";
export type { Awaitable, JoinDecision, JoinEvent, LeaveEvent, PublishDecision, PublishEvent, RoomHooks, Via } from "../room/hooks";
export type { Capability, ErrorCode, UserRef } from "../protocol";
