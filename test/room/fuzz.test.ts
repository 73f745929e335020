// Hostile frames, property-based (issue #6). Thousands of generated frames that the room must
// reject are thrown at one room while an observer listens. Per frame: exactly one error with the
// right code (or, past 100 rejections in 10 s, a 1008 close); nothing reaches anyone else; and
// afterwards the room still works: a well-behaved client's messages all arrive, in seq order.
//
// The default rate limit (10/s, burst 20 per connection) shapes the runs: the per-frame property
// gives each batch a fresh connection and stays within the burst, so every answer is the frame's
// own; the abuse property floods one connection past the limit on purpose.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anyCodeUnit, expectedCode, hostileFrame, type Hostile } from "../support/hostile-frames";
import { request } from "../support/edge";
import type { ServerFrame } from "../../src/protocol";
import { connect, type TestSocket } from "../support/socket";
import { tokenFor } from "../support/tokens";

const ROOM = `fuzz-${Date.now().toString(36)}`;
const BURST = 20;
const PER_FRAME_RUNS = 500;
const ABUSE_RUNS = 15;
// Report the first counterexample as found: shrinking opens a fresh connection per attempt, which
// outlasts the test's timeout and hides the failure behind it. Each frame's kind names it anyway.
const FC = { endOnFailure: true } as const;

const sent = { frames: 0, connections: 0, byKind: new Map<string, number>(), byCode: new Map<string, number>(), rejected: 0, rateLimited: 0 };
let observer: TestSocket;
let keepAlive: ReturnType<typeof setInterval>;
let fuzzers = 0;

function send(s: TestSocket, h: Hostile): void {
  s.ws.send(h.payload);
  sent.frames++;
  sent.byKind.set(h.kind, (sent.byKind.get(h.kind) ?? 0) + 1);
  sent.byCode.set(expectedCode(h), (sent.byCode.get(expectedCode(h)) ?? 0) + 1);
}

/** A fresh connection with every capability, so no frame is refused for want of one. */
async function fuzzer(): Promise<{ s: TestSocket; user: string; seq: number }> {
  const user = `fuzzer-${fuzzers++}`;
  const s = await connect(ROOM, { token: await tokenFor(user, ROOM) });
  const { seq } = await s.next("welcome");
  sent.connections++;
  return { s, user, seq };
}

const errorsOf = (s: TestSocket) => s.frames.filter((f) => f.type === "error");
/** Other fuzzers coming and going: the only frames besides answers that a fuzzer may see. */
const isJoinOrLeave = (f: ServerFrame) => f.type === "presence" && f.event !== "update";

beforeAll(async () => {
  observer = await connect(ROOM, { token: await tokenFor("observer", ROOM) });
  await observer.next("welcome");
  // The room project's idle timeout is 2 s; the observer must outlive the whole suite.
  keepAlive = setInterval(() => observer.send("ping"), 500);
});

afterAll(() => {
  clearInterval(keepAlive);
  observer.close();
  const kinds = [...sent.byKind.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`);
  console.log(
    `fuzz: ${sent.frames} hostile frames over ${sent.connections} connections ` +
      `(${sent.rejected} answered with their own error, ${sent.rateLimited} rate_limited, ${sent.frames - sent.rejected - sent.rateLimited} sent after a 1008 close and ignored; ` +
      `expected ${[...sent.byCode].map(([c, n]) => `${c} ${n}`).join(", ")})\n  ${kinds.join("\n  ")}`,
  );
});

describe("hostile frames (property-based)", () => {
  it(`answers every hostile frame with exactly one error of the right code (${PER_FRAME_RUNS} batches of 8 to ${BURST - 1})`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostileFrame, { minLength: 8, maxLength: BURST - 1 }), async (batch) => {
        const { s, user, seq } = await fuzzer();
        try {
          for (const h of batch) send(s, h);
          // A valid frame after the batch, answered to the sender only: once its answer is in,
          // every answer to the batch is in (the room handles a socket's frames in order).
          s.send({ type: "history", limit: 1, id: `sentinel-${user}` });
          const page = await s.next("history", (f) => f.id === `sentinel-${user}`, 5000);
          // Nothing was published: the newest stored message is still the one from before the batch.
          expect(page.messages.map((m) => m.seq)).toEqual(seq === 0 ? [] : [seq]);

          const errors = errorsOf(s);
          expect(errors).toHaveLength(batch.length);
          batch.forEach((h, i) => {
            const code = expectedCode(h);
            const want = { code, ...(code === "bad_request" && h.id !== undefined ? { id: h.id } : {}) };
            const got = { code: errors[i]!.code, ...(errors[i]!.id === undefined ? {} : { id: errors[i]!.id }) };
            expect(got, `frame ${i} (${h.kind}): ${describe_(h)}`).toEqual(want);
          });
          sent.rejected += batch.length;
          expect(s.frames.filter((f) => !["welcome", "error", "history"].includes(f.type) && !isJoinOrLeave(f))).toEqual([]);
          expect(s.isClosed()).toBe(false);
        } finally {
          s.close();
        }
      }),
      { ...FC, numRuns: PER_FRAME_RUNS },
    );
    // Generous: under CI's parallel projects a batch's connect-and-answer took ~53 ms, against ~35 ms alone.
  }, 120_000);

  it(`closes a connection with 1008 at its 101st rejected frame, answering each one until then (${ABUSE_RUNS} floods)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostileFrame, { minLength: 101, maxLength: 130 }), async (flood) => {
        const { s } = await fuzzer();
        for (const h of flood) send(s, h);
        const closed = await Promise.race([s.closed, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
        expect(closed?.code).toBe(1008);

        const errors = errorsOf(s);
        expect(errors).toHaveLength(101);
        errors.forEach((e, i) => {
          const code = expectedCode(flood[i]!);
          // The first BURST frames always find a token; later ones may be rate-limited.
          if (i < BURST) expect(e.code, `frame ${i}: ${describe_(flood[i]!)}`).toBe(code);
          else expect([code, "rate_limited"], `frame ${i}: ${describe_(flood[i]!)}`).toContain(e.code);
        });
        const limited = errors.filter((e) => e.code === "rate_limited").length;
        sent.rateLimited += limited;
        sent.rejected += errors.length - limited;
        expect(s.frames.filter((f) => !["welcome", "error"].includes(f.type) && !isJoinOrLeave(f))).toEqual([]);
      }),
      { ...FC, numRuns: ABUSE_RUNS },
    );
  }, 60_000);
});

