// Moderation over HTTP (`admin`): kick (close every socket of a user with 4403, optionally ban
// them from the room) and delete (a message leaves history, replays and every screen).
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import type { MessageFrame } from "../../src/protocol";
import { bannedAnswer, call, fill } from "../support/http";
import { connect, keepAlive, upgrade } from "../support/socket";
import { tokenFor } from "../support/tokens";

const stubFor = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(room));
const admin = (room: string) => tokenFor("mod", room, ["admin", "history"]);
const kick = async (room: string, body: unknown) => call("POST", `/rooms/${room}/kick`, { token: await admin(room), body });
const del = async (room: string, seq: number | string) => call("DELETE", `/rooms/${room}/messages/${seq}`, { token: await admin(room) });
/** The text of the message the delete test removes: found in no replayed frame. */
const SECRET = "the deleted message's text";
const seqs = (frames: { type: string }[]) => frames.filter((f): f is MessageFrame => f.type === "message").map((m) => m.seq);

describe("POST /rooms/:room/kick", () => {
  it("closes every tab of the user with 4403 and its reason, and the others see one leave", async () => {
    const room = "mod-kick";
    const watcher = await connect(room, { token: await tokenFor("watcher", room) });
    await watcher.next("welcome");
    const tabs = await Promise.all([1, 2, 3].map(async () => connect(room, { token: await tokenFor("troll", room) })));
    await Promise.all(tabs.map((t) => t.next("welcome")));
    await watcher.next("presence", (p) => p.event === "join" && p.user.id === "troll");
    const res = await kick(room, { user: "troll", reason: "spam" });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ closed: 3 });
    for (const tab of tabs) expect(await tab.closed).toEqual({ code: 4403, reason: "kicked: spam" });
    await watcher.next("presence", (p) => p.event === "leave" && p.user.id === "troll");
    const presence = await call("GET", `/rooms/${room}/presence`, { token: await tokenFor("watcher", room) });
    expect(presence.json.users.map((u: { id: string }) => u.id)).toEqual(["watcher"]);
    // A kick without a ban: the user may come straight back.
    const back = await connect(room, { token: await tokenFor("troll", room) });
    await back.next("welcome");
    expect(watcher.frames.filter((f) => f.type === "presence" && f.event === "leave")).toHaveLength(1);
  });

  it("bans the user's upgrades with 403 banned until banSec runs out", async () => {
    const room = "mod-ban";
    const troll = await connect(room, { token: await tokenFor("troll", room) });
    await troll.next("welcome");
    expect((await kick(room, { user: "troll", banSec: 2 })).json).toEqual({ closed: 1 });
    expect((await troll.closed).code).toBe(4403);
    const refused = await upgrade(room, { token: await tokenFor("troll", room) });
    expect(refused.status).toBe(403);
    expect((await refused.json<{ error: { code: string } }>()).error.code).toBe("banned");
    // Others are not affected.
    await (await connect(room, { token: await tokenFor("other", room) })).next("welcome");
    await vi.waitFor(
      async () => {
        const res = await upgrade(room, { token: await tokenFor("troll", room) });
        expect(res.status).toBe(101);
        res.webSocket!.accept();
      },
      { timeout: 10_000, interval: 250 },
    );
  });

  it("refuses a banned user on every HTTP route (403 banned, as the upgrade), publishing nothing, until the ban runs out", async () => {
    const room = "mod-ban-http";
    const watcher = keepAlive(await connect(room, { token: await tokenFor("watcher", room) }));
    await watcher.next("welcome");
    // Every capability, admin included: a banned admin is still that user.
    const troll = await tokenFor("troll", room);
    const publish = (data: string, key?: string) =>
      call("POST", `/rooms/${room}/messages`, { token: troll, body: { data }, headers: key ? { "idempotency-key": key } : {} });
    expect((await publish("before", "k")).status).toBe(201);
    expect((await kick(room, { user: "troll", banSec: 2 })).status).toBe(200);
    const upgraded = await upgrade(room, { token: troll });
    const refused = { status: upgraded.status, body: await upgraded.json(), retryAfter: upgraded.headers.get("retry-after") };
    expect(refused).toEqual(bannedAnswer("troll", 2));

    const routes = {
      publish: () => publish("while banned"),
      // A key used before the ban: not answered with its first result either.
      replay: () => publish("while banned", "k"),
      history: () => call("GET", `/rooms/${room}/history`, { token: troll }),
      presence: () => call("GET", `/rooms/${room}/presence`, { token: troll }),
      stats: () => call("GET", `/rooms/${room}/stats`, { token: troll }),
      kick: () => call("POST", `/rooms/${room}/kick`, { token: troll, body: { user: "watcher" } }),
      delete: () => call("DELETE", `/rooms/${room}/messages/1`, { token: troll }),
    };
    for (const [route, send] of Object.entries(routes)) {
      const res = await send();
      const got = { route, status: res.status, body: res.json, retryAfter: res.headers.get("retry-after") };
      expect(got).toEqual({ route, ...bannedAnswer("troll", 2) });
    }
    // Nothing of the refused calls happened: no message stored, sent or given a seq, no kick, no delete.
    const after = await call("POST", `/rooms/${room}/messages`, { token: await tokenFor("server", room, ["publish"]), body: { data: "after" } });
    expect(after.json.seq).toBe(2);
    await watcher.next("message", (m) => m.seq === 2);
    expect(watcher.frames.filter((f): f is MessageFrame => f.type === "message").map((m) => m.data)).toEqual(["before", "after"]);
    expect(watcher.frames.filter((f) => f.type === "delete")).toEqual([]);
    expect(watcher.isClosed()).toBe(false);
    const page = await call("GET", `/rooms/${room}/history`, { token: await admin(room) });
    expect(page.json.messages.map((m: MessageFrame) => m.data)).toEqual(["after", "before"]);

    // Once the ban runs out, every route answers the user again.
    await expect.poll(async () => (await routes.history()).status, { timeout: 5_000, interval: 250 }).toBe(200);
    expect((await routes.presence()).status).toBe(200);
    expect((await publish("back")).status).toBe(201);
    expect((await watcher.next("message", (m) => m.seq === 3)).data).toBe("back");
  }, 10_000);

  it("keeps a ban across an eviction, and banSec 0 lifts it", async () => {
    const room = "mod-ban-evict";
    expect((await kick(room, { user: "troll", banSec: 600 })).json).toEqual({ closed: 0 });
    await evictDurableObject(stubFor(room));
    expect((await upgrade(room, { token: await tokenFor("troll", room) })).status).toBe(403);
    await kick(room, { user: "troll", banSec: 0 });
    expect((await upgrade(room, { token: await tokenFor("troll", room) })).status).toBe(101);
  });

  it("needs admin, and refuses bad bodies with 400 and a message", async () => {
    const room = "mod-kick-bad";
    const user = await tokenFor("user", room, ["subscribe", "publish", "history"]);
    const denied = await call("POST", `/rooms/${room}/kick`, { token: user, body: { user: "x" } });
    expect({ status: denied.status, code: denied.json.error.code }).toEqual({ status: 403, code: "forbidden" });
    const bad: unknown[] = [
      "{nope",
      {},
      { user: "" },
      { user: "x", banSec: -1 },
      { user: "x", banSec: 604_801 },
      { user: "x", banSec: 1.5 },
      { user: "x", reason: "r".repeat(201) },
      { user: "x", extra: 1 },
      [1],
    ];
    for (const body of bad) {
      const res = await kick(room, body);
      expect({ status: res.status, code: res.json.error.code }).toEqual({ status: 400, code: "bad_request" });
      expect(res.json.error.message).toContain('"user"');
    }
    expect((await kick(room, { user: "x", banSec: 604_800, reason: "r".repeat(200) })).status).toBe(200);
  });
});

