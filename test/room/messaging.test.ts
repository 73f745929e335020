// Publish, fan-out and seq: the core guarantee every subscriber relies on.
import { describe, expect, it } from "vitest";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

describe("publish and fan-out", () => {
  it("delivers every publish to every subscriber, the sender included, in seq order", async () => {
    const room = "fanout-order";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    const b = await connect(room, { token: await tokenFor("bob", room) });
    await a.next("welcome");
    await b.next("welcome");
    for (let i = 0; i < 10; i++) (i % 2 ? b : a).send({ type: "publish", data: { i }, id: `m${i}` });
    for (const s of [a, b]) {
      const msgs = await s.collect("message", 10);
      expect(msgs.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(msgs.map((m) => m.id)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
      expect(msgs[1]!.from).toEqual({ id: "bob", name: "bob" });
    }
  });

  it("carries the sender's id on every copy and omits id when none was sent", async () => {
    const room = "fanout-id";
    const a = await connect(room, { token: await tokenFor("alice", room, ["*"], "Alice") });
    const b = await connect(room, { token: await tokenFor("bob", room) });
    await b.next("welcome");
    a.send({ type: "publish", data: "x", id: "abc" });
    a.send({ type: "publish", data: null });
    const [withId, without] = await b.collect("message", 2);
    expect(withId).toMatchObject({ id: "abc", from: { id: "alice", name: "Alice" }, data: "x" });
    expect(without).not.toHaveProperty("id");
    expect(without!.data).toBeNull();
    expect(typeof without!.ts).toBe("number");
  });

  it("rejects a publish without data and delivers it to nobody", async () => {
    const room = "fanout-reject";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    const b = await connect(room, { token: await tokenFor("bob", room) });
    await b.next("welcome");
    a.send({ type: "publish", id: "bad" });
    expect(await a.next("error")).toMatchObject({ code: "bad_request", id: "bad" });
    a.send({ type: "publish", data: 1, id: "good" });
    const first = await b.next("message");
    expect(first).toMatchObject({ seq: 1, id: "good" }); // the rejected frame took no seq
  });

  it("carries display names in any script, emoji included", async () => {
    const room = "fanout-unicode";
    const a = await connect(room, { token: await tokenFor("zoe", room, ["*"], "Zoë 🚀 日本") });
    expect((await a.next("welcome")).user).toEqual({ id: "zoe", name: "Zoë 🚀 日本" });
    a.send({ type: "publish", data: "ünïcödé ✓" });
    expect(await a.next("message")).toMatchObject({ from: { name: "Zoë 🚀 日本" }, data: "ünïcödé ✓" });
  });

  it("answers ping with pong through the runtime's auto-response", async () => {
    const room = "fanout-ping";
    const a = await connect(room, { token: await tokenFor("alice", room) });
    await a.next("welcome");
    a.send("ping");
    await expect.poll(() => a.texts).toEqual(["pong"]);
  });
});
