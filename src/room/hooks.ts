// What a `Room` subclass may decide (edgerooms as a library): the hooks' events and decisions,
// and the one place each hook is called, so a hook that throws, hangs on a bad promise or
// returns nonsense refuses what it was asked about instead of breaking the room.
//
// Where they run: every hook runs in the room's own object: a plain room's, or a giant room's
// root (the object named by the room's name), whichever shard holds the socket. So a hook sees
// one object's `this.ctx.storage` for the whole room.
import { failure, type Failure } from "../http";
import { utf8Length, type Capability, type UserRef } from "../protocol";

/** A value, or a promise of it: every hook may be sync or async. */
export type Awaitable<T> = T | Promise<T>;

/** Where a publish came from: a socket (in a giant room, a shard's socket) or the HTTP route. */
export type Via = "socket" | "http";

/** `onPublish`'s argument: a publish, before it has a seq. */
export interface PublishEvent {
  /** the room's name */
  room: string;
  /** the payload as the publisher sent it */
  data: unknown;
  /** who publishes (the token's `sub` and `name`) */
  from: UserRef;
  via: Via;
}

/**
 * `onPublish`'s answer: nothing to accept the publish as it is, `{ data }` to store and fan out
 * that payload instead, `{ reject }` to refuse it (the publisher gets code `rejected` and the reason).
 */
export type PublishDecision = void | undefined | { data: unknown } | { reject: string };

/** `onJoin`'s argument: a user whose token and capabilities passed, before its socket is admitted. */
export interface JoinEvent {
  room: string;
  user: UserRef;
  /** what the token grants in this room (a frozen copy: the admitted socket's own are not yours to change) */
  capabilities: readonly Capability[];
  /**
   * true when no socket follows: the SDK's handshake probe (`GET /rooms/:room/join`) asks the
   * same question after a refused upgrade, to learn whether retrying can help. Skip side effects then.
   */
  probe: boolean;
}

/** `onJoin`'s answer: nothing to admit the user, `{ reject }` to refuse the upgrade (403 `rejected`). */
export type JoinDecision = void | undefined | { reject: string };

/** `onLeave`'s argument: a user whose last connection to the room has gone. */
export interface LeaveEvent {
  room: string;
  user: UserRef;
}

/** The hooks a `Room` subclass may define; every one optional, sync or async. */
export interface RoomHooks {
  onPublish?(event: PublishEvent): Awaitable<PublishDecision>;
  onJoin?(event: JoinEvent): Awaitable<JoinDecision>;
  onLeave?(event: LeaveEvent): Awaitable<void>;
}

/** A refusal's reason as sent (the error frame's and the HTTP body's message). */
const MAX_REASON = 500;

/** A rewritten payload's JSON may be at most this many bytes, or MAX_MESSAGE_BYTES if larger. */
const MAX_REWRITE_BYTES = 65_536;

/** What a publish becomes: stored with this payload, or refused. */
export type Verdict = { data: unknown } | Failure;

/**
 * `onPublish`'s decision about `data`, checked: a rejection's reason must be a string, a
 * rewrite must be JSON within the size limit. Anything else (a throw included) is `internal`,
 * logged with the room's name, because it is the hook's bug and not the publisher's.
 */
export function publishVerdict(room: string, data: unknown, decision: unknown, maxBytes: number): Verdict {
  if (decision === undefined || decision === null) return { data };
  if (typeof decision === "object" && "reject" in decision) {
    const reason = decision.reject;
    if (typeof reason === "string") return failure("rejected", reason.slice(0, MAX_REASON) || "rejected by the room");
    return hookBug(room, "onPublish", `returned a reject that is not a string but ${describe(reason)}`);
  }
  if (typeof decision === "object" && "data" in decision) {
    const next = decision.data;
    let text: string | undefined;
    try {
      text = JSON.stringify(next);
    } catch (err) {
      return hookBug(room, "onPublish", `returned data that is not JSON: ${String(err)}`);
    }
    if (text === undefined) return hookBug(room, "onPublish", "returned { data: undefined }; return nothing to keep the payload");
    const limit = Math.max(maxBytes, MAX_REWRITE_BYTES);
    if (text.length > limit / 3 && utf8Length(text) > limit) {
      return hookBug(room, "onPublish", `returned data of more than ${limit} bytes`);
    }
    // Serialized here only to check it: the store and the webhook serialize it again in this turn.
    return { data: next };
  }
  return hookBug(room, "onPublish", `returned ${describe(decision)}; expected nothing, { data } or { reject }`);
}

