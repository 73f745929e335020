// Idempotency keys are kept while younger than 24 hours or among the newest 10,000, and the
// trim that enforces it runs inside the room's own SQLite.
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { expect, it } from "vitest";
import { IdempotencyKeys, KEEP_MS, KEEP_NEWEST } from "../../src/room/idempotency";
import { call } from "../support/http";
import { tokenFor } from "../support/tokens";

it("forgets a key only when it is both older than 24 h and outside the newest 10,000", async () => {
  const stub = env.ROOMS.get(env.ROOMS.idFromName("idem-retention"));
  await runInDurableObject(stub, (_room, state) => {
    const keys = new IdempotencyKeys(state.storage.sql);
    const now = Date.now();
    const old = now - KEEP_MS - 1000;
    keys.put("old-1", { seq: 1, epoch: "e" }, old);
    keys.put("old-2", { seq: 2, epoch: "e" }, old + 1);
    keys.trim(now);
    // fewer than 10,000 keys: even old ones stay
    expect(keys.get("old-1")).toEqual({ seq: 1, epoch: "e" });

    state.storage.sql.exec(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO idempotency (key, seq, epoch, ts) SELECT 'fresh-' || i, i + 10, 'e', ? FROM n`,
      KEEP_NEWEST,
      now - 1000,
    );
    keys.trim(now);
    // now both old keys are outside the newest 10,000 and older than 24 h: gone
    expect(keys.get("old-1")).toBeUndefined();
    expect(keys.get("old-2")).toBeUndefined();
    expect(keys.get("fresh-1")).toEqual({ seq: 11, epoch: "e" });
    // young keys are kept even beyond the newest 10,000
    keys.put("young-extra", { seq: 99_999, epoch: "e" }, now - 5000);
    keys.trim(now);
    expect(keys.get("young-extra")).toBeDefined();
    expect(keys.get("fresh-1")).toBeDefined();
  });
});

it("trims in a room that hibernates after every keyed publish (the trim is not left to the 100th insert)", async () => {
  const room = "idem-hibernating";
  const stub = env.ROOMS.get(env.ROOMS.idFromName(room));
  const token = await tokenFor("server", room, ["publish"]);
  const post = (key: string) => call("POST", `/rooms/${room}/messages`, { token, body: { data: key }, headers: { "idempotency-key": key } });
  expect((await post("first")).status).toBe(201);
  // an expired key outside the newest 10,000, as a long-lived room accumulates them
  await runInDurableObject(stub, (_room, state) => {
    const now = Date.now();
    state.storage.sql.exec(`INSERT INTO idempotency (key, seq, epoch, ts) VALUES ('server\nancient', 1, 'e', ?)`, now - KEEP_MS - 60_000);
    state.storage.sql.exec(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO idempotency (key, seq, epoch, ts) SELECT 'other\n' || i, i, 'e', ? FROM n`,
      KEEP_NEWEST,
      now - 1000,
    );
  });
  const ancientKept = () =>
    runInDurableObject(stub, (_room, state) => state.storage.sql.exec(`SELECT COUNT(*) AS n FROM idempotency WHERE key = 'server\nancient'`).one().n);
  // a few keyed publishes, each on a fresh instance: far fewer than 100 inserts per wake
  for (const key of ["a", "b", "c"]) {
    await evictDurableObject(stub);
    expect((await post(key)).status).toBe(201);
  }
  expect(await ancientKept()).toBe(0);
});
