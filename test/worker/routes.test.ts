// The Worker's HTTP surface: routes, room-name validation, the failure body, and the order in
// which checks answer (PROTOCOL: 429, 400, 426, 401, 403 — first failure answers).
import { describe, expect, it } from "vitest";
import { expectFailure, request, upgradeHeaders } from "../support/edge";
import { token, tokenFor } from "../support/tokens";

const ORIGIN_OK = "https://app.example";
const ORIGIN_BAD = "https://evil.example";

describe("health and unknown routes", () => {
  it("answers GET /health with 200 {ok:true} and no auth", async () => {
    const res = await request("/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it.each([
    ["GET", "/nope"],
    ["GET", "/rooms"],
    ["GET", "/rooms/lobby"],
    ["GET", "/rooms/lobby/unknown"],
    ["GET", "/rooms/lobby/ws/"],
    ["GET", "/rooms/a/b/ws"],
    ["GET", "/ROOMS/lobby/presence"],
    ["POST", "/rooms/lobby/ws"],
    ["GET", "/rooms/lobby/messages"],
    ["POST", "/rooms/lobby/history"],
    ["DELETE", "/rooms/lobby/presence"],
    ["GET", "/dev/token?user=a&room=lobby"],
  ])("answers %s %s with 404 not_found", async (method, path) => {
    // Upgrade only on GET: the runtime turns any fetch carrying Upgrade: websocket into a GET.
    const t = await tokenFor("alice", "lobby");
    const auth = { authorization: `Bearer ${t}` };
    const headers = method === "GET" ? upgradeHeaders(auth) : auth;
    await expectFailure(await request(path, { method, headers }), 404, "not_found");
  });
});

describe("room names", () => {
  const VALID = ["a", "A", "0", "a".repeat(64), "a:b.c-d_e", "Z9", "a..b", "team-"];
  const INVALID: [string, string][] = [
    ["empty", ""],
    ["65 chars", "a".repeat(65)],
    ["leading -", "-a"],
    ["leading _", "_a"],
    ["leading .", ".a"],
    ["leading ..", "..a"],
    ["traversal ..%2F", "..%2Fetc"],
    ["encoded slash", "a%2Fb"],
    ["encoded backslash", "a%5Cb"],
    ["unicode", "café"],
    ["unicode lookalike", "lobbу"], // Cyrillic у
    ["space", "a b"],
    ["encoded space", "a%20b"],
    ["percent", "a%25b"],
    ["NUL", "a%00b"],
    ["malformed percent-encoding", "a%E0%A4%A"],
    ["encoded traversal", "%2E%2E%2Fx"],
    ["encoded leading dash", "%2Da"],
    ["plus", "a+b"],
    ["at", "a@b"],
  ];

  it.each(VALID)("accepts %s", async (room) => {
    const res = await request(`/rooms/${room}/presence`, {
      headers: { authorization: `Bearer ${await tokenFor("alice", room, ["subscribe"])}` },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ users: [], count: 0 });
  });

  it("decodes a percent-encoded name before checking it (the SDK sends encodeURIComponent(room))", async () => {
    const room = "a:b.c-d_e";
    const res = await request(`/rooms/${encodeURIComponent(room)}/presence`, {
      headers: { authorization: `Bearer ${await tokenFor("alice", room, ["subscribe"])}` },
    });
    expect(res.status).toBe(200);
    const up = await request(`/rooms/a%3Ab/ws?token=${await tokenFor("alice", "a:b", ["subscribe"])}`, { headers: upgradeHeaders() });
    expect(up.status).toBe(101);
    up.webSocket!.accept();
    up.webSocket!.close(1000);
  });

  it("upgrades into a room whose name is 64 characters", async () => {
    const room = "r".repeat(64);
    const res = await request(`/rooms/${room}/ws?token=${await tokenFor("alice", room)}`, { headers: upgradeHeaders() });
    expect(res.status).toBe(101);
    res.webSocket!.accept();
    res.webSocket!.close(1000);
  });

  for (const action of ["ws", "presence", "history", "stats"] as const) {
    it.each(INVALID)(`answers GET /rooms/<%s>/${action} with 400`, async (_, room) => {
      const t = await tokenFor("alice", "*");
      const res = await request(`/rooms/${room}/${action}`, { headers: upgradeHeaders({ authorization: `Bearer ${t}` }) });
      await expectFailure(res, 400, "bad_request");
    });
  }

  it.each(INVALID)("answers POST /rooms/<%s>/messages with 400, even with a wildcard token", async (_, room) => {
    const t = await tokenFor("alice", "*");
    const res = await request(`/rooms/${room}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${t}`, "content-type": "application/json" },
      body: JSON.stringify({ data: 1 }),
    });
    await expectFailure(res, 400, "bad_request");
  });
});

