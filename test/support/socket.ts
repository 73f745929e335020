// A test client inside the Workers pool: upgrades through the real Worker (auth and routing
// included) and collects frames, reading both single frames and batched arrays.
import { exports } from "cloudflare:workers";
import { onTestFinished } from "vitest";
import type { ServerFrame } from "../../src/protocol";

export interface TestSocket {
  ws: WebSocket;
  frames: ServerFrame[];
  /** raw text messages that were not JSON (e.g. "pong") */
  texts: string[];
  /** how many WebSocket messages arrived as a batch (a JSON array of frames) */
  batches: () => number;
  /** how many WebSocket messages arrived in all (a batch counts once) */
  received: () => number;
  closed: Promise<{ code: number; reason: string }>;
  isClosed(): boolean;
  send(frame: unknown): void;
  /** Resolves with the first frame (from the start of the log) matching, waiting if needed. */
  next<T extends ServerFrame["type"]>(
    type: T,
    match?: (f: Extract<ServerFrame, { type: T }>) => boolean,
    timeoutMs?: number,
  ): Promise<Extract<ServerFrame, { type: T }>>;
  /** Waits until `count` frames of `type` have arrived; returns them. */
  collect<T extends ServerFrame["type"]>(type: T, count: number, timeoutMs?: number): Promise<Extract<ServerFrame, { type: T }>[]>;
  close(code?: number): void;
}

export interface ConnectOptions {
  token?: string;
  /** the rooms' mount prefix (createRooms' path): "" for the standalone server */
  base?: string;
  query?: Record<string, string | number>;
  headers?: Record<string, string>;
}

export async function upgrade(room: string, opts: ConnectOptions = {}): Promise<Response> {
  const params = new URLSearchParams();
  if (opts.token) params.set("token", opts.token);
  for (const [k, v] of Object.entries(opts.query ?? {})) params.set(k, String(v));
  return exports.default.fetch(`http://rooms.test${opts.base ?? ""}/rooms/${room}/ws?${params.toString()}`, {
    headers: { upgrade: "websocket", ...opts.headers },
  });
}

export async function connect(room: string, opts: ConnectOptions = {}): Promise<TestSocket> {
  return socketOf(await upgrade(room, opts));
}

/** A test socket over an upgrade's 101 response (throws on any other). */
export async function socketOf(res: Response): Promise<TestSocket> {
  if (res.status !== 101 || !res.webSocket) {
    throw new Error(`upgrade failed: ${res.status} ${await res.text()}`);
  }
  const ws = res.webSocket;
  ws.accept();
  const frames: ServerFrame[] = [];
  const texts: string[] = [];
  let batches = 0;
  let received = 0;
  const waiters = new Set<() => void>();
  let closed = false;
  const closedP = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.addEventListener("close", (e) => {
      closed = true;
      resolve({ code: e.code, reason: e.reason });
      for (const w of waiters) w();
    });
  });
  ws.addEventListener("message", (e) => {
    received++;
    const text = typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data as ArrayBuffer);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      texts.push(text);
      for (const w of waiters) w();
      return;
    }
    if (Array.isArray(parsed)) batches++;
    for (const f of Array.isArray(parsed) ? parsed : [parsed]) frames.push(f as ServerFrame);
    for (const w of waiters) w();
  });

  function waitFor<R>(check: () => R | undefined, timeoutMs: number, what: string): Promise<R> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const r = check();
        if (r !== undefined) {
          waiters.delete(attempt);
          clearTimeout(timer);
          resolve(r);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(attempt);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(frames).slice(0, 2000)}`));
      }, timeoutMs);
      waiters.add(attempt);
      attempt();
    });
  }

  const sock: TestSocket = {
    ws,
    frames,
    texts,
    batches: () => batches,
    received: () => received,
    closed: closedP,
    isClosed: () => closed,
    send: (frame) => ws.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
    next: (type, match, timeoutMs = 3000) =>
      waitFor(() => frames.find((f) => f.type === type && (!match || match(f as never))) as never, timeoutMs, `a ${type} frame`),
    collect: (type, count, timeoutMs = 3000) =>
      waitFor(
        () => {
          const got = frames.filter((f) => f.type === type);
          return got.length >= count ? (got as never[]) : undefined;
        },
        timeoutMs,
        `${count} ${type} frames`,
      ),
    close: (code = 1000) => {
      try {
        ws.close(code);
      } catch {
        // already closed
      }
    },
  };
  return sock;
}

/**
 * Pings `s` every 400 ms until the test ends, so it outlives the pool's IDLE_TIMEOUT_SEC of 2
 * while a test waits (pings count as activity; the runtime answers them without waking the room).
 */
export function keepAlive(s: TestSocket): TestSocket {
  const timer = setInterval(() => !s.isClosed() && s.send("ping"), 400);
  onTestFinished(() => clearInterval(timer));
  return s;
}
