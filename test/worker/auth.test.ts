// Who may do what: where the token is read from, the `rooms` capability map, the capability
// each route needs, and the capability checks on a live socket's frames.
import { describe, expect, it } from "vitest";
import { connect, upgrade, type TestSocket } from "../support/socket";
import { expectFailure, request, upgradeHeaders } from "../support/edge";
import { token, tokenFor } from "../support/tokens";

type Route = { action: string; method: string; cap: string; ok: number; headers?: Record<string, string>; body?: string };
const ROUTES: Route[] = [
  { action: "ws", method: "GET", cap: "subscribe", ok: 101, headers: upgradeHeaders() },
  { action: "presence", method: "GET", cap: "subscribe", ok: 200 },
  { action: "messages", method: "POST", cap: "publish", ok: 201, headers: { "content-type": "application/json" }, body: '{"data":"x"}' },
  { action: "history", method: "GET", cap: "history", ok: 200 },
  { action: "stats", method: "GET", cap: "admin", ok: 200 },
];
const ALL = ["subscribe", "publish", "history", "admin"];

async function hit(route: Route, room: string, auth: { query?: string; header?: string }): Promise<Response> {
  const q = auth.query === undefined ? "" : `?token=${auth.query}`;
  const headers = { ...route.headers, ...(auth.header === undefined ? {} : { authorization: auth.header }) };
  const res = await request(`/rooms/${room}/${route.action}${q}`, { method: route.method, headers, body: route.body });
  if (res.webSocket) {
    res.webSocket.accept();
    res.webSocket.close(1000);
  }
  return res;
}

describe("where the token comes from", () => {
  it.each(ROUTES)("accepts ?token= on $method $action", async (route) => {
    expect((await hit(route, "src-q", { query: await tokenFor("alice", "src-q") })).status).toBe(route.ok);
  });

  it.each(ROUTES)("accepts Authorization: Bearer on $method $action", async (route) => {
    expect((await hit(route, "src-h", { header: `Bearer ${await tokenFor("alice", "src-h")}` })).status).toBe(route.ok);
  });

  it("accepts the Bearer scheme case-insensitively", async () => {
    expect((await hit(ROUTES[1]!, "src-h", { header: `bearer ${await tokenFor("alice", "src-h")}` })).status).toBe(200);
  });

  it.each([
    ["another scheme", (t: string) => `Basic ${t}`],
    ["no token after Bearer", () => "Bearer "],
    ["two tokens", (t: string) => `Bearer ${t} ${t}`],
    ["no scheme", (t: string) => t],
  ])("answers 401 for an Authorization header with %s", async (_, header) => {
    await expectFailure(await hit(ROUTES[1]!, "src-h", { header: header(await tokenFor("alice", "src-h")) }), 401, "unauthorized");
  });

  it("answers 401 with no token at all, on every route", async () => {
    for (const route of ROUTES) await expectFailure(await hit(route, "src-none", {}), 401, "unauthorized");
  });
});

describe("each route requires its capability", () => {
  it.each(ROUTES)("answers 403 on $method $action to a token with every capability but $cap", async (route) => {
    const t = await tokenFor(
      "alice",
      "caps",
      ALL.filter((c) => c !== route.cap),
    );
    await expectFailure(await hit(route, "caps", { query: t }), 403, "forbidden");
  });

  it.each(ROUTES)("serves $method $action to a token with only $cap", async (route) => {
    expect((await hit(route, "caps", { query: await tokenFor("alice", "caps", [route.cap]) })).status).toBe(route.ok);
  });

  it.each(ROUTES)("answers 403 on $method $action to a token for another room", async (route) => {
    await expectFailure(await hit(route, "caps", { query: await tokenFor("alice", "caps2") }), 403, "forbidden");
  });

  it.each(ROUTES)("answers 403 on $method $action to a token with an empty rooms map", async (route) => {
    await expectFailure(await hit(route, "caps", { query: await token({ sub: "alice", rooms: {} }) }), 403, "forbidden");
  });
});

