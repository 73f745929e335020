// A raw client of GET /connect inside the Workers pool: one socket through the real Worker, its
// frames sorted by subscription (each room's frames, batches unpacked) and the connection's own.
import { exports } from "cloudflare:workers";
import type { ConnectionServerFrame, ServerFrame } from "../../src/protocol";

export interface MuxSocket {
  ws: WebSocket;
  /** the connection's own frames: connected, unsubscribed, ack, error */
  control: ConnectionServerFrame[];
  /** each subscription's room frames, in arrival order */
  frames(sub: number): ServerFrame[];
  closed: Promise<{ code: number; reason: string }>;
  send(frame: unknown): void;
  subscribe(sub: number, room: string, position?: { since?: number; epoch?: string; resume?: string }): void;
  /** Sends `frame` to subscription `sub`'s room, in the envelope. */
  toRoom(sub: number, frame: unknown): void;
  /** The first control frame matching, waiting if needed. */
  nextControl<T extends ConnectionServerFrame["type"]>(
    type: T,
    match?: (f: Extract<ConnectionServerFrame, { type: T }>) => boolean,
    timeoutMs?: number,
  ): Promise<Extract<ConnectionServerFrame, { type: T }>>;
  /** The first frame of subscription `sub` matching, waiting if needed. */
  next<T extends ServerFrame["type"]>(
    sub: number,
    type: T,
    match?: (f: Extract<ServerFrame, { type: T }>) => boolean,
    timeoutMs?: number,
  ): Promise<Extract<ServerFrame, { type: T }>>;
  /** Waits until subscription `sub` has `count` frames of `type`. */
  collect<T extends ServerFrame["type"]>(sub: number, type: T, count: number, timeoutMs?: number): Promise<Extract<ServerFrame, { type: T }>[]>;
  close(code?: number): void;
}

export function connectUpgrade(token: string | undefined, opts: { base?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  const query = token === undefined ? "" : `?token=${encodeURIComponent(token)}`;
  return exports.default.fetch(`http://rooms.test${opts.base ?? ""}/connect${query}`, { headers: { upgrade: "websocket", ...opts.headers } });
}

export async function connectMux(token: string, opts: { base?: string } = {}): Promise<MuxSocket> {
  const res = await connectUpgrade(token, opts);
  if (res.status !== 101 || !res.webSocket) throw new Error(`connect failed: ${res.status} ${await res.text()}`);
  const ws = res.webSocket;
  ws.accept();
  const control: ConnectionServerFrame[] = [];
  const bySub = new Map<number, ServerFrame[]>();
  const framesOf = (sub: number) => bySub.get(sub) ?? (bySub.set(sub, []), bySub.get(sub)!);
  const waiters = new Set<() => void>();
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.addEventListener("close", (e) => {
      resolve({ code: e.code, reason: e.reason });
      for (const w of waiters) w();
    });
  });
  ws.addEventListener("message", (e) => {
    const text = e.data as string;
    if (text !== "pong") {
      const parsed = JSON.parse(text) as { sub?: number; data?: unknown } & ConnectionServerFrame;
      if ("data" in parsed && parsed.sub !== undefined) {
        const list = framesOf(parsed.sub);
        for (const f of Array.isArray(parsed.data) ? parsed.data : [parsed.data]) list.push(f as ServerFrame);
      } else {
        control.push(parsed);
      }
    }
    for (const w of waiters) w();
  });
  function waitFor<R>(check: () => R | undefined, timeoutMs: number, what: string): Promise<R> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const r = check();
        if (r === undefined) return;
        waiters.delete(attempt);
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        waiters.delete(attempt);
        reject(new Error(`timed out waiting for ${what}; control ${JSON.stringify(control).slice(0, 1500)}`));
      }, timeoutMs);
      waiters.add(attempt);
      attempt();
    });
  }
  const send = (frame: unknown) => ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  return {
    ws,
    control,
    frames: framesOf,
    closed,
    send,
    subscribe: (sub, room, position = {}) => send({ type: "subscribe", sub, room, ...position }),
    toRoom: (sub, frame) => send(`{"sub":${sub},"data":${JSON.stringify(frame)}}`),
    nextControl: (type, match, timeoutMs = 3000) =>
      waitFor(() => control.find((f) => f.type === type && (!match || match(f as never))) as never, timeoutMs, `a ${type} control frame`),
    next: (sub, type, match, timeoutMs = 3000) =>
      waitFor(() => framesOf(sub).find((f) => f.type === type && (!match || match(f as never))) as never, timeoutMs, `a ${type} frame of sub ${sub}`),
    collect: (sub, type, count, timeoutMs = 3000) =>
      waitFor(
        () => {
          const got = framesOf(sub).filter((f) => f.type === type);
          return got.length >= count ? (got as never[]) : undefined;
        },
        timeoutMs,
        `${count} ${type} frames of sub ${sub}`,
      ),
    close: (code = 1000) => {
      try {
        ws.close(code);
      } catch {
        // already closed
      }
    },
  };
}
