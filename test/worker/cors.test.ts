// A browser app on an allowed origin can read the HTTP routes' answers, errors included; other
// origins get no allow header. ALLOWED_ORIGINS is https://app.example in this project.
import { describe, expect, it } from "vitest";
import { call } from "../support/http";
import { tokenFor } from "../support/tokens";

describe("CORS on the HTTP room routes", () => {
  it("lets an allowed origin read answers, a 401 included, and no other origin", async () => {
    const room = "cors-read";
    const token = await tokenFor("alice", room);
    const ok = await call("GET", `/rooms/${room}/presence`, { token, headers: { origin: "https://app.example" } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(ok.headers.get("access-control-expose-headers")).toBe("retry-after"); // a 429/503's wait
    const unauthorized = await call("GET", `/rooms/${room}/presence?token=nope`, { headers: { origin: "https://app.example" } });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get("access-control-allow-origin")).toBe("https://app.example");
    const other = await call("GET", `/rooms/${room}/presence`, { token, headers: { origin: "https://evil.example" } });
    expect(other.status).toBe(200); // the token still decides access; CORS only decides who may read it
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    expect(other.headers.get("vary")).toMatch(/Origin/);
  });

  it("answers preflights for allowed origins only", async () => {
    const room = "cors-preflight";
    const pre = await call("OPTIONS", `/rooms/${room}/messages`, {
      headers: { origin: "https://app.example", "access-control-request-method": "POST" },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-methods")).toContain("POST");
    expect(pre.headers.get("access-control-allow-headers")).toContain("idempotency-key");
    // An admin page deletes messages from the browser too.
    const del = await call("OPTIONS", `/rooms/${room}/messages/3`, {
      headers: { origin: "https://app.example", "access-control-request-method": "DELETE" },
    });
    expect(del.status).toBe(204);
    expect(del.headers.get("access-control-allow-methods")).toContain("DELETE");
    const denied = await call("OPTIONS", `/rooms/${room}/messages`, { headers: { origin: "https://evil.example" } });
    expect(denied.status).toBe(403);
    const ws = await call("OPTIONS", `/rooms/${room}/ws`, { headers: { origin: "https://app.example" } });
    expect(ws.status).toBe(404);
  });
});