describe("the upgrade route", () => {
  it("answers 426 upgrade_required without Upgrade: websocket", async () => {
    const t = await tokenFor("alice", "up");
    const res = await request(`/rooms/up/ws?token=${t}`);
    expect(res.headers.get("upgrade")).toBe("websocket");
    await expectFailure(res, 426, "upgrade_required");
  });

  it("answers 426 for an Upgrade header naming another protocol", async () => {
    const t = await tokenFor("alice", "up");
    await expectFailure(await request(`/rooms/up/ws?token=${t}`, { headers: { upgrade: "h2c" } }), 426, "upgrade_required");
  });

  it("accepts the Upgrade header case-insensitively", async () => {
    const t = await tokenFor("alice", "up");
    const res = await request(`/rooms/up/ws?token=${t}`, { headers: { upgrade: "WebSocket" } });
    expect(res.status).toBe(101);
    res.webSocket!.accept();
    res.webSocket!.close(1000);
  });
});

describe("check order: the first failing check answers", () => {
  // Each request fails exactly two checks; the earlier one in the spec's order must answer.
  // (429 first is proved in the upgrade-limit project, where the limit is reachable.)
  it("400 before 426: bad room name and no Upgrade header", async () => {
    const t = await tokenFor("alice", "*");
    await expectFailure(await request(`/rooms/-bad/ws?token=${t}`), 400, "bad_request");
  });

  it("400 before 401: bad room name and no token", async () => {
    await expectFailure(await request("/rooms/-bad/ws", { headers: upgradeHeaders() }), 400, "bad_request");
    await expectFailure(await request("/rooms/-bad/presence"), 400, "bad_request");
  });

  it("426 before 401: no Upgrade header and no token", async () => {
    await expectFailure(await request("/rooms/order/ws"), 426, "upgrade_required");
  });

  it("426 before 403: no Upgrade header and a disallowed Origin", async () => {
    const t = await tokenFor("alice", "order");
    await expectFailure(await request(`/rooms/order/ws?token=${t}`, { headers: { origin: ORIGIN_BAD } }), 426, "upgrade_required");
  });

  it("426 before 403: no Upgrade header and a token without subscribe", async () => {
    const t = await tokenFor("alice", "order", ["history"]);
    await expectFailure(await request(`/rooms/order/ws?token=${t}`), 426, "upgrade_required");
  });

  it("401 before 403: a disallowed Origin and no token", async () => {
    await expectFailure(await request("/rooms/order/ws", { headers: upgradeHeaders({ origin: ORIGIN_BAD }) }), 401, "unauthorized");
  });

  it("401 before 403: a disallowed Origin and a token signed with another secret", async () => {
    const t = await token({ sub: "alice", rooms: { order: ["*"] } }, "not-the-secret");
    await expectFailure(await request(`/rooms/order/ws?token=${t}`, { headers: upgradeHeaders({ origin: ORIGIN_BAD }) }), 401, "unauthorized");
  });

  it("403 for a disallowed Origin even with every capability", async () => {
    const t = await tokenFor("alice", "order", ["*"]);
    await expectFailure(await request(`/rooms/order/ws?token=${t}`, { headers: upgradeHeaders({ origin: ORIGIN_BAD }) }), 403, "forbidden");
  });

  it("401 carries a WWW-Authenticate challenge", async () => {
    const res = await request("/rooms/order/presence");
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /);
    await expectFailure(res, 401, "unauthorized");
  });
});

