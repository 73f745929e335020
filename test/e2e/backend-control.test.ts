// The customer's backend in control, against a real `wrangler dev`: webhooks through the local
// Cloudflare Queue to a real HTTP receiver on loopback, moderation over HTTP, and token lifetimes.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, get, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebhookBody, type WebhookEvent } from "../../src/protocol";
import { api, eventually, RoomClient, sleep } from "./support/client";
import { allCaps, devServer, type DevServer } from "./support/server";

const SECRET = "e2e-webhook-secret";
/** The receiver answers 500 to this many deliveries before it starts taking them. */
const FAIL_FIRST = 2;

interface Delivery {
  signature: string;
  body: string;
  status: number;
}

/** The README's receiver check: HMAC-SHA256 of "<t>.<body>", compared in constant time. */
function verify(signature: string, body: string, secret: string): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature);
  if (!m) return false;
  const expected = createHmac("sha256", secret).update(`${m[1]}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(m[2]!, "hex"));
}

let server: DevServer;
let receiver: Server;
const deliveries: Delivery[] = [];

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      const status = deliveries.length < FAIL_FIRST ? 500 : 200;
      deliveries.push({ signature: String(req.headers["x-edgerooms-signature"] ?? ""), body, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const { port } = receiver.address() as AddressInfo;
  server = await devServer({ WEBHOOK_URL: `http://127.0.0.1:${port}/hooks`, WEBHOOK_SECRET: SECRET });
});
afterAll(async () => {
  await server?.stop();
  receiver?.close();
});

/** What a receiver keeps: events of taken (2xx) deliveries, once per id, for one room. */
function kept(room: string): WebhookEvent[] {
  const seen = new Set<string>();
  const out: WebhookEvent[] = [];
  for (const d of deliveries) {
    if (d.status !== 200) continue;
    for (const e of WebhookBody.parse(JSON.parse(d.body)).events) {
      if (e.room !== room || seen.has(e.id)) continue;
      seen.add(e.id);
      out.push(e);
    }
  }
  return out;
}

