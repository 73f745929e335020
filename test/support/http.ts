// HTTP calls through the real Worker, for the routes that are not sockets.
import { exports } from "cloudflare:workers";
import { expect } from "vitest";
import { tokenFor } from "./tokens";

export async function call(method: string, path: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const res = await exports.default.fetch(`http://rooms.test${path}`, {
    method,
    headers,
    body: opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body),
  });
  const text = await res.text();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever the route answered: tests read it field by field and expect() judges it
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, headers: res.headers, text };
}

/** Publishes `count` messages over HTTP (not subject to a socket's rate limit): data 0..count-1 from `from`. */
export async function fill(room: string, count: number, from = 0): Promise<void> {
  const token = await tokenFor("server", room, ["publish"]);
  for (let i = from; i < from + count; i++) {
    const r = await call("POST", `/rooms/${room}/messages`, { token, body: { data: i } });
    if (r.status !== 201) throw new Error(`publish failed: ${r.status} ${r.text}`);
  }
}

/**
 * How a room refuses a banned user, on an upgrade or any HTTP route, as `{status, body, retryAfter}`:
 * 403 `banned`, with the seconds the ban has left (1..banSec) in the message and in Retry-After.
 */
export function bannedAnswer(uid: string, banSec: number) {
  const left = `[1-${banSec}]`;
  const message = new RegExp(`^user ${uid} is banned from this room for ${left} more seconds$`);
  return {
    status: 403,
    body: { error: { code: "banned", message: expect.stringMatching(message) } },
    retryAfter: expect.stringMatching(new RegExp(`^${left}$`)),
  };
}
