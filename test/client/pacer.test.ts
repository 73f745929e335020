// The client's mirror of the room's token bucket: frames wait for a token, in order, instead of
// being refused by the room (security review, defect 7).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Pacer } from "../../src/client/pacer";

beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

function pacer(limits: { ratePerSec: number; burst: number } | undefined) {
  const wire: string[] = [];
  const p = new Pacer((t) => wire.push(t));
  p.start(limits);
  return { p, wire };
}

describe("pacer", () => {
  it("writes a burst at once, keeping one token in reserve for jitter, then one frame per 1/rate, in order", () => {
    const { p, wire } = pacer({ ratePerSec: 10, burst: 20 });
    for (let i = 0; i < 25; i++) p.send(String(i));
    expect(wire).toHaveLength(19);
    vi.advanceTimersByTime(99);
    expect(wire).toHaveLength(19);
    vi.advanceTimersByTime(1);
    expect(wire).toHaveLength(20);
    vi.advanceTimersByTime(500);
    expect(wire).toEqual(Array.from({ length: 25 }, (_, i) => String(i)));
  });

  it("holds a timer only while something waits", () => {
    const { p, wire } = pacer({ ratePerSec: 10, burst: 2 });
    p.send("a");
    expect(vi.getTimerCount()).toBe(0);
    p.send("b");
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(100);
    expect(wire).toEqual(["a", "b"]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("calls `written` when the frame is written, not when it is queued", () => {
    const { p } = pacer({ ratePerSec: 10, burst: 1 });
    const written: string[] = [];
    p.send("a", () => written.push("a"));
    p.send("b", () => written.push("b"));
    expect(written).toEqual(["a"]);
    vi.advanceTimersByTime(100);
    expect(written).toEqual(["a", "b"]);
  });

  it("replaces a waiting frame sent again with the same key, in its place", () => {
    const { p, wire } = pacer({ ratePerSec: 10, burst: 1 });
    p.send("first");
    p.send('{"typing":true}', undefined, "presence");
    p.send("publish");
    p.send('{"typing":false}', undefined, "presence");
    vi.advanceTimersByTime(1000);
    expect(wire).toEqual(["first", '{"typing":false}', "publish"]);
  });

  it("drops what waits when the connection stops, and starts the next one with a full bucket", () => {
    const { p, wire } = pacer({ ratePerSec: 10, burst: 3 });
    const written: string[] = [];
    for (const t of ["a", "b", "c"]) p.send(t, () => written.push(t));
    p.stop();
    vi.advanceTimersByTime(1000);
    expect(wire).toEqual(["a", "b"]);
    expect(written).toEqual(["a", "b"]);
    expect(vi.getTimerCount()).toBe(0);
    p.start({ ratePerSec: 10, burst: 3 });
    p.send("c");
    p.send("d");
    expect(wire).toEqual(["a", "b", "c", "d"]);
  });

  it("paces nothing when the room advertised no limits", () => {
    const { p, wire } = pacer(undefined);
    for (let i = 0; i < 100; i++) p.send(String(i));
    expect(wire).toHaveLength(100);
  });
});
