// Resume after a reconnect: exactly the missed messages, in order, before anything new —
// or recovered:false when the room cannot vouch for the gap. HISTORY_LIMIT is 50 here.
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { fill } from "../support/http";
import { connect, type TestSocket } from "../support/socket";
import { tokenFor } from "../support/tokens";

async function publishN(s: TestSocket, n: number, from = 0) {
  for (let i = from; i < from + n; i++) s.send({ type: "publish", data: i });
  await s.next("message", (m) => m.data === from + n - 1, 5000);
}

describe("resume with since/epoch", () => {
  it("replays exactly the missed messages, in order, right after the welcome", async () => {
    const room = "resume-gap";
    const pub = await connect(room, { token: await tokenFor("pub", room) });
    const sub = await connect(room, { token: await tokenFor("sub", room) });
    const { epoch } = await sub.next("welcome");
    await publishN(pub, 3);
    const seen = (await sub.collect("message", 3)).at(-1)!.seq;
    sub.close();
    await sub.closed;
    await publishN(pub, 5, 3); // missed: seq 4..8

    const back = await connect(room, { token: await tokenFor("sub", room), query: { since: seen, epoch } });
    pub.send({ type: "publish", data: "new" });
    const welcome = await back.next("welcome");
    expect(welcome).toMatchObject({ recovered: true, seq: 8 });
    const msgs = await back.collect("message", 6);
    expect(msgs.map((m) => m.seq)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(msgs.at(-1)!.data).toBe("new");
    expect(back.frames[0]!.type).toBe("welcome"); // nothing before the welcome
  });

  it("recovers nothing, truthfully, when since equals the room's seq", async () => {
    const room = "resume-current";
    const pub = await connect(room, { token: await tokenFor("pub", room) });
    const { epoch } = await pub.next("welcome");
    await publishN(pub, 2);
    const back = await connect(room, { token: await tokenFor("sub", room), query: { since: 2, epoch } });
    expect(await back.next("welcome")).toMatchObject({ recovered: true, seq: 2 });
    pub.send({ type: "publish", data: "x" });
    expect((await back.collect("message", 1)).map((m) => m.seq)).toEqual([3]);
  });

  it("answers recovered:false for a wrong epoch, a since beyond the seq, or a gap past retention", async () => {
    const room = "resume-stale";
    const pub = await connect(room, { token: await tokenFor("pub", room) });
    const { epoch } = await pub.next("welcome");
    await fill(room, 60); // retention is 50: seq 1..10 are gone
    const tok = await tokenFor("sub", room);
    const cases = [
      { since: 55, epoch: "not-the-epoch" },
      { since: 1000, epoch },
      { since: 5, epoch },
    ];
    for (const [i, query] of cases.entries()) {
      const s = await connect(room, { token: tok, query });
      expect(await s.next("welcome")).toMatchObject({ recovered: false, seq: 60 + i }); // each probe adds one
      s.send({ type: "publish", data: "probe" });
      const first = await s.next("message");
      expect(first.data).toBe("probe"); // nothing replayed
      s.close();
    }
    // the oldest retained boundary: since 10 needs 11..60, all retained
    // the oldest retained boundary (seq is 63, retention 50): since 13 needs 14..63, all retained; 12 does not
    const stale = await connect(room, { token: tok, query: { since: 12, epoch } });
    expect(await stale.next("welcome")).toMatchObject({ recovered: false, seq: 63 });
    const edge = await connect(room, { token: tok, query: { since: 13, epoch } });
    expect(await edge.next("welcome")).toMatchObject({ recovered: true });
    expect((await edge.collect("message", 50)).map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => 14 + i));
  });

  it("keeps seq and epoch across an eviction, so a resume after it still recovers", async () => {
    const room = "resume-evict";
    const pub = await connect(room, { token: await tokenFor("pub", room) });
    const { epoch } = await pub.next("welcome");
    await publishN(pub, 4);
    await evictDurableObject(env.ROOMS.get(env.ROOMS.idFromName(room)), { webSockets: "close" });
    const back = await connect(room, { token: await tokenFor("pub", room), query: { since: 2, epoch } });
    expect(await back.next("welcome")).toMatchObject({ recovered: true, seq: 4, epoch });
    back.send({ type: "publish", data: "after" });
    expect((await back.collect("message", 3)).map((m) => m.seq)).toEqual([3, 4, 5]);
  });

  it("rejects a malformed since before upgrading", async () => {
    const room = "resume-bad";
    const { upgrade } = await import("../support/socket");
    const res = await upgrade(room, { token: await tokenFor("x", room), query: { since: "-1" } });
    expect(res.status).toBe(400);
    expect(res.webSocket).toBeNull();
  });
});

