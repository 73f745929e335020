// The SDK against a Room subclass's hooks (worker.ts, mounted at /rt): a refused publish rejects
// with `rejected` and is never sent again; an onJoin refusal ends the client like `forbidden`.
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RoomClient, RoomError, type RoomClientOptions } from "../../src/client/index";
import { tokenFor } from "../support/tokens";
import type { HooksEnv } from "./worker";

const chat = (env as unknown as HooksEnv).CHAT;
const opened: RoomClient[] = [];
afterEach(() => {
  for (const c of opened.splice(0)) c.close();
});

/** A client whose sockets and probe go through the Worker's fetch handler (the pool has no network). */
function client(room: string, uid: string, extra: Partial<RoomClientOptions> = {}) {
  let upgrades = 0;
  const c = new RoomClient({
    url: "http://rooms.test/rt",
    room,
    token: () => tokenFor(uid, room),
    socket: async (url) => {
      upgrades++;
      const res = await exports.default.fetch(url.replace(/^ws/, "http"), { headers: { upgrade: "websocket" } });
      if (!res.webSocket) {
        await res.body?.cancel();
        throw new Error(`upgrade refused with ${res.status}`);
      }
      res.webSocket.accept();
      return res.webSocket;
    },
    fetch: (input, init) => exports.default.fetch(input, init),
    backoff: { baseMs: 20, capMs: 100 },
    pingIntervalMs: 500, // the pool's IDLE_TIMEOUT_SEC is 2
    ...extra,
  });
  opened.push(c);
  return { c, upgrades: () => upgrades };
}

describe("the SDK and the hooks", () => {
  it("rejects a refused publish with RoomError rejected and does not send it again", async () => {
    const room = "sdk-refuse";
    const { c } = client(room, "alice");
    const refused = await c.publish({ text: "spam" }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(RoomError);
    expect([(refused as RoomError).code, (refused as RoomError).message]).toEqual(["rejected", "no spam here"]);
    // The next publish's echo comes after anything the client could have re-sent before it.
    expect(await c.publish({ text: "fine" })).toBe(1);
    const log = await chat.get(chat.idFromName(room)).hookLog();
    expect(log.filter((call) => call.hook === "publish")).toHaveLength(2);
  }, 15_000);

  it("treats an onJoin refusal as final: one error with code rejected, status closed, no retry", async () => {
    const { c, upgrades } = client("sdk-join", "blocked-sdk");
    const errors: RoomError[] = [];
    c.on("error", (err) => errors.push(err));
    await vi.waitFor(() => expect(c.status).toBe("closed"), { timeout: 10_000 });
    expect(errors.map((e) => e.code)).toEqual(["rejected"]);
    expect(upgrades()).toBe(1);
  }, 15_000);
});
