// The Worker's side of the rooms, as createRooms mounts it in any Worker: answers /health,
// authenticates every room request, and routes it to the room's Durable Object; every other path
// is left to the Worker around it. Nothing reaches a room unless auth passed.
import { capabilitiesFor, tokenFrom, verifyToken } from "../auth";
import { ConfigError, loadConfig, overrideConfig, type Config, type ConfigOverrides } from "../config";
import { acceptConnection } from "./connect";
import { originAllowed, preflight, withCors } from "./cors";
import { mintDevToken } from "./devtoken";
import { errorResponse, failure, isFailure, joinRefusal, json, type Failure } from "../http";
import { HistoryQuery, IdempotencyKey, KickBody, MessageSeq, PublishBody, ROOM_NAME, type Capability } from "../protocol";
import { UpgradeLimiter } from "./upgrade-limit";
import { deliverWebhooks } from "./webhooks";
import { joinRoom } from "./join";
import { roomStub, type Room } from "../room/room";
import { isNamespace } from "../room/namespace";

const upgrades = new UpgradeLimiter();
// `/rooms/:room/<action>`, or `/rooms/:room/messages/:seq` (the `message` action: one message).
const ROUTE = /^\/rooms\/([^/]*)\/(ws|join|messages|history|presence|stats|kick|messages\/[^/]*)$/;
type Action = "ws" | "join" | "messages" | "message" | "history" | "presence" | "stats" | "kick";
const NEEDS: Record<Action, { method: string; cap: Capability }> = {
  ws: { method: "GET", cap: "subscribe" },
  join: { method: "GET", cap: "subscribe" },
  messages: { method: "POST", cap: "publish" },
  message: { method: "DELETE", cap: "admin" },
  history: { method: "GET", cap: "history" },
  presence: { method: "GET", cap: "subscribe" },
  stats: { method: "GET", cap: "admin" },
  kick: { method: "POST", cap: "admin" },
};
/** Moderation bodies are small: a user id and a reason of at most 200 characters. */
const MAX_KICK_BODY_BYTES = 2048;

/** createRooms' options (the API of `edgerooms/server`). */
export interface RoomsOptions {
  /** The binding name of your `Room` subclass in wrangler.toml (`[[durable_objects.bindings]] name`). */
  room: string;
  /**
   * Where the routes of docs/protocol.md are mounted: `"/rt"` serves `/rt/rooms/:room/ws`,
   * `/rt/health` and the rest; `""` (the default) serves them at the root.
   */
  path?: string;
  /**
   * Settings over the env vars of the same names (config.ts), checked now; the rooms of this
   * script read them too, so call createRooms once, at the module's top level (a room's object,
   * often in another isolate, reads them from its own copy of the module). Not DEV_TOKENS (the
   * local dev script's), and secrets belong in `wrangler secret put`, not in code.
   */
  config?: ConfigOverrides;
}

/** What createRooms returns: the Worker's handlers for the rooms' routes and their webhook queue. */
export interface Rooms {
  /** The answer to one of the rooms' routes, or null for any other path (so your own routes answer it). */
  fetch(request: Request, env: object, ctx?: ExecutionContext): Promise<Response | null>;
  /** The webhook queue's consumer (`[[queues.consumers]]` of the WEBHOOKS queue). */
  queue(batch: MessageBatch<string>, env: object): Promise<void>;
}

/** Mounts the rooms of the `Room` subclass bound as `options.room` under `options.path`. */
export function createRooms(options: RoomsOptions): Rooms {
  const prefix = (options.path ?? "").replace(/\/+$/, "");
  if (prefix !== "" && !prefix.startsWith("/")) throw new ConfigError(`createRooms: path must start with "/" (got ${JSON.stringify(options.path)})`);
  if (!/^[A-Za-z_$][\w$]*$/.test(options.room))
    throw new ConfigError(`createRooms: room must be a binding name (got ${JSON.stringify(options.room)})`);
  if (options.config) overrideConfig(options.config);
  return {
    fetch: (request, env) => route(request, env, options.room, prefix),
    queue: (batch, env) => deliverWebhooks(batch, env),
  };
}

/** The path below the mount prefix, or null when the request is not under it. */
function below(pathname: string, prefix: string): string | null {
  if (prefix === "") return pathname;
  return pathname.startsWith(`${prefix}/`) ? pathname.slice(prefix.length) : null;
}

