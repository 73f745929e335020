// Hibernation (issue #6): a room left silent long enough to hibernate, its clients only
// pinging (answered by the runtime's auto-response), then resumed, keeps identities,
// capabilities, presence (states included), rate limits and seq continuity.
//
// That the room really was evicted is proven, not assumed: its stats count the times its object
// was started (in its storage), and the count must go up by exactly one across the silence —
// the wake-up — while every socket stays open. Under `wrangler dev`, workerd evicts a
// hibernatable room after about 10 s without an event (alarms count: the counter flush fires
// ~1 s after the last counted frame; the pings do not, the runtime answers them itself), so
// SILENCE_MS leaves a margin past that.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { presenceById, RoomClient, sleep } from "./support/client";
import { figuresFor, measured } from "./support/figures";
import { allCaps, clients, crashes, devServer, roomStats, type DevServer } from "./support/server";

const SILENCE_MS = 13_000;
const RATE = 2;
const BURST = 3;

let server: DevServer;
beforeAll(async () => {
  server = await devServer({
    RATE_LIMIT_PER_SEC: String(RATE),
    RATE_LIMIT_BURST: String(BURST),
    // long enough that no idle-sweep alarm wakes the room during the silence
    IDLE_TIMEOUT_SEC: "60",
    UPGRADE_LIMIT: "1000",
  });
});
afterAll(async () => {
  await server?.stop();
});

