// Idempotency keys are kept while younger than 24 hours or among the newest 10,000, and the
// trim that enforces it runs inside the room's own SQLite.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { expect, it } from "vitest";
import { IdempotencyKeys, KEEP_MS, KEEP_NEWEST } from "../../src/idempotency";

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
