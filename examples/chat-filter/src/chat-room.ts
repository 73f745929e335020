// The room, as this app wants it: a chat message is `{ "text": "..." }`, one with a banned word is
// refused before it gets a seq (its sender is told why, nobody else sees it, history never holds
// it), and every other is stored and fanned out marked `filtered: true`.
import { Room, type PublishDecision, type PublishEvent } from "edgerooms/server";
import type { Env } from "./env";

/** Words no message may contain, matched as whole words, in any case. */
export const BANNED = ["spam", "scam"];
const banned = new RegExp(`\\b(${BANNED.join("|")})\\b`, "i");

export class ChatRoom extends Room<Env> {
  // Runs in the room's own Durable Object, once per publish (socket or HTTP), in publish order.
  override onPublish({ data }: PublishEvent): PublishDecision {
    if (typeof data !== "object" || data === null || Array.isArray(data) || typeof (data as { text?: unknown }).text !== "string") {
      return { reject: 'a chat message is {"text": "..."}' };
    }
    const word = banned.exec((data as { text: string }).text)?.[1];
    if (word !== undefined) return { reject: `"${word.toLowerCase()}" is not allowed in this room` };
    return { data: { ...data, filtered: true } };
  }
}
