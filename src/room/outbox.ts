// Delivery with adaptive batching. Each WebSocket message costs workerd a fixed ~20 µs per
// recipient whatever its size, so under load the way to move more frames is to send fewer
// messages: frames that queue up for a recipient go out together as one JSON array (docs/protocol.md,
// "Batching"). A quiet room never waits: the first frame of a burst is sent at once.
//
// How a burst is detected: a wide broadcast opens a drain turn (a zero-delay timer). Frames produced before
// that turn runs (by the events workerd had already queued behind the current one) are queued per
// recipient and sent by the drain as one array each; a drain that sent something opens the next
// turn, one that found nothing ends the burst. So the timer exists only while frames are flowing:
// it never delays a frame of a quiet room and never outlives the burst by more than one empty
// turn, so hibernation is not held off (STYLE rule 5 is about timers that wait; this one doesn't).
// No timer-free hook runs after the events already queued: microtasks run before them, and a
// drain chained on ctx.storage.sync() was measured to run before them too (batches of one).
//
// Only broadcasts to MIN_BATCH_FANOUT or more sockets open a burst: the saving is the per-message
// cost times the recipients, so a small room gains little, and it keeps its exact timing (a
// pending timer also lets the runtime clock advance between frames, which token buckets see).

/** Largest batch, in UTF-16 code units: at most 768 KiB of UTF-8, well under the runtime's 1 MiB. */
export const MAX_BATCH_CHARS = 256 * 1024;

/** A broadcast to fewer sockets never starts batching (see above). */
export const MIN_BATCH_FANOUT = 16;

export class Outbox {
  /** Frames waiting per socket, in order; a socket is here only while it has some. */
  readonly #queues = new Map<WebSocket, string[]>();
  /**
   * quiet: send at once. opening: the event that started a burst, still sending at once (its
   * frames must not wait for the drain). queueing: later events queue until the drain.
   */
  #mode: "quiet" | "opening" | "queueing" = "quiet";

  /** `batching` false makes every send immediate (the bench's comparison room). */
  constructor(readonly batching = true) {}

  /** Called before a broadcast to `fanout` sockets: a wide one starts a burst (see above). */
  broadcasting(fanout: number): void {
    if (this.#mode === "quiet" && this.batching && fanout >= MIN_BATCH_FANOUT) this.#open();
  }

  /** Sends `text` to one socket, behind whatever is already queued for it. */
  send(ws: WebSocket, text: string): void {
    if (this.#mode !== "queueing") return sendQuietly(ws, text);
    const queue = this.#queues.get(ws);
    if (queue) queue.push(text);
    else this.#queues.set(ws, [text]);
  }

  /** Sends `frames` to one socket, in order and together, behind whatever is queued for it. */
  sendAll(ws: WebSocket, frames: string[]): void {
    if (this.#mode !== "queueing") return sendBatched(ws, frames);
    for (const text of frames) this.send(ws, text);
  }

  /** Sends everything queued for `ws` now, e.g. before the room closes it. */
  flush(ws: WebSocket): void {
    const queue = this.#queues.get(ws);
    if (!queue) return;
    this.#queues.delete(ws);
    sendBatched(ws, queue);
  }

  #open(): void {
    this.#mode = "opening";
    // Microtasks run when the current event's code is done, before workerd delivers the next.
    queueMicrotask(() => {
      if (this.#mode === "opening") this.#mode = "queueing";
    });
    setTimeout(() => this.#drain(), 0);
  }

  #drain(): void {
    if (this.#queues.size === 0) {
      this.#mode = "quiet";
      return;
    }
    for (const [ws, queue] of this.#queues) sendBatched(ws, queue);
    this.#queues.clear();
    setTimeout(() => this.#drain(), 0);
  }
}

/** One message for a single frame, else arrays of at most MAX_BATCH_CHARS each, in order. */
function sendBatched(ws: WebSocket, frames: string[]): void {
  if (frames.length === 1) return sendQuietly(ws, frames[0]!);
  let start = 0;
  let size = 2;
  for (let i = 0; i < frames.length; i++) {
    const len = frames[i]!.length + 1;
    if (i > start && size + len > MAX_BATCH_CHARS) {
      sendChunk(ws, frames, start, i);
      start = i;
      size = 2;
    }
    size += len;
  }
  sendChunk(ws, frames, start, frames.length);
}

function sendChunk(ws: WebSocket, frames: string[], start: number, end: number): void {
  sendQuietly(ws, end - start === 1 ? frames[start]! : `[${frames.slice(start, end).join(",")}]`);
}

function sendQuietly(ws: WebSocket, text: string): void {
  try {
    ws.send(text);
  } catch {
    // The socket closed under us; its close event cleans up.
  }
}