async function route(request: Request, env: object, binding: string, prefix: string): Promise<Response | null> {
  const url = new URL(request.url);
  const path = below(url.pathname, prefix);
  if (path === null) return null;
  if (path === "/health") return json({ ok: true });
  // Paths that are not the rooms' belong to the Worker around them, even while the rooms are misconfigured.
  if (path !== "/dev/token" && path !== "/connect" && !path.startsWith("/rooms/")) return null;

  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return errorResponse(failure("misconfigured", err.message));
    throw err;
  }
  if (path === "/dev/token") return config.DEV_TOKENS ? mintDevToken(url, config) : null;
  const rooms = (env as Record<string, unknown>)[binding];
  if (!isNamespace(rooms)) {
    return errorResponse(failure("misconfigured", `no Durable Object binding ${binding} in wrangler.toml (createRooms' room)`));
  }

  const typed = rooms as unknown as DurableObjectNamespace<Room>;
  if (path === "/connect") {
    if (request.method !== "GET") return errorResponse(failure("not_found", `no route for ${request.method} ${url.pathname}`));
    const outcome = await handleConnect(request, typed, config, url);
    return outcome instanceof Response ? outcome : withCors(errorResponse(outcome), request, config);
  }
  const match = ROUTE.exec(path);
  const action = (match?.[2]?.startsWith("messages/") ? "message" : match?.[2]) as Action | undefined;
  if (match && action !== "ws" && request.method === "OPTIONS") return preflight(request, config);
  if (!match || !action || request.method !== NEEDS[action].method) {
    return errorResponse(failure("not_found", `no route for ${request.method} ${url.pathname}`));
  }
  const room = decodeRoom(match[1]!);
  const target = action === "message" ? match[2]!.slice("messages/".length) : "";
  const outcome = await handleRoom(request, typed, config, url, room, action, target);
  const response = outcome instanceof Response ? outcome : errorResponse(outcome);
  // A 101 carries a socket and has immutable headers; browsers do not apply CORS to upgrades.
  return action === "ws" && response.status === 101 ? response : withCors(response, request, config);
}

/**
 * GET /connect, one socket for many rooms (connect.ts): the token authenticates the user once,
 * each subscribe is checked against its `rooms` claim. Checks in the order 429, 401, 403, 426:
 * without an upgrade it is the handshake's plain-HTTP twin, so a browser's SDK can read why an
 * upgrade failed, and answers 426 once everything else passed.
 */
async function handleConnect(request: Request, rooms: DurableObjectNamespace<Room>, config: Config, url: URL): Promise<Response | Failure> {
  const ip = request.headers.get("cf-connecting-ip") ?? "unknown";
  if (!upgrades.allow(ip, config.UPGRADE_LIMIT)) return failure("rate_limited", `more than ${config.UPGRADE_LIMIT} upgrade attempts in 10 s`);
  const token = tokenFrom(request, url);
  const identity = await verifyToken(token, config);
  if (isFailure(identity)) return identity;
  const origin = request.headers.get("origin");
  if (origin !== null && !originAllowed(origin, config)) return failure("forbidden", `origin ${origin} is not allowed`);
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return failure("upgrade_required", "this route needs Upgrade: websocket");
  return acceptConnection(rooms, config, identity, token!);
}

async function handleRoom(
  request: Request,
  rooms: DurableObjectNamespace<Room>,
  config: Config,
  url: URL,
  room: string,
  action: Action,
  /** the message action's seq, as written in the path */
  target: string,
): Promise<Response | Failure> {
  // The order of checks is part of the contract: 429, 400, 426, 401, 403.
  // The probe counts as an attempt: it runs the same checks, onJoin included, and follows a failed upgrade.
  if (action === "ws" || action === "join") {
    const ip = request.headers.get("cf-connecting-ip") ?? "unknown";
    if (!upgrades.allow(ip, config.UPGRADE_LIMIT)) {
      return failure("rate_limited", `more than ${config.UPGRADE_LIMIT} upgrade attempts in 10 s`);
    }
  }
  if (!ROOM_NAME.test(room)) return failure("bad_request", "room name must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$");
  if (action === "ws" && request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return failure("upgrade_required", "this route needs Upgrade: websocket");
  }
  const identity = await verifyToken(tokenFrom(request, url), config);
  if (isFailure(identity)) return identity;
  if (action === "ws" || action === "join") {
    const origin = request.headers.get("origin");
    if (origin !== null && !originAllowed(origin, config)) {
      return failure("forbidden", `origin ${origin} is not allowed`);
    }
  }
  const caps = capabilitiesFor(identity, room);
  const needed = NEEDS[action].cap;
  if (!caps.has(needed)) return failure("forbidden", `token lacks the ${needed} capability for room ${room}`);

  const stub = roomStub(rooms, room);
  const user = { id: identity.id, name: identity.name };
  switch (action) {
    case "ws":
      // A sharded room's sockets go to its shards (join.ts); its HTTP routes to the root, like any room's.
      return joinRoom(rooms, config, room, identity, caps, nonEmptyParams(url, ["since", "epoch", "resume"]));
    case "join": {
      // The SDK's handshake probe: the upgrade's checks, asked of the room (a giant room's root)
      // with no socket, so a refusal the upgrade's status hid can be read.
      const refused = await stub.admission(room, user, [...caps], true);
      return refused ? joinRefusal(refused) : json({ ok: true });
    }
    case "messages": {
      const body = await readPublish(request, config);
      if (isFailure(body)) return body;
      const published = await stub.publish(room, user, body.data, body.key);
      if (isFailure(published)) return published;
      if ("retryAfterSec" in published) {
        const { PUBLISH_BURST: burst, PUBLISH_RATE_PER_SEC: rate } = config;
        const why = `more than ${burst} publishes at once or ${rate} per second from ${user.id} in this room`;
        return failure("rate_limited", why, published.retryAfterSec);
      }
      return json(published, 201);
    }
    case "history": {
      const query = HistoryQuery.safeParse(nonEmptyParams(url, ["before", "limit"]));
      if (!query.success) return failure("bad_request", `bad query: ${query.error.issues[0]?.message}`);
      return answer(await stub.history(room, user.id, query.data.before, query.data.limit));
    }
    case "presence":
      return answer(await stub.presence(room, user.id));
    case "stats":
      return answer(await stub.stats(room, user.id));
    case "kick": {
      const body = await readKick(request);
      if (isFailure(body)) return body;
      return answer(await stub.kick(room, user.id, body.user, body.banSec, body.reason));
    }
    case "message": {
      const seq = MessageSeq.safeParse(target);
      if (!seq.success || !/^[0-9]+$/.test(target)) return failure("bad_request", "the message's seq must be a positive integer");
      const deleted = await stub.deleteMessage(room, user.id, seq.data);
      return deleted ? answer(deleted) : failure("not_found", `room ${room} holds no message ${seq.data}`);
    }
  }
}

