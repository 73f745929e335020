import { describe, expect, it } from "vitest";
import { PresenceMap } from "../../src/client/presence";

const entry = (id: string) => ({ id, name: id, state: {}, connections: 1 });

describe("SDK presence map: lists, and counts above the room's PRESENCE_LIMIT", () => {
  it("counts the list while the room lists everyone", () => {
    const p = new PresenceMap();
    p.welcome({ presence: [entry("a"), entry("b")] });
    p.apply({ type: "presence", event: "join", user: { id: "c", name: "c", state: {} } });
    expect([p.count, p.truncated, [...p.users.keys()]]).toEqual([3, false, ["a", "b", "c"]]);
  });

  it("takes the room's count from a truncated welcome and from count frames, and drops the stale list", () => {
    const p = new PresenceMap();
    p.welcome({ presence: [], presenceCount: 1200, presenceTruncated: true });
    expect([p.count, p.truncated, p.users.size]).toEqual([1200, true, 0]);
    const q = new PresenceMap();
    q.welcome({ presence: [entry("a")] });
    q.apply({ type: "presence", event: "count", count: 1001 });
    expect([q.count, q.truncated, q.users.size]).toEqual([1001, true, 0]);
  });

  it("replaces everything on sync, and lists again", () => {
    const p = new PresenceMap();
    p.welcome({ presence: [], presenceCount: 1001, presenceTruncated: true });
    p.apply({ type: "presence", event: "sync", users: [entry("x"), entry("y")] });
    expect([p.count, p.truncated, [...p.users.keys()]]).toEqual([2, false, ["x", "y"]]);
  });
});
