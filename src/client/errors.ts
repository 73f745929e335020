// The one error type the SDK rejects and emits with: a code from the protocol's list when the
// server said so, or one of the client's own when the failure happened on this side.
import type { ErrorCode } from "../protocol";

/**
 * Of the server's codes, `too_large` is also raised here, before sending: the room cannot tell
 * which frame it refused as too large, so waiting for its answer would end in `timeout`.
 *
 * - `timeout`: no answer within the timeout; the server may still have accepted the frame.
 * - `outbox_full`: too many publishes waiting; nothing was sent.
 * - `connection_lost`: sent, then the connection dropped and the resume did not show it
 *   accepted (or the room could not resume); it is not sent again, so the app decides.
 * - `not_connected`: a request that is not queued (history, direct) was made while offline.
 * - `closed`: the client was closed, by `close()` or after a 401/403.
 */
export type ClientErrorCode = "timeout" | "outbox_full" | "connection_lost" | "not_connected" | "closed";
export type RoomErrorCode = ErrorCode | ClientErrorCode;

export class RoomError extends Error {
  override readonly name = "RoomError";
  constructor(
    readonly code: RoomErrorCode,
    message: string,
  ) {
    super(message);
  }
}
