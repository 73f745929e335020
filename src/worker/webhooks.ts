// The Worker's side of webhooks: the consumer of the queue the rooms fill (room/webhooks.ts). One
// batch becomes one signed POST to WEBHOOK_URL; a 2xx acknowledges all of it, anything else (or no
// answer in time) hands the whole batch back to the queue, which retries it with backoff and,
// after max_retries (wrangler.toml), keeps it in the dead-letter queue. Nothing here retries by itself.
import { loadConfig } from "../config";
import type { WebhookEvent } from "../protocol";
import type { RoomEnv } from "../room/room";
import type { QueuedEvents } from "../room/webhooks";

export const SIGNATURE_HEADER = "X-Edgerooms-Signature";
/** How long the receiver has to answer a POST. */
export const WEBHOOK_TIMEOUT_MS = 10_000;
/** Retry n waits 2^n seconds (2, 4, 8, …), at most an hour: a receiver down for hours still gets everything. */
export const MAX_RETRY_DELAY_SEC = 3600;

export function retryDelaySec(attempts: number): number {
  return Math.min(2 ** Math.max(1, attempts), MAX_RETRY_DELAY_SEC);
}

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the receiver recomputes it with the same secret. */
export async function signature(secret: string, t: number, body: string): Promise<string> {
  const utf8 = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8.encode(`${t}.${body}`)));
  return `t=${t},v1=${[...mac].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export async function deliverWebhooks(batch: MessageBatch<string>, env: RoomEnv): Promise<void> {
  const config = loadConfig(env);
  if (!config.WEBHOOK_URL || !config.WEBHOOK_SECRET) {
    // Events queued before WEBHOOK_URL was unset: kept (then dead-lettered), never sent unsigned.
    batch.retryAll({ delaySeconds: MAX_RETRY_DELAY_SEC });
    return;
  }
  // One room's queue messages in the order the room numbered them; the batch may not be.
  const taken: { message: Message<string>; queued: QueuedEvents }[] = [];
  for (const message of batch.messages) {
    try {
      taken.push({ message, queued: JSON.parse(message.body) as QueuedEvents });
    } catch {
      message.retry(); // not a room's: left for the dead-letter queue, where someone can look at it
    }
  }
  if (taken.length === 0) return;
  taken.sort((a, b) => (a.queued.room === b.queued.room ? a.queued.n - b.queued.n : a.queued.room < b.queued.room ? -1 : 1));
  const events: WebhookEvent[] = taken.flatMap((x) => x.queued.events);
  const body = JSON.stringify({ events });
  const t = Math.floor(Date.now() / 1000);

  let outcome: string;
  try {
    const response = await fetch(config.WEBHOOK_URL, {
      method: "POST",
      headers: { "content-type": "application/json", [SIGNATURE_HEADER]: await signature(config.WEBHOOK_SECRET, t, body) },
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
    });
    await response.body?.cancel();
    if (response.ok) {
      for (const { message } of taken) message.ack();
      return;
    }
    outcome = `answered ${response.status}`;
  } catch (err) {
    outcome = err instanceof Error && err.name === "TimeoutError" ? `no answer in ${WEBHOOK_TIMEOUT_MS} ms` : `unreachable (${String(err)})`;
  }
  const attempts = Math.max(...taken.map((x) => x.message.attempts));
  const delaySeconds = retryDelaySec(attempts);
  console.warn(
    `webhooks: ${events.length} events to ${new URL(config.WEBHOOK_URL).host} not delivered (${outcome}); attempt ${attempts}, next in ${delaySeconds} s`,
  );
  for (const { message } of taken) message.retry({ delaySeconds });
}