/** A WebSocket handshake the server refuses: its status and body (fetch in Node will not send an Upgrade). */
function refusedUpgrade(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString("base64");
    const headers = { connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": key };
    const req = get(url, { headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("upgrade", (_res, socket) => (socket.destroy(), reject(new Error("the upgrade was accepted"))));
    req.on("error", reject);
  });
}

const connected = async (room: string, sub: string) => {
  const c = new RoomClient(server, room, await allCaps(server, sub, room));
  await c.connect();
  return c;
};

describe("the backend in control, against wrangler dev", () => {
  it("webhooks: a receiver that fails its first deliveries still gets every event, signed, once per id, in order per room", async () => {
    const room = "hooks-e2e";
    const other = "hooks-e2e-other";
    const alice = await connected(room, "alice");
    const bob = await connected(room, "bob");
    const carol = await connected(other, "carol");
    for (let i = 0; i < 20; i++) alice.publish(i);
    carol.publish("elsewhere");
    const ops = await allCaps(server, "ops", room);
    for (let i = 20; i < 25; i++) expect((await api(server, ops, `/rooms/${room}/messages`, { method: "POST", body: { data: i } })).status).toBe(201);
    await bob.seen(25);
    bob.close();
    await alice.until(() => alice.frames.find((f) => f.type === "presence" && f.event === "leave"), "bob's leave");
    alice.close();
    carol.close();

    const events = await eventually(
      () => {
        const e = kept(room);
        return e.at(-1)?.type === "vacated" && kept(other).at(-1)?.type === "vacated" ? e : undefined;
      },
      "both rooms vacated at the receiver",
      60_000,
    );

    expect(deliveries.slice(0, FAIL_FIRST).map((d) => d.status)).toEqual([500, 500]);
    for (const d of deliveries) expect(verify(d.signature, d.body, SECRET), d.signature).toBe(true);
    expect(verify(deliveries[0]!.signature, deliveries[0]!.body.replace("hooks-e2e", "hooks-e2f"), SECRET)).toBe(false);

    const kinds = events.map((e) =>
      e.type === "message" ? `m${e.seq}` : e.type === "join" || e.type === "leave" ? `${e.type} ${e.user.id}` : e.type,
    );
    const messages = kinds.filter((k) => k.startsWith("m"));
    // Every message once; across bodies a retried one may arrive after later ones, so seq orders them.
    expect(messages.sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))).toEqual(Array.from({ length: 25 }, (_, i) => `m${i + 1}`));
    expect(kinds.filter((k) => !k.startsWith("m")).sort()).toEqual(
      ["join alice", "join bob", "leave alice", "leave bob", "occupied", "vacated"].sort(),
    );
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    expect(kept(other).map((e) => e.type)).toEqual(["occupied", "join", "message", "leave", "vacated"]);
    // Within each body, one room's events keep their order.
    for (const d of deliveries) {
      const own = WebhookBody.parse(JSON.parse(d.body)).events.filter((e) => e.room === room);
      const seqs = own.flatMap((e) => (e.type === "message" ? [e.seq] : []));
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      for (let i = 1; i < own.length; i++) expect(own[i]!.ts).toBeGreaterThanOrEqual(own[i - 1]!.ts);
    }
  });

  it("a kick closes every tab of the user with 4403, the ban refuses reconnects, and it expires", async () => {
    const room = "kick-e2e";
    const tabs = [await connected(room, "mallory"), await connected(room, "mallory")];
    const admin = await allCaps(server, "ops", room);
    const kick = await api<{ closed: number }>(server, admin, `/rooms/${room}/kick`, {
      method: "POST",
      body: { user: "mallory", banSec: 2, reason: "spam" },
    });
    expect(kick).toEqual({ status: 200, body: { closed: 2 } });
    // (closeFrame: wrangler dev holds the TCP connection after the room's Close; see RoomClient.)
    for (const tab of tabs) expect(await tab.closeFrame()).toBe(4403);
    const refused = await refusedUpgrade(`${server.url}/rooms/${room}/ws?token=${await allCaps(server, "mallory", room)}`);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: "banned" } });
    await sleep(2_000);
    expect((await connected(room, "mallory")).welcome).toBeDefined();
    await eventually(() => kept(room).find((e) => e.type === "kick"), "the kick event");
  });

  it("a delete removes the message from history and from every client", async () => {
    const room = "delete-e2e";
    const [a, b] = [await connected(room, "a"), await connected(room, "b")];
    for (const text of ["one", "two", "three"]) a.publish(text);
    await b.seen(3);
    const admin = await allCaps(server, "ops", room);
    expect(await api(server, admin, `/rooms/${room}/messages/2`, { method: "DELETE" })).toEqual({ status: 200, body: { deleted: 2 } });
    for (const c of [a, b]) await c.next("delete", (f) => f.seq === 2);
    const page = await api<{ messages: { seq: number }[] }>(server, admin, `/rooms/${room}/history`);
    expect(page.body.messages.map((m) => m.seq).sort()).toEqual([1, 3]);
    expect(await api(server, admin, `/rooms/${room}/messages/2`, { method: "DELETE" })).toMatchObject({ status: 404 });
    await eventually(() => kept(room).find((e) => e.type === "delete" && e.seq === 2), "the delete event");
  });

  it("a 5-second token closes at its expiry with 4401 unless refreshed; a refreshed one stays open past it", async () => {
    const room = "expiry-e2e";
    const short = (sub: string) => server.token({ sub, rooms: { [room]: ["*"] }, ttlSec: 5 });
    const dave = new RoomClient(server, room, await short("dave"));
    const erin = new RoomClient(server, room, await short("erin"));
    const [dw, ew] = [await dave.connect(), await erin.connect()];
    expect(ew.exp! - Date.now() / 1000).toBeLessThanOrEqual(5);
    erin.send({ type: "refresh", token: await server.token({ sub: "erin", rooms: { [room]: ["*"] }, ttlSec: 60 }), id: "r1" });
    const ack = await erin.next("ack", (f) => f.id === "r1");
    expect(ack.exp! - ew.exp!).toBeGreaterThan(50);
    expect(await dave.closeFrame(15_000)).toBe(4401);
    expect(Date.now() / 1000).toBeGreaterThanOrEqual(dw.exp!);
    // Erin's first token has expired by now; her connection lives on the refreshed one.
    await sleep(Math.max(0, dw.exp! * 1000 + 1_000 - Date.now()));
    erin.publish("still here");
    await erin.next("message", (m) => m.data === "still here");
    expect(erin.isOpen).toBe(true);
    erin.close();
  });
});
