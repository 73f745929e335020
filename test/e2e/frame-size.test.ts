// Frames beyond the runtime's own size limit close with 1009 (PROTOCOL: close codes). The room's
// MAX_MESSAGE_BYTES (64 KiB by default) answers too_large and keeps the connection, but a frame
// the runtime will not even hand over closes it. That limit is workerd's, not ours: measured here
// at 32 MiB (33,554,432 bytes; 1 MiB frames get through to the room), and only a real socket
// shows it — the Workers pool's in-process sockets carried 32 MiB + 1 to the room untouched.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoomClient } from "./support/client";
import { allCaps, devServer, type DevServer } from "./support/server";

const RUNTIME_MAX_BYTES = 32 * 2 ** 20;

let server: DevServer;
beforeAll(async () => {
  server = await devServer({ UPGRADE_LIMIT: "1000" });
});
afterAll(() => server?.stop());

describe("frame size at the runtime's limit", () => {
  it(`answers a ${RUNTIME_MAX_BYTES}-byte frame with too_large and closes on one byte more with 1009, announcing the leave`, async () => {
    const room = "frame-size";
    const observer = new RoomClient(server, room, await allCaps(server, "observer", room));
    const big = new RoomClient(server, room, await allCaps(server, "big", room));
    await observer.connect();
    await big.connect();

    big.send("a".repeat(RUNTIME_MAX_BYTES));
    expect(await big.next("error", () => true, { timeoutMs: 60_000 })).toMatchObject({ code: "too_large" });
    big.publish("still here", "after");
    expect(await observer.next("message", (m) => m.id === "after")).toMatchObject({ from: { id: "big" } });

    big.send("a".repeat(RUNTIME_MAX_BYTES + 1));
    expect(await big.closeFrame(60_000)).toBe(1009);
    await observer.next("presence", (p) => p.event === "leave" && p.user.id === "big", { timeoutMs: 10_000 });
    expect(big.frames.filter((f) => f.type === "error")).toHaveLength(1);
    observer.close();
  });
});