/** `onJoin`'s decision, checked like `onPublish`'s: null admits. */
function joinVerdict(room: string, decision: unknown): Failure | null {
  if (decision === undefined || decision === null) return null;
  if (typeof decision === "object" && "reject" in decision) {
    const reason = decision.reject;
    if (typeof reason === "string") return failure("rejected", reason.slice(0, MAX_REASON) || "rejected by the room");
  }
  return hookBug(room, "onJoin", `returned ${describe(decision)}; expected nothing or { reject: "reason" }`);
}

/** A hook's bug: logged where the room's operator looks, and answered as `internal`. */
export function hookBug(room: string, hook: string, what: unknown): Failure {
  console.error(`edgerooms: ${hook} in room ${room} failed:`, what);
  return failure("internal", `the room's ${hook} hook failed`);
}

/**
 * Calls a hook and `decide`s on its answer; a throw (of either), a rejected promise or no answer
 * within `timeoutMs` (HOOK_TIMEOUT_MS) becomes `failed(err)`, so nothing a hook does escapes: a
 * promise that never settles cannot stop a room, whose every publish waits for the decision
 * before it. An answer given at once is decided at once: a sync hook costs no promise.
 */
export function callHook<T, R>(call: () => Awaitable<T>, decide: (value: T) => R, failed: (err: unknown) => R, timeoutMs: number): R | Promise<R> {
  let value: Awaitable<T>;
  try {
    value = call();
  } catch (err) {
    return failed(err);
  }
  if (!isPromise(value)) return guarded(decide, value, failed);
  return withDeadline(Promise.resolve(value), timeoutMs).then((v) => guarded(decide, v, failed), failed);
}

function guarded<T, R>(decide: (value: T) => R, value: T, failed: (err: unknown) => R): R {
  try {
    return decide(value);
  } catch (err) {
    return failed(err);
  }
}

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => timer !== undefined && clearTimeout(timer));
}

/** A hook's answer in a log line, whatever it is (a BigInt or a cycle does not serialize). */
function describe(x: unknown): string {
  try {
    return JSON.stringify(x) ?? typeof x;
  } catch {
    return `a ${typeof x} that is not JSON`;
  }
}

function isPromise<T>(x: Awaitable<T>): x is Promise<T> {
  return typeof (x as { then?: unknown } | null)?.then === "function";
}

/**
 * The names edgerooms calls on a room itself (its RPC methods, between the Worker, roots and
 * shards): a subclass that defines one would break the room unseen, so it is refused as the object
 * starts, by name. The runtime's handlers (fetch, alarm, webSocket*) may be extended, calling super.
 */
export function reservedOverrides(room: object, base: object, allowed: ReadonlySet<string>): string[] {
  const reserved = Object.getOwnPropertyNames(base).filter((name) => !allowed.has(name));
  const clashes: string[] = [];
  for (let proto = Object.getPrototypeOf(room) as object | null; proto && proto !== base; proto = Object.getPrototypeOf(proto) as object | null) {
    for (const name of reserved) if (Object.prototype.hasOwnProperty.call(proto, name)) clashes.push(name);
  }
  return clashes;
}

/** `onJoin`'s answer about `user`, checked: null admits. It gets copies, so what it does to them cannot reach the admitted socket (a giant room's root gets copies too). */
export function askJoin(
  hooks: RoomHooks,
  room: string,
  user: UserRef,
  caps: readonly Capability[],
  probe: boolean,
  timeoutMs: number,
): Awaitable<Failure | null> {
  return callHook(
    () => hooks.onJoin!({ room, user: { ...user }, capabilities: Object.freeze([...caps]), probe }),
    (decision) => joinVerdict(room, decision),
    (err) => hookBug(room, "onJoin", err),
    timeoutMs,
  );
}

/** Tells `onLeave`; what it does is only logged if it fails. Returns its promise, if it has one, for the room to wait on. */
export function tellLeave(hooks: RoomHooks, room: string, user: UserRef, timeoutMs: number): Promise<void> | undefined {
  const done = callHook(
    () => hooks.onLeave!({ room, user }),
    () => undefined,
    (err) => void hookBug(room, "onLeave", err),
    timeoutMs,
  );
  return done instanceof Promise ? done : undefined;
}
