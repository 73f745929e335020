// The SDK in Node over real sockets (`ws`, since Node 20 has no global WebSocket) against a real
// `wrangler dev`: a restart drops every socket but keeps room storage, so a reconnect resumes.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { WebSocket } from "ws";
import { startDevServer, type DevServer } from "../../scripts/devserver.mjs";
import { RoomClient, type MessageFrame, type RoomClientOptions } from "../../src/client/index";

let server: DevServer;
const clients: RoomClient[] = [];
beforeAll(async () => {
  server = await startDevServer();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await server?.stop();
});

function client(room: string, token: RoomClientOptions["token"], extra: Partial<RoomClientOptions> = {}) {
  const c = new RoomClient({ url: server.url, room, token, WebSocket, ...extra });
  clients.push(c);
  const messages: MessageFrame[] = [];
  c.on("message", (m) => messages.push(m));
  return { c, messages };
}

/** vi.waitFor with a readable failure. */
const until = (check: () => boolean, what: string, timeout = 30_000) =>
  vi.waitFor(
    () => {
      if (!check()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout, interval: 20 },
  );

describe("SDK over ws against wrangler dev", () => {
  it("reconnects across a server restart, refreshes its token, and resumes every message it missed", async () => {
    const room = "node-sdk-resume";
    const mint = (sub: string) => server.token({ sub, rooms: { [room]: ["*"] } });
    // Alice's token function is the test's gate: she cannot reconnect until it is opened, so
    // the messages below are certainly published while she is away.
    let gate: Promise<void> = Promise.resolve();
    let tokenCalls = 0;
    const alice = client(room, async () => {
      tokenCalls++;
      await gate;
      return mint("alice");
    });
    const bob = client(room, () => mint("bob"));
    const welcomes: (boolean | undefined)[] = [];
    alice.c.on("welcome", (w) => welcomes.push(w.recovered));
    await until(() => alice.c.status === "open" && alice.c.presence.has("bob"), "both in");
    expect(await alice.c.publish("one")).toBe(1);
    expect(await bob.c.publish("two")).toBe(2);

    let open!: () => void;
    gate = new Promise((r) => (open = r));
    const restartStart = Date.now();
    await server.restart();
    const restartMs = Date.now() - restartStart;
    await until(() => bob.c.status === "open" && alice.c.status === "reconnecting", "bob back, alice held");
    const meanwhile = [await bob.c.publish("three"), await bob.c.publish("four"), await bob.c.publish("five")];
    const offline = alice.c.publish("alice offline");

    const released = Date.now();
    open();
    expect(await offline).toBe(6);
    await until(() => alice.messages.length === 6, "alice has all six");
    const resumeMs = Date.now() - released;

    expect(meanwhile).toEqual([3, 4, 5]);
    expect(alice.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(alice.messages.map((m) => m.data)).toEqual(["one", "two", "three", "four", "five", "alice offline"]);
    expect(welcomes).toEqual([undefined, true]);
    expect(tokenCalls).toBeGreaterThanOrEqual(2);
    await until(() => bob.messages.length === 6, "bob has all six");
    console.log(`node e2e: wrangler dev restart ${restartMs} ms; gate opened → alice resumed 3 missed + sent 1 in ${resumeMs} ms`);
  });

  it("stops without retrying when the handshake is refused with 401", async () => {
    let attempts = 0;
    const eve = client("node-sdk-auth", () => (attempts++, "not-a-jwt"));
    const codes: string[] = [];
    eve.c.on("error", (e) => codes.push(e.code));
    await until(() => eve.c.status === "closed", "closed", 10_000);
    await new Promise((r) => setTimeout(r, 1500)); // longer than the first backoff windows
    expect({ attempts, codes }).toEqual({ attempts: 1, codes: ["unauthorized"] });
  });
});
