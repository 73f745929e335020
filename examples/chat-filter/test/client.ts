// What the tests need to talk to the Worker as a client would: tokens signed with the pool's
// AUTH_SECRET, HTTP calls, and a socket that keeps every frame and waits for one with a deadline.
// Everything goes through the Worker (`exports.default`): routing under /rt and auth included.
import { env, exports } from "cloudflare:workers";
import { SignJWT } from "jose";
import { onTestFinished } from "vitest";

const BASE = "http://chat.test";

/** A frame as the room sends it (docs/protocol.md): `welcome`, `message`, `error`, `presence`… */
export interface Frame {
  type: string;
  [field: string]: unknown;
}

/** An HS256 token for `user` with every capability in `room`, valid for an hour. */
export function tokenFor(user: string, room: string): Promise<string> {
  return new SignJWT({ sub: user, name: user, rooms: { [room]: ["*"] }, exp: Math.floor(Date.now() / 1000) + 3600 })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(String(env.AUTH_SECRET)));
}

/** A request to the Worker; `token` goes in `Authorization: Bearer`. */
export function call(path: string, init: RequestInit & { token?: string } = {}): Promise<Response> {
  const { token, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token) headers.set("authorization", `Bearer ${token}`);
  return exports.default.fetch(`${BASE}${path}`, { ...rest, headers });
}

export interface ChatSocket {
  frames: Frame[];
  send(frame: object): void;
  /** The first frame (from the start) that `match` accepts, waiting up to `timeoutMs` for it. */
  next(match: (f: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
}

/** `user` connected to `room` (its welcome received); closed when the test ends. */
export async function connect(room: string, user: string): Promise<ChatSocket> {
  const token = await tokenFor(user, room);
  const res = await exports.default.fetch(`${BASE}/rt/rooms/${room}/ws?token=${token}`, { headers: { upgrade: "websocket" } });
  if (res.status !== 101 || !res.webSocket) throw new Error(`upgrade failed: ${res.status} ${await res.text()}`);
  const ws = res.webSocket;
  ws.accept();
  onTestFinished(() => ws.close(1000));
  const frames: Frame[] = [];
  const waiters = new Set<() => void>();
  ws.addEventListener("message", (e) => {
    // One frame per WebSocket message, or (a busy room) a JSON array of frames in order.
    const parsed = JSON.parse(typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data as ArrayBuffer)) as Frame | Frame[];
    frames.push(...(Array.isArray(parsed) ? parsed : [parsed]));
    for (const wake of waiters) wake();
  });
  const socket: ChatSocket = {
    frames,
    send: (frame) => ws.send(JSON.stringify(frame)),
    next: (match, timeoutMs = 3000) =>
      new Promise((resolve, reject) => {
        const look = () => {
          const found = frames.find(match);
          if (!found) return;
          waiters.delete(look);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(look);
          reject(new Error(`no such frame within ${timeoutMs} ms; got ${JSON.stringify(frames)}`));
        }, timeoutMs);
        waiters.add(look);
        look();
      }),
  };
  await socket.next((f) => f.type === "welcome");
  return socket;
}

/** A room's history, newest first, as `GET /rt/rooms/:room/history` answers it. */
export async function history(room: string, user = "reader"): Promise<Frame[]> {
  const res = await call(`/rt/rooms/${room}/history`, { token: await tokenFor(user, room) });
  if (res.status !== 200) throw new Error(`history: ${res.status} ${await res.text()}`);
  return (await res.json<{ messages: Frame[] }>()).messages;
}
