// Every error a socket can be sent says what was wrong in its `message`: clients show it to
// developers, so "bad_request" alone is not enough (PROTOCOL: error frames carry code and message).
import { describe, expect, it } from "vitest";
import { connect, type TestSocket } from "../support/socket";
import { tokenFor } from "../support/tokens";

const MAX_BYTES = 4096; // the room project's MAX_MESSAGE_BYTES

let n = 0;
async function join(room: string, user: string, caps?: string[]): Promise<TestSocket> {
  const s = await connect(room, { token: await tokenFor(user, room, caps) });
  await s.next("welcome");
  return s;
}

/** What each bad frame is answered with: its code, and words its message must contain. */
const CASES: [what: string, frame: unknown, code: string, says: RegExp][] = [
  ["text that is not JSON", "hello", "bad_request", /not JSON/i],
  ["a JSON array", [{ type: "publish", data: 1 }], "bad_request", /array/],
  ["an unknown type", { type: "shout", data: 1 }, "bad_request", /publish.*history.* at type/],
  ["a publish without data", { type: "publish" }, "bad_request", /data/],
  ["a direct without to", { type: "direct", data: 1 }, "bad_request", /\bto\b/],
  ["an id over 64 characters", { type: "publish", data: 1, id: "i".repeat(65) }, "bad_request", /64 characters at id/],
  ["presence state that is not an object", { type: "presence", state: 1 }, "bad_request", /state/],
  ["presence state over 1 KiB", { type: "presence", state: { s: "x".repeat(1100) } }, "bad_request", /1024 bytes/],
  ["a history limit of 101", { type: "history", limit: 101 }, "bad_request", /limit/],
  ["a frame over MAX_MESSAGE_BYTES", { type: "publish", data: "a".repeat(MAX_BYTES) }, "too_large", new RegExp(`${MAX_BYTES} bytes`)],
  ["a direct to someone absent", { type: "direct", to: "nobody", data: 1 }, "not_found", /nobody/],
];

describe("socket errors say what was wrong", () => {
  it.each(CASES)("%s", async (_, frame, code, says) => {
    const room = `errors-${n++}`;
    const s = await join(room, "alice");
    s.send(frame);
    const err = await s.next("error");
    expect(err.code).toBe(code);
    expect(err.message, `${code}: "${err.message}"`).toMatch(says);
    s.close();
  });

  it("a binary frame", async () => {
    const s = await join(`errors-${n++}`, "alice");
    s.ws.send(new TextEncoder().encode("{}"));
    expect(await s.next("error")).toMatchObject({ code: "bad_request", message: expect.stringMatching(/binary/) });
    s.close();
  });

  it("a frame the token's capabilities do not allow names the capability", async () => {
    const room = `errors-${n++}`;
    const s = await join(room, "reader", ["subscribe"]);
    s.send({ type: "publish", data: 1, id: "p" });
    s.send({ type: "history", id: "h" });
    expect(await s.next("error", (e) => e.id === "p")).toMatchObject({ code: "forbidden", message: expect.stringMatching(/publish/) });
    expect(await s.next("error", (e) => e.id === "h")).toMatchObject({ code: "forbidden", message: expect.stringMatching(/history/) });
    s.close();
  });

  it("a frame over the rate limit", async () => {
    const s = await join(`errors-${n++}`, "alice");
    for (let i = 0; i < 30; i++) s.send({ type: "publish", data: i });
    const err = await s.next("error");
    expect(err).toMatchObject({ code: "rate_limited", message: expect.stringMatching(/too many frames/) });
    s.close();
  });
});