describe("DELETE /rooms/:room/messages/:seq", () => {
  it("removes the message from HTTP and socket history and from resume replays (a delete in its place), and tells every socket", async () => {
    const room = "mod-delete";
    const a = await connect(room, { token: await tokenFor("a", room) });
    const b = await connect(room, { token: await tokenFor("b", room) });
    const { epoch } = await a.next("welcome");
    await b.next("welcome");
    await fill(room, 2);
    const server = await tokenFor("server", room, ["publish"]);
    expect((await call("POST", `/rooms/${room}/messages`, { token: server, body: { data: SECRET } })).json.seq).toBe(3);
    await fill(room, 2, 3);
    await a.collect("message", 5);
    const res = await del(room, 3);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ deleted: 3 });
    for (const s of [a, b]) expect(await s.next("delete")).toEqual({ type: "delete", seq: 3 });
    const page = await call("GET", `/rooms/${room}/history`, { token: await admin(room) });
    expect(page.json.messages.map((m: MessageFrame) => m.seq)).toEqual([5, 4, 2, 1]);
    a.send({ type: "history", id: "h" });
    expect((await a.next("history")).messages.map((m) => m.seq)).toEqual([5, 4, 2, 1]);
    const resumed = await connect(room, { token: await tokenFor("a", room), query: { since: 1, epoch } });
    expect((await resumed.next("welcome")).recovered).toBe(true);
    await resumed.collect("message", 3);
    expect(seqs(resumed.frames)).toEqual([2, 4, 5]);
    // In the deleted one's place, its delete: a client's position passes every seq.
    const replay = resumed.frames.flatMap((f) => (f.type === "message" || f.type === "delete" ? [`${f.type} ${f.seq}`] : []));
    expect(replay).toEqual(["message 2", "delete 3", "message 4", "message 5"]);
    // No trace of the deleted one's content: seq 3 is only its bare delete frame, and its text is
    // in no frame (parsed ones included: `texts` holds only what was not JSON).
    const third = resumed.frames.filter((f) => (f.type === "message" || f.type === "delete") && f.seq === 3);
    expect(third).toEqual([{ type: "delete", seq: 3 }]);
    expect(JSON.stringify([resumed.frames, resumed.texts])).not.toContain(SECRET);
    // Gone: a second delete, and a seq the room never had, are 404; a bad seq is 400.
    expect((await del(room, 3)).status).toBe(404);
    expect((await del(room, 99)).json.error.code).toBe("not_found");
    expect((await del(room, "x")).status).toBe(400);
    const user = await tokenFor("user", room, ["publish", "history"]);
    expect((await call("DELETE", `/rooms/${room}/messages/1`, { token: user })).status).toBe(403);
  });

  it("404s a message trimmed out of retention", async () => {
    const room = "mod-delete-trimmed";
    await fill(room, 60); // retention here is 50
    expect((await del(room, 5)).status).toBe(404);
    expect((await del(room, 60)).status).toBe(200);
  });

  it("never reuses the seq of a deleted newest message, even after an eviction", async () => {
    const room = "mod-delete-newest";
    await fill(room, 3);
    expect((await del(room, 3)).status).toBe(200);
    await evictDurableObject(stubFor(room));
    const token = await tokenFor("svc", room, ["publish"]);
    const res = await call("POST", `/rooms/${room}/messages`, { token, body: { data: "next" } });
    expect(res.json.seq).toBe(4);
    const page = await call("GET", `/rooms/${room}/history`, { token: await admin(room) });
    expect(page.json.messages.map((m: MessageFrame) => m.seq)).toEqual([4, 2, 1]);
  });
});
