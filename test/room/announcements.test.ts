// Presence while users churn (announcements.ts): in a wide room, announcements that follow each
// other closely are held and sent together, yet every client's view of who is here stays exact:
// each event once, in order, none it already knew from its welcome, none after it left, and
// every event before any later message.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Announcements, holdMs } from "../../src/room/announcements";
import { MIN_BATCH_FANOUT, Outbox } from "../../src/room/outbox";
import { presenceView } from "../support/presence-view";
import { connect, type TestSocket } from "../support/socket";
import { tokenFor } from "../support/tokens";

const stubFor = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));

async function join(room: string, user: string): Promise<TestSocket> {
  const s = await connect(room, { token: await tokenFor(user, room) });
  await s.next("welcome");
  return s;
}

describe("presence under churn", () => {
  it("coalesces a wide room's churn into few messages, and every client's view stays exact and in order", async () => {
    const room = "churn";
    const socks = new Map<string, TestSocket>();
    // One at a time, so the only coalescing is the held announcements' (not the outbox's bursts).
    // Whether two joins fall within one hold window depends on this machine's pace, so the
    // message count is asserted on the leaves, which all come within one window.
    const users = Array.from({ length: MIN_BATCH_FANOUT + 16 }, (_, i) => `u${i}`);
    for (const u of users) socks.set(u, await join(room, u));
    // Six leave at once, right behind the joins.
    const leaving = users.slice(0, 6).map((u) => socks.get(u)!);
    for (const u of users.slice(0, 6)) socks.delete(u);
    for (const s of leaving) s.close();
    await Promise.all(leaving.map((s) => s.closed)); // the room has dropped them: the close is reciprocated from webSocketClose
    const [speaker] = [...socks.values()];
    speaker!.send({ type: "publish", data: "after the churn" });

    const everyone = new Set(socks.keys());
    for (const [user, s] of socks) {
      await s.next("message", (m) => m.data === "after the churn");
      const at = s.frames.findIndex((f) => f.type === "message");
      const { here, faults } = presenceView(s.frames.slice(0, at));
      expect(faults, user).toEqual([]);
      expect(here, `${user}'s view when the message arrived`).toEqual(everyone);
      expect(s.frames.some((f) => f.type === "presence" && f.event === "join" && f.user.id === user)).toBe(false);
    }
    // The first crowd member saw every later join and leave.
    const first = socks.get("u6")!;
    expect(first.frames.filter((f) => f.type === "presence").length).toBe(users.length - 7 + 6);
    // The last to join got nothing but its welcome, the six leaves and the message: the leaves,
    // all within one hold window, came together (the first on its own at most, after a quiet spell).
    const last = socks.get(users.at(-1)!)!;
    expect(last.frames.map((f) => f.type)).toEqual(["welcome", ...Array(6).fill("presence"), "message"]);
    expect(last.received() - 2, "WebSocket messages carrying the 6 leaves").toBeLessThanOrEqual(2);
  });

  it("sends a quiet wide room's announcement at once, on its own", async () => {
    const room = "churn-quiet";
    const crowd: TestSocket[] = [];
    for (let i = 0; i < MIN_BATCH_FANOUT; i++) crowd.push(await join(room, `q${i}`));
    const watcher = crowd[0]!;
    // Let the crowd's own arrivals go out, then stay quiet for longer than a hold window (this
    // sleep is the quiet spell under test, not a wait for an event).
    await watcher.next("presence", (p) => "user" in p && p.user.id === `q${MIN_BATCH_FANOUT - 1}`, 2000);
    await new Promise((r) => setTimeout(r, holdMs(MIN_BATCH_FANOUT + 1) * 2));
    const batches = watcher.batches();
    await join(room, "late");
    // Nothing is held: the room's alarm is not due within a hold window (a held announcement
    // would have set it there), and the join arrived on its own.
    const alarm = await runInDurableObject(stubFor(room), (_r, state) => state.storage.getAlarm());
    expect(alarm! - Date.now()).toBeGreaterThan(holdMs(MIN_BATCH_FANOUT + 1));
    await watcher.next("presence", (p) => "user" in p && p.user.id === "late");
    expect(watcher.batches()).toBe(batches);
  });
});

describe("Announcements: when to hold", () => {
  const outbox = new Outbox();
  const wide = MIN_BATCH_FANOUT;

  it("sends the first after a quiet spell, holds those within the window, and is due at its end", () => {
    const a = new Announcements(outbox);
    expect(a.hold("j1", wide, 1000)).toBe(false);
    expect(a.due).toBeNull();
    expect(a.hold("j2", wide, 1001)).toBe(true);
    expect(a.hold("j3", wide, 1002)).toBe(true);
    expect(a.due).toBe(1000 + holdMs(wide));
    a.flush([], 1000 + holdMs(wide));
    expect(a.due).toBeNull();
    expect(a.hold("j4", wide, 1001 + holdMs(wide))).toBe(true); // right after a flush: still churning
    a.flush([], 1001 + 2 * holdMs(wide));
    expect(a.hold("j5", wide, 1001 + 3 * holdMs(wide))).toBe(false); // a full window of quiet
  });

  it("never holds in a small room or with batching off", () => {
    const a = new Announcements(outbox);
    expect(a.hold("j1", wide - 1, 0)).toBe(false);
    expect(a.hold("j2", wide - 1, 1)).toBe(false);
    const off = new Outbox(false);
    const b = new Announcements(off);
    expect(b.hold("j1", wide, 0)).toBe(false);
    expect(b.hold("j2", wide, 1)).toBe(false);
  });

  it("widens the window with the room, within 25–250 ms", () => {
    expect(holdMs(MIN_BATCH_FANOUT)).toBe(25);
    expect(holdMs(100)).toBe(100);
    expect(holdMs(5000)).toBe(250);
  });
});
