// One connection as the room sees it. The attachment is the only part that survives
// hibernation, so it holds ids and capabilities only, under a versioned schema checked on read.
import { z } from "zod";
import { Capability, type UserRef } from "../protocol";
import { SlidingCounter, TokenBucket } from "./rate-limit";

/** Capabilities as bits: an attachment stays a few dozen bytes. */
const CAP_BITS: Record<Capability, number> = { subscribe: 1, publish: 2, history: 4, admin: 8 };

export function capsToBits(caps: Iterable<Capability>): number {
  let bits = 0;
  for (const c of caps) bits |= CAP_BITS[c];
  return bits;
}

export const Attachment = z.object({
  v: z.literal(1),
  /** connection id */
  c: z.string(),
  /** user id and display name */
  u: z.string(),
  n: z.string(),
  /** capability bits */
  k: z.number().int(),
  /** last time the client was heard from, ms; refreshed coarsely (see Session.touch) */
  s: z.number(),
  /** the token's expiry, unix seconds (absent in attachments written before token lifetimes) */
  e: z.number().optional(),
  /** set once the room has closed the socket and announced its leave, so a late close event is not announced twice */
  x: z.literal(true).optional(),
});
export type Attachment = z.infer<typeof Attachment>;

export const REJECT_LIMIT = 100;
export const REJECT_WINDOW_MS = 10_000;

export interface Limits {
  ratePerSec: number;
  burst: number;
  /** how stale the stored last-seen time may get before it is rewritten */
  touchEveryMs: number;
}

export class Session {
  static #created = 0;
  /** The number the next session will get. */
  static get nextOrder(): number {
    return Session.#created;
  }

  /** Creation order: the room's index iterates sessions in it (see announcements.ts). */
  readonly order = Session.#created++;
  readonly user: UserRef;
  readonly bucket: TokenBucket;
  readonly rejects = new SlidingCounter(REJECT_LIMIT, REJECT_WINDOW_MS);
  /** Last time this client sent anything but `ping` (the runtime tracks pings itself). */
  lastSeen: number;

  constructor(
    readonly ws: WebSocket,
    readonly attachment: Attachment,
    readonly limits: Limits,
  ) {
    this.user = { id: attachment.u, name: attachment.n };
    this.bucket = new TokenBucket(limits.ratePerSec, limits.burst);
    this.lastSeen = attachment.s;
  }

  get id(): string {
    return this.attachment.c;
  }

  /** When the token runs out, ms (Infinity for attachments from before token lifetimes). */
  get expiresAt(): number {
    return this.attachment.e === undefined ? Infinity : this.attachment.e * 1000;
  }

  can(cap: Capability): boolean {
    return (this.attachment.k & CAP_BITS[cap]) !== 0;
  }

  /**
   * Notes activity. The attachment's copy is rewritten only when it has gone stale by more than
   * `touchEveryMs`, so a chatty client costs one attachment write per interval, not per frame,
   * while the idle sweep after a hibernation still sees roughly when it was last heard from.
   */
  touch(now: number): void {
    this.lastSeen = now;
    if (now - this.attachment.s >= this.limits.touchEveryMs) {
      this.attachment.s = now;
      this.ws.serializeAttachment(this.attachment);
    }
  }

  /** Last time the client was heard from, auto-answered pings included. */
  lastActive(ctx: DurableObjectState): number {
    const pinged = ctx.getWebSocketAutoResponseTimestamp(this.ws)?.getTime() ?? 0;
    return Math.max(this.lastSeen, pinged);
  }

  static readAttachment(ws: WebSocket): Attachment | undefined {
    const parsed = Attachment.safeParse(ws.deserializeAttachment());
    return parsed.success ? parsed.data : undefined;
  }
}