describe("the rooms map: exact names, prefix* patterns and *", () => {
  const presence = async (room: string, rooms: Record<string, string[]>) =>
    (await request(`/rooms/${room}/presence?token=${await token({ sub: "alice", rooms })}`)).status;

  it("grants an exact name and not a longer or shorter one", async () => {
    expect(await presence("exact", { exact: ["subscribe"] })).toBe(200);
    expect(await presence("exact1", { exact: ["subscribe"] })).toBe(403);
    expect(await presence("exac", { exact: ["subscribe"] })).toBe(403);
  });

  it("grants every room with the prefix of a `prefix*` pattern, and no other", async () => {
    expect(await presence("team-red", { "team-*": ["subscribe"] })).toBe(200);
    expect(await presence("team-", { "team-*": ["subscribe"] })).toBe(200);
    expect(await presence("teamred", { "team-*": ["subscribe"] })).toBe(403);
    expect(await presence("xteam-red", { "team-*": ["subscribe"] })).toBe(403);
  });

  it("grants every room with the `*` pattern", async () => {
    expect(await presence("any-room", { "*": ["subscribe"] })).toBe(200);
  });

  it("grants every capability with the `*` capability", async () => {
    const t = await token({ sub: "alice", rooms: { star: ["*"] } });
    for (const route of ROUTES) expect((await hit(route, "star", { query: t })).status).toBe(route.ok);
  });

  it("merges an exact entry with a matching pattern's capabilities", async () => {
    const t = await token({ sub: "alice", rooms: { "m-1": ["subscribe"], "m-*": ["admin"] } });
    expect((await hit(ROUTES[1]!, "m-1", { query: t })).status).toBe(200);
    expect((await hit(ROUTES[4]!, "m-1", { query: t })).status).toBe(200);
    await expectFailure(await hit(ROUTES[3]!, "m-1", { query: t }), 403, "forbidden");
  });

  it("publishes over HTTP as the token's sub and name", async () => {
    const t = await token({ sub: "svc", name: "Service", rooms: { who: ["publish", "history"] } });
    expect((await hit(ROUTES[2]!, "who", { query: t })).status).toBe(201);
    const page = await (await request(`/rooms/who/history?token=${t}`)).json<{ messages: { from: unknown }[] }>();
    expect(page.messages[0]!.from).toEqual({ id: "svc", name: "Service" });
  });
});

describe("capabilities on a live socket", () => {
  let n = 0;
  async function pair(caps: string[]): Promise<{ room: string; limited: TestSocket; observer: TestSocket }> {
    const room = `sockcaps-${n++}`;
    const observer = await connect(room, { token: await tokenFor("observer", room) });
    await observer.next("welcome");
    const limited = await connect(room, { token: await tokenFor("limited", room, caps) });
    await limited.next("welcome");
    await observer.next("presence", (f) => f.event === "join" && f.user.id === "limited");
    return { room, limited, observer };
  }

  /** What the observer must not see from a limited socket: any message, direct or presence update. */
  function leaks(observer: TestSocket): unknown[] {
    return observer.frames.filter((f) => f.type === "message" || f.type === "direct" || (f.type === "presence" && f.event === "update"));
  }

  it("answers publish, direct and presence frames from a socket without publish with forbidden, and delivers nothing", async () => {
    const { limited, observer } = await pair(["subscribe"]);
    limited.send({ type: "publish", data: "x", id: "p1" });
    limited.send({ type: "direct", to: "observer", data: "x", id: "d1" });
    limited.send({ type: "presence", state: { typing: true }, id: "s1" });
    const errors = await limited.collect("error", 3);
    expect(errors.map((e) => [e.code, e.id])).toEqual([
      ["forbidden", "p1"],
      ["forbidden", "d1"],
      ["forbidden", "s1"],
    ]);
    // A frame the observer does get, sent after the forbidden ones, proves they were not merely slow.
    observer.send({ type: "publish", data: "after", id: "o1" });
    await observer.next("message", (m) => m.id === "o1");
    expect(leaks(observer)).toEqual([expect.objectContaining({ type: "message", id: "o1" })]);
    expect(limited.isClosed()).toBe(false);
    limited.close();
    observer.close();
  });

  it("answers a history frame from a socket without history with forbidden", async () => {
    const { limited, observer } = await pair(["subscribe", "publish"]);
    limited.send({ type: "history", id: "h1" });
    expect(await limited.next("error")).toMatchObject({ code: "forbidden", id: "h1" });
    expect(limited.frames.some((f) => f.type === "history")).toBe(false);
    limited.close();
    observer.close();
  });

  it("keeps a socket open after forbidden frames: it still receives and may use what it holds", async () => {
    const { limited, observer } = await pair(["subscribe", "history"]);
    limited.send({ type: "publish", data: "x", id: "p1" });
    expect(await limited.next("error")).toMatchObject({ code: "forbidden", id: "p1" });
    limited.send({ type: "history", id: "h1" });
    expect(await limited.next("history")).toMatchObject({ id: "h1", messages: [] });
    observer.send({ type: "publish", data: "hello", id: "o1" });
    expect(await limited.next("message")).toMatchObject({ id: "o1", data: "hello" });
    expect(limited.isClosed()).toBe(false);
    limited.close();
    observer.close();
  });

  it("lets a socket with publish publish (the forbidden answers come from the capability, not the frame)", async () => {
    const { limited, observer } = await pair(["subscribe", "publish"]);
    limited.send({ type: "publish", data: "x", id: "p1" });
    expect(await observer.next("message")).toMatchObject({ id: "p1", from: { id: "limited" } });
    limited.close();
    observer.close();
  });
});

it("refuses a socket upgrade to a token without subscribe even with every other capability", async () => {
  const res = await upgrade("nosub", { token: await tokenFor("alice", "nosub", ["publish", "history", "admin"]) });
  await expectFailure(res, 403, "forbidden");
});
