import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Backoff } from "../../src/client/backoff";

describe("backoff: exponential windows with full jitter", () => {
  it("draws every delay from [0, min(cap, base·2^attempt))", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { maxLength: 40 }), (rolls) => {
        let i = 0;
        const b = new Backoff({ random: () => rolls[i++]! });
        rolls.forEach((_, n) => {
          const delay = b.next();
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThan(Math.min(30_000, 500 * 2 ** n));
        });
      }),
    );
  });

  it("doubles the window from 0.5 s up to the 30 s cap", () => {
    const b = new Backoff({ random: () => 0.999999 });
    const delays = Array.from({ length: 10 }, () => b.next());
    expect(delays).toEqual([499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999]);
  });

  it("is jittered: the same attempt spreads over its whole window", () => {
    const low = new Backoff({ random: () => 0 });
    const mid = new Backoff({ random: () => 0.5 });
    for (let n = 0; n < 3; n++) {
      low.next();
      mid.next();
    }
    expect(low.next()).toBe(0);
    expect(mid.next()).toBe(2000);
  });

  it("resets after a connection that stayed up for stableMs, not after a short one", () => {
    const b = new Backoff({ random: () => 0.999999, stableMs: 10_000 });
    for (let n = 0; n < 5; n++) b.next();
    b.opened(1_000);
    b.closed(5_000); // 4 s: a server that accepts then drops is still backed off from
    expect(b.attempt).toBe(5);
    expect(b.next()).toBe(15_999);
    b.opened(20_000);
    b.closed(30_000);
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(499);
  });

  it("rejects a cap below the base", () => {
    expect(() => new Backoff({ baseMs: 1000, capMs: 10 })).toThrow(RangeError);
  });
});