describe("resume without the history capability", () => {
  const reader = (sub: string, room: string) => tokenFor(sub, room, ["subscribe"]);

  it("replays nothing older to a subscriber that was never connected, whatever since says", async () => {
    const room = "resume-cap-stranger";
    const pub = await connect(room, { token: await tokenFor("pub", room) });
    const { epoch } = await pub.next("welcome");
    await publishN(pub, 5);
    const s = await connect(room, { token: await reader("eve", room), query: { since: 0, epoch } });
    expect(await s.next("welcome")).toMatchObject({ recovered: false, seq: 5 });
    pub.send({ type: "publish", data: "live" });
    expect((await s.next("message")).data).toBe("live"); // nothing of 1..5 came first
    expect(s.frames.filter((f) => f.type === "message")).toHaveLength(1);
  });

  it("replays exactly what was missed after the user's start, with the welcome's token, carried across resumes", async () => {
    const room = "resume-cap-token";
    const pub = await connect(room, { token: await tokenFor("pub", room) });
    const { epoch } = await pub.next("welcome");
    await publishN(pub, 2); // before bob ever joins: never his to read
    const first = await connect(room, { token: await reader("bob", room) });
    const w1 = await first.next("welcome");
    expect(w1.seq).toBe(2);
    await publishN(pub, 1, 2); // seq 3, received live
    await first.next("message", (m) => m.seq === 3);
    first.close();
    await first.closed;
    await publishN(pub, 3, 3); // seq 4..6, missed

    const second = await connect(room, { token: await reader("bob", room), query: { since: 3, epoch, resume: w1.resume } });
    expect(await second.next("welcome")).toMatchObject({ recovered: true, seq: 6 });
    expect((await second.collect("message", 3)).map((m) => m.seq)).toEqual([4, 5, 6]);
    const w2 = await second.next("welcome");
    second.close();
    await second.closed;

    // w2 was issued at seq 6 but still proves the start at 2: since 2 replays 3..6 ...
    const third = await connect(room, { token: await reader("bob", room), query: { since: 2, epoch, resume: w2.resume } });
    expect(await third.next("welcome")).toMatchObject({ recovered: true });
    expect((await third.collect("message", 4)).map((m) => m.seq)).toEqual([3, 4, 5, 6]);
    // ... and nothing before the start: since 1 (or 0) with the same token recovers nothing
    for (const since of [1, 0]) {
      const early = await connect(room, { token: await reader("bob", room), query: { since, epoch, resume: w2.resume } });
      expect(await early.next("welcome")).toMatchObject({ recovered: false });
      pub.send({ type: "publish", data: `probe-${since}` });
      expect((await early.next("message")).data).toBe(`probe-${since}`);
    }
  });

  it("unlocks nothing with a forged, another user's, another room's or a garbled token", async () => {
    const room = "resume-cap-forged";
    const other = "resume-cap-forged-2";
    const pub = await connect(room, { token: await tokenFor("pub", room) }); // joined at seq 0
    const { epoch, resume: pubToken } = await pub.next("welcome");
    const elsewhere = await connect(other, { token: await tokenFor("eve", other) });
    const { resume: otherRoomToken } = await elsewhere.next("welcome");
    await publishN(pub, 4);
    const eve = await connect(room, { token: await reader("eve", room) }); // eve's own start is 4
    const { resume: eveToken } = await eve.next("welcome");
    const [, eveStart, mac] = eveToken.split(".");
    expect(eveStart).toBe("4");

    const attempts = {
      "another user's": pubToken,
      "another room's": otherRoomToken,
      "a forged start": `r1.0.${mac}`,
      "a garbled": `${eveToken.slice(0, -2)}xx`,
      "not a token": "hello",
    };
    for (const [what, resume] of Object.entries(attempts)) {
      const s = await connect(room, { token: await reader("eve", room), query: { since: 0, epoch, resume } });
      expect(await s.next("welcome"), what).toMatchObject({ recovered: false });
      s.close();
    }
    const tooLong = await (
      await import("../support/socket")
    ).upgrade(room, {
      token: await reader("eve", room),
      query: { since: 0, epoch, resume: "r".repeat(129) },
    });
    expect(tooLong.status).toBe(400);
    expect(await tooLong.json()).toMatchObject({ error: { code: "bad_request" } });
    // her own token still works from her start
    const own = await connect(room, { token: await reader("eve", room), query: { since: 4, epoch, resume: eveToken } });
    expect(await own.next("welcome")).toMatchObject({ recovered: true, seq: 4 });
  });

  it("keeps the token valid across an eviction (the key lives in the room's storage)", async () => {
    const room = "resume-cap-evict";
    const pub = await connect(room, { token: await tokenFor("pub", room) });
    const { epoch } = await pub.next("welcome");
    const bob = await connect(room, { token: await reader("bob", room) });
    const { resume } = await bob.next("welcome");
    await publishN(pub, 3);
    await evictDurableObject(env.ROOMS.get(env.ROOMS.idFromName(room)), { webSockets: "close" });
    const back = await connect(room, { token: await reader("bob", room), query: { since: 0, epoch, resume } });
    expect(await back.next("welcome")).toMatchObject({ recovered: true, seq: 3 });
    expect((await back.collect("message", 3)).map((m) => m.seq)).toEqual([1, 2, 3]);
  });
});