describe("Origin check (cross-site WebSocket hijacking)", () => {
  const upgradeWith = async (headers: Record<string, string>) =>
    request(`/rooms/origins/ws?token=${await tokenFor("alice", "origins", ["subscribe"])}`, { headers: upgradeHeaders(headers) });

  it("upgrades a listed Origin", async () => {
    const res = await upgradeWith({ origin: ORIGIN_OK });
    expect(res.status).toBe(101);
    res.webSocket!.accept();
    res.webSocket!.close(1000);
  });

  it("upgrades a request with no Origin header (servers, CLIs)", async () => {
    const res = await upgradeWith({});
    expect(res.status).toBe(101);
    res.webSocket!.accept();
    res.webSocket!.close(1000);
  });

  it.each([ORIGIN_BAD, "null", "https://app.example.evil.example", "https://app.example:8443", "http://app.example", "HTTPS://APP.EXAMPLE."])(
    "answers 403 for Origin %j",
    async (origin) => {
      await expectFailure(await upgradeWith({ origin }), 403, "forbidden");
    },
  );
});

describe("POST /rooms/:room/messages body checks", () => {
  const post = async (body: string, headers: Record<string, string> = {}) =>
    request("/rooms/bodies/messages", {
      method: "POST",
      headers: { authorization: `Bearer ${await tokenFor("srv", "bodies", ["publish"])}`, ...headers },
      body,
    });

  it.each([
    ["not JSON", "{"],
    ["an array", "[1]"],
    ["no data", "{}"],
    ["a string", '"x"'],
    ["null", "null"],
  ])("answers 400 for a body that is %s", async (_, body) => {
    await expectFailure(await post(body), 400, "bad_request");
  });

  it("answers 413 too_large for a body over MAX_MESSAGE_BYTES (counted in UTF-8 bytes)", async () => {
    await expectFailure(await post(JSON.stringify({ data: "€".repeat(1400) })), 413, "too_large");
  });

  it("refuses an oversize body that declares no length without reading all of it", async () => {
    let pulled = 0;
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (pulled >= 32 * 1024 * 1024) return c.close();
        pulled += chunk.byteLength;
        c.enqueue(chunk);
      },
    });
    const res = await request("/rooms/bodies/messages", {
      method: "POST",
      headers: { authorization: `Bearer ${await tokenFor("srv", "bodies", ["publish"])}` },
      body,
      duplex: "half",
    } as RequestInit);
    await expectFailure(res, 413, "too_large");
    expect(pulled).toBeLessThanOrEqual(1024 * 1024); // a few chunks of read-ahead, not 32 MiB
  });

  it("accepts a streamed body within the limit", async () => {
    const text = JSON.stringify({ data: "€".repeat(1000) }); // 3000+ bytes, under 4096
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        const bytes = new TextEncoder().encode(text);
        c.enqueue(bytes.slice(0, 1001)); // splits a "€" across chunks
        c.enqueue(bytes.slice(1001));
        c.close();
      },
    });
    const res = await request("/rooms/bodies/messages", {
      method: "POST",
      headers: { authorization: `Bearer ${await tokenFor("srv", "bodies", ["publish", "history"])}` },
      body,
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(201);
    const page = await (
      await request(`/rooms/bodies/history?limit=1&token=${await tokenFor("srv", "bodies", ["history"])}`)
    ).json<{
      messages: { data: unknown }[];
    }>();
    expect(page.messages[0]!.data).toBe("€".repeat(1000));
  });

  it("answers 400 for an Idempotency-Key over 64 characters", async () => {
    await expectFailure(await post('{"data":1}', { "idempotency-key": "k".repeat(65) }), 400, "bad_request");
  });
});
