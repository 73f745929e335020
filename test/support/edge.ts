// Edge helpers for Workers-pool tests: raw requests through the real Worker, and the one shape
// every plain-HTTP failure must have.
import { exports } from "cloudflare:workers";
import { expect } from "vitest";
import type { ErrorCode } from "../../src/protocol";

/** A raw request to the Worker under test (the host is irrelevant; path and headers matter). */
export function request(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(`http://rooms.test${path}`, init);
}

/** Headers of a WebSocket upgrade attempt, plus any extra. */
export function upgradeHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { upgrade: "websocket", ...extra };
}

/**
 * Asserts a plain-HTTP failure: the status, and a body that is exactly
 * `{"error":{"code","message"}}` with a non-empty message. Never an upgrade.
 */
export async function expectFailure(res: Response, status: number, code: ErrorCode): Promise<void> {
  expect(res.status).not.toBe(101);
  expect(res.webSocket ?? null).toBeNull();
  const text = await res.text();
  let body: { error?: { message?: unknown } };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`failure body is not JSON: ${res.status} ${text.slice(0, 200)}`);
  }
  expect({ status: res.status, body }).toEqual({
    status,
    body: { error: { code, message: expect.any(String) } },
  });
  expect(String(body.error!.message).length).toBeGreaterThan(0);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
}

/** Asserts the answer to any request while the key server cannot be reached: 503, retry soon. */
export async function expectAuthUnavailable(res: Response): Promise<void> {
  const retryAfter = Number(res.headers.get("retry-after"));
  await expectFailure(res, 503, "auth_unavailable");
  expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`).toBe(true);
}