/** A room's answer to an HTTP route: its result as 200 JSON, or its failure (a ban) as the error answer. */
function answer(result: unknown): Response | Failure {
  return isFailure(result) ? result : json(result);
}

async function readPublish(request: Request, config: Config): Promise<{ data: unknown; key?: string } | Failure> {
  const key = request.headers.get("idempotency-key") ?? undefined;
  if (key !== undefined && !IdempotencyKey.safeParse(key).success) {
    return failure("bad_request", "Idempotency-Key must be 1..64 characters");
  }
  const max = config.MAX_MESSAGE_BYTES;
  const declared = Number(request.headers.get("content-length") ?? 0);
  if (declared > max) return failure("too_large", `body exceeds ${max} bytes`);
  const json = await readJson(request, max, "body is not JSON");
  if (isFailure(json)) return json;
  const { raw } = json;
  const body = PublishBody.safeParse(raw);
  if (!body.success || Array.isArray(raw)) return failure("bad_request", 'body must be {"data": <json>}');
  return { data: body.data.data, ...(key === undefined ? {} : { key }) };
}

async function readKick(request: Request): Promise<KickBody | Failure> {
  const usage = 'body must be {"user": "<id>", "banSec"?: 0..604800, "reason"?: "<at most 200 characters>"}';
  const json = await readJson(request, MAX_KICK_BODY_BYTES, `body is not JSON; ${usage}`);
  if (isFailure(json)) return json;
  const body = KickBody.safeParse(json.raw);
  if (!body.success) {
    const issue = body.error.issues[0];
    const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
    return failure("bad_request", `${issue?.message ?? "invalid body"}${where}; ${usage}`);
  }
  return body.data;
}

/** The body parsed as JSON, or why not: `too_large` past `max` bytes, or `notJson` as a `bad_request`. */
async function readJson(request: Request, max: number, notJson: string): Promise<{ raw: unknown } | Failure> {
  const text = await readAtMost(request, max);
  if (text === undefined) return failure("too_large", `body exceeds ${max} bytes`);
  try {
    return { raw: JSON.parse(text) as unknown };
  } catch {
    return failure("bad_request", notJson);
  }
}

/**
 * The body as text, or undefined once it passes `max` bytes. Read in chunks and abandoned at
 * the limit: a chunked body declares no length, and request.text() would buffer all of it
 * (up to the platform's 100 MB) before the size check could refuse it.
 */
async function readAtMost(request: Request, max: number): Promise<string | undefined> {
  if (!request.body) return "";
  // A request body is bytes; the Workers types leave its stream's chunks `any`.
  const reader = request.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/**
 * The room name as the client meant it: clients percent-encode the path segment (the SDK uses
 * encodeURIComponent, which turns `a:b` into `a%3Ab`), so the name is checked after decoding.
 * A malformed encoding becomes "", which the room-name check refuses in its turn.
 */
function decodeRoom(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return "";
  }
}

/** Query parameters, with empty values treated as absent (`?before=` means no bound). */
function nonEmptyParams(url: URL, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = url.searchParams.get(n);
    if (v !== null && v !== "") out[n] = v;
  }
  return out;
}
