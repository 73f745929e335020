// A Room subclass's hooks over GET /connect (mounted at /rt): a connection's subscription is a
// member like a direct socket, so onJoin refuses it and onPublish decides its publishes exactly
// as they do for direct sockets, and a refused room leaves the connection's other rooms alone.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { connectMux } from "../support/mux";
import { token } from "../support/tokens";
import type { HooksEnv } from "./worker";

const chat = (env as unknown as HooksEnv).CHAT;

describe("hooks over one connection", () => {
  it("onJoin's refusal ends that subscription with rejected; the user's other room joins", async () => {
    const m = await connectMux(await token({ sub: "blocked-mux", rooms: { "mux-join-*": ["subscribe"] } }), { base: "/rt" });
    m.subscribe(1, "mux-join-a");
    expect(await m.nextControl("unsubscribed", (f) => f.sub === 1)).toMatchObject({ code: "rejected", message: "blocked users stay out" });
    const ok = await connectMux(await token({ sub: "fine-mux", rooms: { "mux-join-*": ["subscribe"] } }), { base: "/rt" });
    ok.subscribe(1, "mux-join-a");
    expect(await ok.next(1, "welcome")).toMatchObject({ room: "mux-join-a" });
    m.close();
    ok.close();
  });

  it("onPublish refuses and rewrites a connection's publishes as a direct socket's, room by room", async () => {
    const m = await connectMux(await token({ sub: "alice", rooms: { "mux-pub-*": ["subscribe", "publish"] } }), { base: "/rt" });
    m.subscribe(1, "mux-pub-a");
    m.subscribe(2, "mux-pub-b");
    await m.next(1, "welcome");
    await m.next(2, "welcome");
    m.toRoom(1, { type: "publish", data: { text: "spam" }, id: "s1" });
    m.toRoom(2, { type: "publish", data: { text: "hello" }, id: "h1" });
    expect(await m.next(1, "error", (f) => f.id === "s1")).toMatchObject({ code: "rejected", message: "no spam here" });
    expect(await m.next(2, "message", (f) => f.id === "h1")).toMatchObject({ seq: 1, data: { text: "hello", checked: "socket" } });
    // Nothing of the refused one was stored: the room's next seq is 1.
    m.toRoom(1, { type: "publish", data: { text: "fine" }, id: "f1" });
    expect(await m.next(1, "message", (f) => f.id === "f1")).toMatchObject({ seq: 1 });
    const log = await chat.get(chat.idFromName("mux-pub-a")).hookLog();
    expect(log.filter((c) => c.hook === "publish")).toHaveLength(2);
    m.close();
  });
});
