import { exports } from "cloudflare:workers";
import { expect, it } from "vitest";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

it("answers /health without auth", async () => {
  const res = await exports.default.fetch("http://x/health");
  expect(await res.json()).toEqual({ ok: true });
});

it("welcomes a socket and echoes its publish with seq 1", async () => {
  const s = await connect("smoke", { token: await tokenFor("alice", "smoke") });
  const welcome = await s.next("welcome");
  expect(welcome).toMatchObject({ room: "smoke", user: { id: "alice", name: "alice" }, seq: 0 });
  s.send({ type: "publish", data: { hello: 1 }, id: "m1" });
  expect(await s.next("message")).toMatchObject({ seq: 1, data: { hello: 1 }, id: "m1", from: { id: "alice" } });
  s.close();
});
