// The last accepted value of each documented bound, and the first refused one: a test of the
// refusal alone would pass with an off-by-one that also refuses the bound itself.
import { describe, expect, it } from "vitest";
import { MAX_PRESENCE_STATE_BYTES, utf8Length } from "../../src/protocol";
import { call } from "../support/http";
import { connect, type TestSocket } from "../support/socket";
import { tokenFor } from "../support/tokens";

async function join(room: string, user: string): Promise<TestSocket> {
  const s = await connect(room, { token: await tokenFor(user, room) });
  await s.next("welcome");
  return s;
}

/** A presence state whose JSON is exactly `bytes` UTF-8 bytes, padded with `pad` (1 or 3 bytes each). */
function stateOf(bytes: number, pad = "x"): Record<string, string> {
  const shell = utf8Length(JSON.stringify({ s: "" }));
  const state = { s: pad.repeat(Math.floor((bytes - shell) / utf8Length(pad))) };
  state.s += "x".repeat(bytes - utf8Length(JSON.stringify(state)));
  expect(utf8Length(JSON.stringify(state))).toBe(bytes);
  return state;
}

describe("Idempotency-Key: up to 64 characters", () => {
  it("accepts a 64-character key (and honours it) and refuses a 65-character one", async () => {
    const room = "bound-idem";
    const token = await tokenFor("server", room, ["publish"]);
    const send = (key: string, data: unknown) =>
      call("POST", `/rooms/${room}/messages`, { token, body: { data }, headers: { "idempotency-key": key } });
    const first = await send("k".repeat(64), 1);
    expect(first.status).toBe(201);
    const again = await send("k".repeat(64), 2);
    expect({ status: again.status, json: again.json }).toEqual({ status: 201, json: first.json });
    const over = await send("k".repeat(65), 3);
    expect({ status: over.status, code: over.json.error.code }).toEqual({ status: 400, code: "bad_request" });
    const history = await call("GET", `/rooms/${room}/history`, { token: await tokenFor("reader", room, ["history"]) });
    expect(history.json.messages.map((m: { data: unknown }) => m.data)).toEqual([1]);
  });
});

describe(`presence state: up to ${MAX_PRESENCE_STATE_BYTES} bytes serialized`, () => {
  it(`accepts exactly ${MAX_PRESENCE_STATE_BYTES} bytes and refuses ${MAX_PRESENCE_STATE_BYTES + 1}, counted in UTF-8 bytes`, async () => {
    const room = "bound-presence";
    const alice = await join(room, "alice");
    const bob = await join(room, "bob");
    for (const [pad, label] of [
      ["x", "ascii"],
      ["€", "euro"],
    ] as const) {
      const atBound = stateOf(MAX_PRESENCE_STATE_BYTES, pad);
      const over = stateOf(MAX_PRESENCE_STATE_BYTES + 1, pad);
      alice.send({ type: "presence", state: over, id: `over-${label}` });
      alice.send({ type: "presence", state: atBound, id: `at-${label}` });
      expect(await alice.next("error", (e) => e.id === `over-${label}`)).toMatchObject({ code: "bad_request" });
      const update = await bob.next("presence", (p) => p.event === "update" && p.user.state.s === atBound.s);
      expect("user" in update && update.user.state).toEqual(atBound);
    }
    // the refused states reached nobody: bob saw only the two accepted updates
    expect(bob.frames.filter((f) => f.type === "presence" && f.event === "update")).toHaveLength(2);
    expect(alice.frames.filter((f) => f.type === "error")).toHaveLength(2);
  });
});