describe("after the fuzzing", () => {
  it("threw every kind of hostile frame, and frames due both answers", () => {
    const kinds = [...sent.byKind.keys()].map((k) => k.replace(/:.*/, ""));
    for (const kind of [
      "random text",
      "binary",
      "malformed JSON",
      "deep nesting",
      "wrong schema",
      "JSON that is not a frame object",
      "huge number or string",
    ]) {
      expect(kinds, kind).toContain(kind);
    }
    expect(sent.byCode.get("too_large") ?? 0).toBeGreaterThan(0);
    expect(sent.byCode.get("bad_request") ?? 0).toBeGreaterThan(0);
  });

  it("delivered nothing from the fuzzers to the observer", async () => {
    // A marker through the room proves the observer is still connected and caught up.
    observer.send({ type: "presence", state: { marker: true } });
    await observer.next("presence", (f) => f.event === "update" && f.user.id === "observer");
    const leaked = observer.frames.filter(
      (f) =>
        f.type === "message" ||
        f.type === "direct" ||
        f.type === "error" ||
        (f.type === "presence" && f.event === "update" && f.user.id !== "observer"),
    );
    expect(leaked).toEqual([]);
    expect(observer.isClosed()).toBe(false);
  });

  it("still works: a well-behaved client publishes and everyone receives every message in seq order", async () => {
    const N = BURST;
    const good = await connect(ROOM, { token: await tokenFor("good", ROOM) });
    const welcome = await good.next("welcome");
    expect(welcome.seq).toBe(0); // no hostile frame was ever published
    for (let i = 0; i < N; i++) good.send({ type: "publish", data: { i }, id: `g${i}` });
    for (const s of [good, observer]) {
      const msgs = await s.collect("message", N, 5000);
      expect(msgs.map((m) => m.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
      expect(msgs.map((m) => m.id)).toEqual(Array.from({ length: N }, (_, i) => `g${i}`));
    }
    expect(errorsOf(good)).toEqual([]);
    good.close();
  });

  it("counted every rejection, and published only the well-behaved client's messages", async () => {
    const res = await request(`/rooms/${ROOM}/stats?token=${await tokenFor("admin", ROOM, ["admin"])}`);
    expect(await res.json()).toMatchObject({ seq: BURST, published: BURST, rejected: sent.rejected, rateLimited: sent.rateLimited });
  });
});

describe("odd but valid frames", () => {
  it("delivers any string, lone surrogates included (JSON-escaped), back exactly as sent", async () => {
    const room = `${ROOM}-strings`;
    let delivered = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.string({ unit: anyCodeUnit, maxLength: 100 }), { minLength: 1, maxLength: BURST }), async (strings) => {
        const s = await connect(room, { token: await tokenFor(`writer-${fuzzers++}`, room) });
        try {
          await s.next("welcome");
          // JSON.stringify escapes a lone surrogate as \udXXX, so the frame is valid UTF-8.
          strings.forEach((data, i) => s.send(JSON.stringify({ type: "publish", data, id: `s${i}` })));
          const echoes = await s.collect("message", strings.length, 5000);
          expect(echoes.map((m) => m.data)).toEqual(strings);
          expect(errorsOf(s)).toEqual([]);
          delivered += strings.length;
        } finally {
          s.close();
        }
      }),
      { numRuns: 40 },
    );
    console.log(`odd strings: ${delivered} published and echoed exactly`);
  }, 30_000);
});

function describe_(h: Hostile): string {
  const p = typeof h.payload === "string" ? JSON.stringify(h.payload) : `<${h.payload.byteLength} bytes>`;
  return p.length > 300 ? `${p.slice(0, 300)}… (${p.length} chars)` : p;
}
