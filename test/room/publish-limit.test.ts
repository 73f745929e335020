// HTTP publish is rate limited per (room, sender) by the room itself: a burst of
// PUBLISH_BURST, then PUBLISH_RATE_PER_SEC (this pool: 150, then 2/s). A refused publish is
// 429 rate_limited with Retry-After and is not stored; other senders and rooms are untouched.
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { expectFailure } from "../support/edge";
import { call } from "../support/http";
import { tokenFor } from "../support/tokens";

const BURST = Number(env.PUBLISH_BURST);

async function post(room: string, token: string, data: unknown, key?: string) {
  return call("POST", `/rooms/${room}/messages`, {
    token,
    body: { data },
    ...(key === undefined ? {} : { headers: { "idempotency-key": key } }),
  });
}

/** Publishes until the first refusal (at most `max` tries): how many were accepted, and the refusal. */
async function drain(room: string, token: string, max = 4 * BURST) {
  for (let accepted = 0; accepted < max; accepted++) {
    const res = await post(room, token, accepted);
    if (res.status !== 201) return { accepted, refused: res };
  }
  throw new Error(`${max} publishes accepted: no rate limit`);
}

// A few hundred publishes each, one at a time through the Worker: more than the default 5 s on a busy machine.
describe("POST /rooms/:room/messages rate limit", { timeout: 30_000 }, () => {
  it("accepts a burst, then answers 429 rate_limited with Retry-After and stores nothing", async () => {
    const room = "limit-burst";
    const token = await tokenFor("pub", room);
    const { accepted, refused } = await drain(room, token);
    // The bucket refills (slowly) while the burst is in flight: at least the burst got through.
    expect(accepted).toBeGreaterThanOrEqual(BURST);
    expect(refused.status).toBe(429);
    await expectFailure(new Response(refused.text, { status: refused.status, headers: refused.headers }), 429, "rate_limited");
    const retryAfter = refused.headers.get("retry-after");
    expect(retryAfter).toMatch(/^[1-9]\d*$/);
    expect(Number(retryAfter)).toBeLessThanOrEqual(1); // one token at 2/s is at most 0.5 s away
    const stats = (await call("GET", `/rooms/${room}/stats`, { token })).json;
    expect(stats).toMatchObject({ seq: accepted, published: accepted, rateLimited: 1 });
  });

  it("limits each sender in each room on its own, and answers an idempotent replay without a token", async () => {
    const room = "limit-senders";
    const token = await tokenFor("pub", room);
    const first = await post(room, token, "first", "k1");
    expect(first.status).toBe(201);
    await drain(room, token);
    // A replay publishes nothing, so it costs nothing and is answered while the sender is limited.
    // Several in a row: a token refilled meanwhile (one per 0.5 s) could hide a charge for one.
    for (let i = 0; i < 5; i++) {
      const replay = await post(room, token, "first", "k1");
      expect({ status: replay.status, json: replay.json }).toEqual({ status: 201, json: first.json });
    }

    const other = await post(room, await tokenFor("other", room), "hi");
    expect(other.status).toBe(201);
    const elsewhere = "limit-senders-2";
    expect((await post(elsewhere, await tokenFor("pub", elsewhere), "hi")).status).toBe(201);
  });

  it("accepts the sender again once a token has refilled", async () => {
    const room = "limit-refill";
    const token = await tokenFor("pub", room);
    await drain(room, token);
    // Refused attempts take nothing: polling until one is accepted waits out one refill.
    await vi.waitFor(async () => expect((await post(room, token, "again")).status).toBe(201), { timeout: 5_000, interval: 100 });
  });
});