describe("history", () => {
  it("pages newest first over the socket, within and across pages, with more", async () => {
    const room = "history-socket";
    const s = await connect(room, { token: await tokenFor("alice", room) });
    await publishN(s, 7);
    s.send({ type: "history", limit: 3, id: "h1" });
    const p1 = await s.next("history", (h) => h.id === "h1");
    expect(p1.messages.map((m) => m.seq)).toEqual([7, 6, 5]);
    expect(p1.more).toBe(true);
    s.send({ type: "history", before: 5, limit: 10, id: "h2" });
    const p2 = await s.next("history", (h) => h.id === "h2");
    expect(p2.messages.map((m) => m.seq)).toEqual([4, 3, 2, 1]);
    expect(p2.more).toBe(false);
    expect(p2.messages[0]).toMatchObject({ type: "message", data: 3, from: { id: "alice" } });
  });

  it("needs the history capability on the socket", async () => {
    const room = "history-cap";
    const s = await connect(room, { token: await tokenFor("alice", room, ["subscribe", "publish"]) });
    await s.next("welcome");
    s.send({ type: "history", id: "h" });
    expect(await s.next("error")).toMatchObject({ code: "forbidden", id: "h" });
  });

  it("never pages past retention", async () => {
    const room = "history-retention";
    await fill(room, 70);
    const s = await connect(room, { token: await tokenFor("alice", room) });
    s.send({ type: "history", before: 30, limit: 100, id: "old" });
    const page = await s.next("history", (h) => h.id === "old");
    expect(page.messages.map((m) => m.seq)).toEqual(Array.from({ length: 9 }, (_, i) => 29 - i)); // 21..29
    expect(page.more).toBe(false);
  });
});
