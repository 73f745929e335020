import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RoomError } from "../../src/client/errors";
import { Outbox } from "../../src/client/outbox";

/** A send that writes at once, as the pacer does when a token is free. */
const writeTo =
  (wire: string[] = []) =>
  (text: string, written: () => void) => {
    wire.push(text);
    written();
  };
const sent = (texts: string[]) => texts.map((t) => JSON.parse(t) as { type: string; data: unknown; id: string });

describe("outbox: bounded, ordered, sent once, settled by echo", () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it("sends queued publishes in order, each exactly once", () => {
    const box = new Outbox({ idPrefix: "p" });
    for (const n of [1, 2, 3]) void box.add({ n });
    const wire: string[] = [];
    box.flush(writeTo(wire));
    box.flush(writeTo(wire));
    expect(sent(wire)).toEqual([
      { type: "publish", data: { n: 1 }, id: "p.1" },
      { type: "publish", data: { n: 2 }, id: "p.2" },
      { type: "publish", data: { n: 3 }, id: "p.3" },
    ]);
  });

  it("is bounded: beyond the limit a publish rejects at once with outbox_full", async () => {
    const box = new Outbox({ limit: 2 });
    void box.add(1);
    void box.add(2);
    await expect(box.add(3)).rejects.toMatchObject({ code: "outbox_full" });
    expect(box.size).toBe(2);
  });

  it("resolves with the echo's seq; a second echo with the same id changes nothing", async () => {
    const box = new Outbox({ idPrefix: "p" });
    const p = box.add("hi");
    box.flush(writeTo());
    expect(box.echo("p.1", 7)).toBe(true);
    expect(box.echo("p.1", 8)).toBe(false);
    await expect(p).resolves.toBe(7);
    expect(box.size).toBe(0);
  });

  it("ignores an echo or error for a publish that was never sent", () => {
    const box = new Outbox({ idPrefix: "p" });
    void box.add("hi");
    expect(box.echo("p.1", 1)).toBe(false);
    expect(box.error("p.1", new RoomError("bad_request", "x"))).toBe(false);
    expect(box.size).toBe(1);
  });

  it("rejects with the error frame's code", async () => {
    const box = new Outbox({ idPrefix: "p" });
    const p = box.add("hi");
    box.flush(writeTo());
    box.error("p.1", new RoomError("rate_limited", "slow down"));
    await expect(p).rejects.toMatchObject({ code: "rate_limited" });
  });

  it("rejects with timeout when no echo arrives within ackTimeoutMs of sending", async () => {
    const box = new Outbox({ ackTimeoutMs: 1000 });
    const p = box.add("hi");
    const caught = p.catch((e: RoomError) => e.code);
    vi.advanceTimersByTime(5000); // waiting unsent does not count
    expect(box.size).toBe(1);
    box.flush(writeTo());
    vi.advanceTimersByTime(999);
    expect(box.size).toBe(1);
    vi.advanceTimersByTime(1);
    expect(await caught).toBe("timeout");
  });

  it("keeps what was sent on a dropped socket in doubt: the replay's echo resolves it, else connection_lost", async () => {
    const box = new Outbox({ idPrefix: "p" });
    const a = box.add("a");
    const b = box.add("b");
    box.flush(writeTo());
    const c = box.add("c"); // published while offline
    box.disconnected();
    box.echo("p.1", 4); // a's echo arrives in the resume replay
    const wire: string[] = [];
    box.flush(writeTo(wire));
    box.settleInDoubt();
    await expect(a).resolves.toBe(4);
    await expect(b).rejects.toMatchObject({ code: "connection_lost" });
    expect(sent(wire).map((f) => f.id)).toEqual(["p.3"]); // b is not sent twice
    box.echo("p.3", 5);
    await expect(c).resolves.toBe(5);
  });

  it("rejects everything, queued included, when the client closes", async () => {
    const box = new Outbox();
    const a = box.add("a");
    box.flush(writeTo());
    const b = box.add("b");
    box.rejectAll(new RoomError("closed", "bye"));
    await expect(a).rejects.toMatchObject({ code: "closed" });
    await expect(b).rejects.toMatchObject({ code: "closed" });
    expect(box.size).toBe(0);
  });

  it("rejects data that cannot be serialized without queueing it", async () => {
    const box = new Outbox();
    await expect(box.add(10n)).rejects.toMatchObject({ code: "bad_request" });
    await expect(box.add(undefined)).rejects.toMatchObject({ code: "bad_request" });
    expect(box.size).toBe(0);
  });

  it("rejects at once with too_large a publish whose frame exceeds the room's limit, counted in UTF-8 bytes with its id", async () => {
    const box = new Outbox({ idPrefix: "p" });
    // "é" is 2 bytes in UTF-8: the frame is `length + 10` bytes, one more than allowed.
    box.maxBytes = JSON.stringify({ type: "publish", data: "é".repeat(10), id: "p.1" }).length + 9;
    await expect(box.add("é".repeat(10))).rejects.toMatchObject({ code: "too_large" });
    const fits = box.add("e".repeat(10));
    expect(box.size).toBe(1);
    box.flush(writeTo());
    box.echo("p.2", 1);
    await expect(fits).resolves.toBe(1);
  });

  it("checks a publish queued before the limit was known when it is flushed, and writes nothing of it", async () => {
    const box = new Outbox({ idPrefix: "p" });
    const big = box.add("x".repeat(500));
    const small = box.add("y");
    box.maxBytes = 256;
    const wire: string[] = [];
    box.flush(writeTo(wire));
    await expect(big).rejects.toMatchObject({ code: "too_large" });
    expect(sent(wire).map((f) => f.id)).toEqual(["p.2"]);
    box.echo("p.2", 1);
    await expect(small).resolves.toBe(1);
  });

  it("queues again, not in doubt, a publish still waiting for a token when the socket drops; its timeout starts when written", async () => {
    const box = new Outbox({ idPrefix: "p", ackTimeoutMs: 1000 });
    const a = box.add("a");
    box.flush(() => {}); // handed to the pacer, never written
    expect(box.echo("p.1", 1)).toBe(false); // nothing about an unwritten frame can be its echo
    vi.advanceTimersByTime(5000);
    box.disconnected();
    box.settleInDoubt();
    const wire: string[] = [];
    box.flush(writeTo(wire)); // the next connection
    expect(sent(wire).map((f) => f.id)).toEqual(["p.1"]);
    box.echo("p.1", 3);
    await expect(a).resolves.toBe(3);
  });
});
