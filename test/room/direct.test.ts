// Direct messages reach every connection of one user and nobody else.
import { describe, expect, it } from "vitest";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

describe("direct messages", () => {
  it("reach every connection of the target only, and ack the sender", async () => {
    const room = "direct-fanout";
    const a = await connect(room, { token: await tokenFor("alice", room, ["*"], "Alice") });
    const b1 = await connect(room, { token: await tokenFor("bob", room) });
    const b2 = await connect(room, { token: await tokenFor("bob", room) });
    const c = await connect(room, { token: await tokenFor("carol", room) });
    await Promise.all([a, b1, b2, c].map((s) => s.next("welcome")));
    a.send({ type: "direct", to: "bob", data: { secret: 1 }, id: "d1" });
    expect(await a.next("ack")).toEqual({ type: "ack", id: "d1" });
    for (const b of [b1, b2]) {
      expect(await b.next("direct")).toEqual({ type: "direct", from: { id: "alice", name: "Alice" }, data: { secret: 1 }, id: "d1" });
    }
    a.send({ type: "publish", data: "marker" });
    await c.next("message");
    expect(c.frames.some((f) => f.type === "direct")).toBe(false);
    expect(a.frames.some((f) => f.type === "direct")).toBe(false);
  });

  it("answers not_found for a user who is not in the room", async () => {
    const room = "direct-missing";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    await a.next("welcome");
    a.send({ type: "direct", to: "ghost", data: 1, id: "d2" });
    expect(await a.next("error")).toMatchObject({ code: "not_found", id: "d2" });
    expect(a.frames.some((f) => f.type === "ack")).toBe(false);
  });

  it("needs the publish capability", async () => {
    const room = "direct-cap";
    const a = await connect(room, { token: await tokenFor("alice", room, ["subscribe"]) });
    const b = await connect(room, { token: await tokenFor("bob", room) });
    await b.next("welcome");
    a.send({ type: "direct", to: "bob", data: 1, id: "d3" });
    expect(await a.next("error")).toMatchObject({ code: "forbidden", id: "d3" });
    b.send({ type: "publish", data: "marker" });
    await b.next("message");
    expect(b.frames.some((f) => f.type === "direct")).toBe(false);
  });
});
