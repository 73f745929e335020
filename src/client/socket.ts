// The little the SDK needs from a WebSocket, so the browser's, Node's `ws` and a Workers
// socket all fit; and how it learns why a handshake failed.
import type { ErrorCode, HttpError, ServerFrame } from "../protocol";

/** Satisfied by the browser's WebSocket, `ws`'s WebSocket and a Workers WebSocket. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // `any`: the three implementations type their events differently; the SDK reads only `data`.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: any) => void): void;
}

/**
 * A socket's close event as the SDK reads it. A custom socket (a Connection's subscriptions are
 * such sockets) may add `refusal`: the room refused this client for good, ending it with that
 * error; or `resubscribe`: the transport under it dropped and paces its own return, so the client
 * reconnects at once instead of after its backoff.
 */
export interface SocketClose {
  code?: number;
  reason?: string;
  refusal?: { code: ErrorCode; message: string };
  resubscribe?: boolean;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;
/** Opens a socket to `url`. May resolve with a socket that is already open (readyState 1). */
export type SocketFactory = (url: string) => WebSocketLike | Promise<WebSocketLike>;

export const OPEN = 1;

/** Where a client gets its sockets: a factory, a class, or the global WebSocket. */
export interface Transport {
  WebSocket?: WebSocketConstructor;
  socket?: SocketFactory;
}

/** Fails at construction, not at the first connect, when no socket can ever be opened. */
export function requireTransport(t: Transport): void {
  if (!t.socket && !t.WebSocket && !(globalThis as { WebSocket?: unknown }).WebSocket) {
    throw new TypeError("no global WebSocket: pass one (in Node 20: `WebSocket` from the ws package)");
  }
}

export function openSocket(t: Transport, url: string): WebSocketLike | Promise<WebSocketLike> {
  if (t.socket) return t.socket(url);
  const Ctor = t.WebSocket ?? (globalThis as unknown as { WebSocket: WebSocketConstructor }).WebSocket;
  return new Ctor(url);
}

/**
 * Failures after which reconnecting with the same credentials cannot help, by the status that
 * must carry them. The status decides first: a 429 or 5xx (a key-server outage is 503
 * `auth_unavailable`) is temporary whatever its body says.
 */
const FATAL: ReadonlyMap<number, readonly ErrorCode[]> = new Map<number, readonly ErrorCode[]>([
  [400, ["bad_request"]],
  [401, ["unauthorized"]],
  // `rejected`: the room's own onJoin hook refused this user.
  [403, ["forbidden", "rejected"]],
]);

/**
 * Why did the handshake fail? A browser cannot tell: a refused upgrade is a close with code
 * 1006 before `open`, whatever the status was. So the SDK asks the plain-HTTP twin of the
 * upgrade (`GET /rooms/:room/join`: the same auth, origin, capability, ban and onJoin checks)
 * with the same token, and reads the error code from its body.
 *
 * Returns the code when it is fatal (400, 401, 403 with their codes), else undefined (server
 * down, network error, 429, 5xx, a ban, a cross-origin page whose probe CORS blocks): those
 * are retried with backoff.
 */
export async function probeHandshake(fetchFn: typeof fetch, httpUrl: string): Promise<ErrorCode | undefined> {
  try {
    const res = await fetchFn(httpUrl, { headers: { accept: "application/json" } });
    if (res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    const fatal = FATAL.get(res.status);
    if (!fatal) {
      await res.body?.cancel();
      return undefined;
    }
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- json() takes a type argument only in the Workers types; the SDK also compiles against the DOM's
    const body = (await res.json()) as Partial<HttpError>;
    const code = body.error?.code;
    return code !== undefined && fatal.includes(code) ? code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A server message is one frame or, when the room batches under load, an array of frames.
 * The one decoder for it lives here, not in protocol.ts, so browser bundles never pull in zod.
 */
export function decodeServerMessage(text: string): ServerFrame[] {
  const parsed: unknown = JSON.parse(text);
  return (Array.isArray(parsed) ? parsed : [parsed]) as ServerFrame[];
}

export function closeQuietly(ws: WebSocketLike, reason: string): void {
  try {
    ws.close(1000, reason);
  } catch {
    // already closed, or still connecting in an implementation that refuses to close then
  }
}