describe("hibernation", () => {
  it("a room silent long enough to hibernate keeps identities, presence, rate limits and seq", async () => {
    const room = "hibernation";
    const [a1, a2, dan] = await clients(server, room, ["alice", "alice", "dan"]);
    const alice = [a1!, a2!];
    const bobToken = await server.token({ sub: "bob", name: "Bob", rooms: { [room]: ["subscribe"] } });
    const bob = new RoomClient(server, room, bobToken);
    const carol = new RoomClient(server, room, await allCaps(server, "carol", room, "Carol"));
    const everyone = [...alice, dan!, bob, carol];
    const figures = figuresFor(`hibernation: ${SILENCE_MS / 1000} s of silence with pings only, then resumed`, 4);
    const extra: Record<string, number | string | boolean> = { silenceSec: SILENCE_MS / 1000, evicted: false, held: false };
    figures.extra = extra;

    await measured("hibernation", figures, async () => {
      try {
        for (const c of [...alice, dan!, bob]) await c.connect();
        a1!.send({ type: "presence", state: { typing: true } });
        await bob.next("presence", (p) => p.event === "update");
        // from a2: a1 has spent one token on its presence update and BURST is small
        for (let i = 0; i < 3; i++) a2!.publish({ before: i }, `before${i}`);
        await bob.seen(3);
        dan!.close(); // dan leaves before the silence and resumes after it
        await dan!.closed();
        await bob.next("presence", (p) => p.event === "leave" && p.user.id === "dan");
        const before = await roomStats(server, room);

        // silence: nothing but pings, which the runtime answers without waking the room
        for (const c of [...alice, bob]) c.startPinging(2_000);
        const pongsBefore = bob.texts.length;
        const framesBefore = everyone.map((c) => c.frames.length);
        await sleep(SILENCE_MS);
        const pongs = bob.texts.length - pongsBefore;
        expect(pongs, "pings were answered during the silence").toBeGreaterThanOrEqual(SILENCE_MS / 2_000 - 1);
        expect(
          everyone.map((c) => c.frames.length),
          "the room said nothing during the silence",
        ).toEqual(framesBefore);

        // seq continues, the echo carries the right identity, and every member gets it
        a2!.publish({ after: 0 }, "after0");
        const echo = await a2!.next("message", (m) => m.id === "after0");
        expect(echo.seq).toBe(before.seq + 1);
        expect(echo.from).toEqual({ id: "alice", name: "alice" });
        await Promise.all([a1!.seen(echo.seq), bob.seen(echo.seq)]);

        // the room was evicted during the silence and started again by that publish, once, with
        // the same sockets: what follows is checked against a fresh instance
        const woken = await roomStats(server, room);
        Object.assign(extra, { startsBefore: before.starts, startsAfter: woken.starts, evicted: woken.starts - before.starts === 1 });
        expect(woken.starts - before.starts, "the room's object started again after the silence").toBe(1);
        expect(woken.connections, "every socket survived the eviction").toBe(before.connections);
        for (const c of [...alice, bob]) expect(c.isOpen).toBe(true);

        // capabilities came back from the attachments: bob still may not publish
        bob.publish({ nope: true }, "bob-nope");
        expect((await bob.next("error", (e) => e.id === "bob-nope")).code).toBe("forbidden");

        // presence rebuilt from the sockets, states kept: seen by a newcomer's welcome
        const welcome = await carol.connect();
        const view = presenceById(welcome.presence);
        expect(Object.keys(view).sort()).toEqual(["alice", "bob", "carol"]);
        expect(view.alice).toMatchObject({ name: "alice", connections: 2, state: { typing: true } });
        expect(view.bob).toMatchObject({ name: "Bob", connections: 1, state: {} });
        expect(welcome.seq).toBe(echo.seq);

        // dan resumes across the hibernation: recovered, the gap replayed in order
        const resumed = await dan!.connect({ resume: true });
        figures.resumed++;
        expect(resumed.recovered).toBe(true);
        await dan!.seen(echo.seq);
        expect(dan!.seqs()).toEqual(Array.from({ length: echo.seq }, (_, i) => i + 1));

        // the rate limit still holds: a burst from one connection gets BURST through, the rest refused
        // (a rate-limited frame is refused before it is parsed, so its error carries no id)
        const burst = 4 * BURST;
        const from = a1!.frames.length;
        for (let i = 0; i < burst; i++) a1!.publish({ burst: i }, `burst${i}`);
        const replies = await a1!.until(() => {
          const mine = a1!.frames
            .slice(from)
            .filter((f) => (f.type === "message" && f.id?.startsWith("burst")) || (f.type === "error" && f.code === "rate_limited"));
          return mine.length === burst ? mine : undefined;
        }, "a reply to every burst frame");
        const accepted = replies.filter((f) => f.type === "message").length;
        const limited = replies.filter((f) => f.type === "error" && f.code === "rate_limited").length;
        expect(accepted, "a fresh bucket lets BURST frames through (plus at most one refill)").toBeGreaterThanOrEqual(BURST);
        expect(accepted).toBeLessThanOrEqual(BURST + 1);
        expect(limited).toBe(burst - accepted);

        // leave still follows the last connection after the wake-up, not the first
        a1!.close();
        a2!.publish({ marker: 1 }, "marker");
        await carol.next("message", (m) => m.id === "marker");
        expect(carol.frames.some((f) => f.type === "presence" && f.event === "leave" && f.user.id === "alice")).toBe(false);
        a2!.close();
        await carol.next("presence", (p) => p.event === "leave" && p.user.id === "alice");

        // nobody saw a seq twice or a gap
        const last = (await roomStats(server, room)).seq;
        for (const c of [bob, carol, dan!]) {
          await c.seen(last);
          const seqs = c.seqs();
          expect(new Set(seqs).size, "no seq twice").toBe(seqs.length);
          expect(seqs.at(-1)! - seqs[0]! + 1, "no gap").toBe(seqs.length);
        }
        figures.inputs = last + burst - accepted + 1; // publishes, refused burst frames, bob's forbidden one
        figures.dropped = 1;
        figures.crashes = crashes(server, everyone);
        expect(figures.crashes).toBe(0);
        Object.assign(extra, { held: true, pongsDuringSilence: pongs, burstAccepted: accepted, burstRateLimited: limited });
      } finally {
        for (const c of everyone) c.close();
      }
    });
  });
});
