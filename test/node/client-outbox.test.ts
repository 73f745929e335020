import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RoomError } from "../../src/client/errors";
import { Outbox } from "../../src/client/outbox";

const sent = (texts: string[]) => texts.map((t) => JSON.parse(t) as { type: string; data: unknown; id: string });

describe("outbox: bounded, ordered, sent once, settled by echo", () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it("sends queued publishes in order, each exactly once", () => {
    const box = new Outbox({ idPrefix: "p" });
    for (const n of [1, 2, 3]) void box.add({ n });
    const wire: string[] = [];
    box.flush((t) => wire.push(t));
    box.flush((t) => wire.push(t));
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
    box.flush(() => {});
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
    box.flush(() => {});
    box.error("p.1", new RoomError("rate_limited", "slow down"));
    await expect(p).rejects.toMatchObject({ code: "rate_limited" });
  });

  it("rejects with timeout when no echo arrives within ackTimeoutMs of sending", async () => {
    const box = new Outbox({ ackTimeoutMs: 1000 });
    const p = box.add("hi");
    const caught = p.catch((e: RoomError) => e.code);
    vi.advanceTimersByTime(5000); // waiting unsent does not count
    expect(box.size).toBe(1);
    box.flush(() => {});
    vi.advanceTimersByTime(999);
    expect(box.size).toBe(1);
    vi.advanceTimersByTime(1);
    expect(await caught).toBe("timeout");
  });

  it("keeps what was sent on a dropped socket in doubt: the replay's echo resolves it, else connection_lost", async () => {
    const box = new Outbox({ idPrefix: "p" });
    const a = box.add("a");
    const b = box.add("b");
    box.flush(() => {});
    const c = box.add("c"); // published while offline
    box.disconnected();
    box.echo("p.1", 4); // a's echo arrives in the resume replay
    const wire: string[] = [];
    box.flush((t) => wire.push(t));
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
    box.flush(() => {});
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
});
