// HTTP answers and failures, for the Worker and the rooms alike: every failure is `{"error":{"code","message"}}`.
import type { ErrorCode, HttpError } from "./protocol";

export function json(body: unknown, status = 200, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/json; charset=utf-8");
  h.set("cache-control", "no-store");
  return new Response(JSON.stringify(body), { status, headers: h });
}

export const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  banned: 403,
  not_found: 404,
  too_large: 413,
  rejected: 422,
  // Only ever a subscription's refusal on /connect, never an HTTP answer.
  too_many_rooms: 409,
  upgrade_required: 426,
  rate_limited: 429,
  internal: 500,
  misconfigured: 500,
  auth_not_configured: 503,
  auth_unavailable: 503,
};

/** A protocol-edge failure as a value: the code picks the status. */
export interface Failure {
  code: ErrorCode;
  message: string;
  /** Seconds until a retry can succeed, sent as Retry-After (temporary failures only). */
  retryAfterSec?: number;
}

export function isFailure(x: unknown): x is Failure {
  return typeof x === "object" && x !== null && "code" in x && "message" in x;
}

export function failure(code: ErrorCode, message: string, retryAfterSec?: number): Failure {
  return retryAfterSec === undefined ? { code, message } : { code, message, retryAfterSec };
}

/** The failure as its HTTP answer; `status` overrides the code's own where one code has two (`rejected`: 422 for a publish, 403 for a join). */
export function errorResponse(f: Failure, headers?: HeadersInit, status = STATUS[f.code]): Response {
  const body: HttpError = { error: { code: f.code, message: f.message } };
  const h = new Headers(headers);
  if (f.code === "unauthorized") h.set("www-authenticate", 'Bearer realm="edgerooms"');
  if (f.code === "upgrade_required") h.set("upgrade", "websocket");
  if (f.retryAfterSec !== undefined) h.set("retry-after", String(f.retryAfterSec));
  return json(body, status, h);
}

/** A refused join (the upgrade, or the SDK's probe of it): a hook's `rejected` is final, so 403 like `forbidden`. */
export function joinRefusal(f: Failure): Response {
  return errorResponse(f, undefined, f.code === "rejected" ? 403 : STATUS[f.code]);
}
