// When a token function is asked for a fresh token: a minute before the current one expires, or
// at 80% of a short token's life, so a connection never ends at `exp` (docs/protocol.md, "Token
// lifetime"). RoomClient and Connection renew the same way.

/** How long before a token's expiry the SDK sends a fresh one. */
export const REFRESH_LEAD_MS = 60_000;

/** Milliseconds from `now` until the token expiring at `exp` (unix seconds) should be renewed. */
export function refreshDelay(exp: number, now: number): number {
  const left = exp * 1000 - now;
  const at = left > REFRESH_LEAD_MS * 5 ? exp * 1000 - REFRESH_LEAD_MS : now + left * 0.8;
  return Math.max(0, at - now);
}
