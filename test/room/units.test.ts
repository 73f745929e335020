// The pure pieces behind the edge: rate limiters, capability resolution and config parsing.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { capabilitiesFor, type Identity } from "../../src/auth";
import { ConfigError, loadConfig, shardsFor } from "../../src/config";
import worker from "../../src/index";
import { KeyedBuckets, SlidingCounter, TokenBucket } from "../../src/room/rate-limit";
import { Serial } from "../../src/room/serial";
import { UpgradeLimiter } from "../../src/worker/upgrade-limit";
import { expectFailure } from "../support/edge";
import { tokenFor } from "../support/tokens";

describe("TokenBucket: burst, then a steady refill", () => {
  it("grants exactly `burst` frames at once and refuses the next", () => {
    const b = new TokenBucket(10, 20, 0);
    const granted = Array.from({ length: 21 }, () => b.take(0));
    expect(granted.filter(Boolean)).toHaveLength(20);
    expect(granted[20]).toBe(false);
  });

  it("refills one token per 1/rate seconds, never past the burst", () => {
    const b = new TokenBucket(10, 20, 0);
    for (let i = 0; i < 20; i++) b.take(0);
    expect(b.take(99)).toBe(false); // 0.99 of a token
    expect(b.take(100)).toBe(true); // the partial token survives the failed take
    expect(b.take(100)).toBe(false);
    let after = 0;
    for (let i = 0; i < 40; i++) if (b.take(60_000)) after++;
    expect(after).toBe(20);
  });
});

describe("SlidingCounter: more than `limit` events within the window", () => {
  it("lets `limit` events pass and flags the next one in the same window", () => {
    const c = new SlidingCounter(100, 10_000);
    const flags = Array.from({ length: 101 }, (_, i) => c.record(i));
    expect(flags.slice(0, 100).every((f) => !f)).toBe(true);
    expect(flags[100]).toBe(true);
  });

  it("forgets events older than the window", () => {
    const c = new SlidingCounter(3, 1000);
    for (const t of [0, 1, 2]) expect(c.record(t)).toBe(false);
    expect(c.record(1000)).toBe(false); // t=0 left the window exactly now
    expect(c.record(1001)).toBe(false); // t=1 left too
    expect(c.record(1002)).toBe(false);
    expect(c.record(1003)).toBe(true); // 1000..1003: four within 1 s
  });
});

describe("UpgradeLimiter: attempts per IP per 10 s", () => {
  it("allows `limit` attempts from one IP and refuses the next", () => {
    const l = new UpgradeLimiter();
    const t = 1_000_000;
    const allowed = Array.from({ length: 6 }, () => l.allow("198.51.100.1", 5, t));
    expect(allowed).toEqual([true, true, true, true, true, false]);
  });

  it("counts each IP separately", () => {
    const l = new UpgradeLimiter();
    for (let i = 0; i < 6; i++) l.allow("198.51.100.1", 5, 1_000_000);
    expect(l.allow("198.51.100.2", 5, 1_000_000)).toBe(true);
  });

  it("allows the IP again once its attempts are more than 10 s old", () => {
    const l = new UpgradeLimiter();
    for (let i = 0; i < 6; i++) l.allow("198.51.100.1", 5, 1_000_000);
    expect(l.allow("198.51.100.1", 5, 1_000_000 + 20_001)).toBe(true);
  });

  it("refuses a sixth attempt within 10 s even when the attempts straddle a window boundary", () => {
    const l = new UpgradeLimiter();
    const boundary = 1_000_000; // a multiple of 10 s
    for (let i = 0; i < 5; i++) expect(l.allow("198.51.100.1", 5, boundary - 100)).toBe(true);
    expect(l.allow("198.51.100.1", 5, boundary + 100)).toBe(false);
  });
});

describe("capabilitiesFor: the token's room map", () => {
  const who = (rooms: Identity["rooms"]): Identity => ({ id: "u", name: "u", rooms, exp: 0 });
  const caps = (rooms: Identity["rooms"], room: string) => [...capabilitiesFor(who(rooms), room)].sort();

  it("grants an exact room name its listed capabilities and nothing to other rooms", () => {
    expect(caps({ lobby: ["subscribe", "history"] }, "lobby")).toEqual(["history", "subscribe"]);
    expect(caps({ lobby: ["subscribe"] }, "lobby2")).toEqual([]);
    expect(caps({ lobby: ["subscribe"] }, "lobb")).toEqual([]);
  });

  it("matches `prefix*` against every room starting with the prefix, and only those", () => {
    expect(caps({ "team-*": ["publish"] }, "team-red")).toEqual(["publish"]);
    expect(caps({ "team-*": ["publish"] }, "team-")).toEqual(["publish"]);
    expect(caps({ "team-*": ["publish"] }, "teams")).toEqual([]);
    expect(caps({ "team-*": ["publish"] }, "my-team-red")).toEqual([]);
  });

  it("treats a lone `*` pattern as every room", () => {
    expect(caps({ "*": ["subscribe"] }, "anything")).toEqual(["subscribe"]);
  });

  it("expands the `*` capability to all four", () => {
    expect(caps({ lobby: ["*"] }, "lobby")).toEqual(["admin", "history", "publish", "subscribe"]);
  });

  it("merges the exact entry with every matching prefix entry", () => {
    expect(caps({ "t-1": ["subscribe"], "t-*": ["history"], "*": ["admin"], "x*": ["publish"] }, "t-1")).toEqual(["admin", "history", "subscribe"]);
  });

  it("does not treat `*` inside a pattern as a wildcard", () => {
    expect(caps({ "a*b": ["subscribe"] }, "axb")).toEqual([]);
  });
});

describe("config: nonsense values are rejected at start-up", () => {
  it.each([
    ["RATE_LIMIT_PER_SEC", "0"],
    ["RATE_LIMIT_PER_SEC", "abc"],
    ["RATE_LIMIT_PER_SEC", "2.5"],
    ["RATE_LIMIT_BURST", "-1"],
    ["UPGRADE_LIMIT", "Infinity"],
    ["MAX_MESSAGE_BYTES", "10"],
    ["HISTORY_LIMIT", "0"],
    ["IDLE_TIMEOUT_SEC", "NaN"],
    ["AUTH_JWKS_URL", "not a url"],
    ["DEV_TOKENS", "yes please"],
    ["SHARDED_ROOMS", "live-*:1"],
    ["SHARDED_ROOMS", "live-*:65"],
    ["SHARDED_ROOMS", "live-*"],
    ["SHARDED_ROOMS", "bad room:4"],
    ["SHARDED_ROOMS", "live-*:4,oops"],
  ])("rejects %s=%s", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
  });

  it("documents its defaults by applying them to an empty env", () => {
    expect(loadConfig({})).toMatchObject({
      UPGRADE_LIMIT: 60,
      MAX_MESSAGE_BYTES: 65_536,
      RATE_LIMIT_PER_SEC: 10,
      RATE_LIMIT_BURST: 20,
      HISTORY_LIMIT: 1000,
      IDLE_TIMEOUT_SEC: 90,
      DEV_TOKENS: false,
      ALLOWED_ORIGINS: [],
    });
  });

  it("makes the Worker answer 500 misconfigured instead of serving with a bad value", async () => {
    const bad = { ...env, RATE_LIMIT_PER_SEC: "0" };
    const t = await tokenFor("alice", "cfg");
    const res = await worker.fetch(new Request(`http://x/rooms/cfg/presence?token=${t}`), bad);
    await expectFailure(res, 500, "misconfigured");
    const res2 = await worker.fetch(new Request(`http://x/rooms/cfg/presence?token=${t}`), { ...env, RATE_LIMIT_BURST: "abc" });
    await expectFailure(res2, 500, "misconfigured");
  });

  it("parses once per set of values, even when each request brings a new env object", () => {
    const first = loadConfig({ ...env });
    expect(loadConfig({ ...env })).toBe(first); // the same object: not parsed again
    const other = loadConfig({ ...env, HISTORY_LIMIT: "7" });
    expect(other).not.toBe(first);
    expect(other.HISTORY_LIMIT).toBe(7);
    expect(loadConfig({ ...env }).HISTORY_LIMIT).toBe(first.HISTORY_LIMIT);
  });

  it("refuses webhooks that could not be signed or sent: no secret, no queue binding, not http(s)", async () => {
    const t = await tokenFor("alice", "cfg");
    const hook = { WEBHOOK_URL: "https://backend.example/hooks" };
    for (const broken of [hook, { ...hook, WEBHOOK_SECRET: "" }, { WEBHOOK_URL: "ftp://backend.example/", WEBHOOK_SECRET: "s" }]) {
      expect(() => loadConfig({ ...broken }), JSON.stringify(broken)).toThrow(ConfigError);
      await expectFailure(await worker.fetch(new Request(`http://x/rooms/cfg/presence?token=${t}`), { ...env, ...broken }), 500, "misconfigured");
    }
    const { WEBHOOKS: _queue, ...unbound } = env;
    expect(() => loadConfig({ ...unbound, ...hook, WEBHOOK_SECRET: "s" })).toThrow(/WEBHOOKS queue binding/);
    expect(loadConfig({ ...env, ...hook, WEBHOOK_SECRET: "s" }).WEBHOOK_URL).toBe(hook.WEBHOOK_URL);
  });
});

describe("SHARDED_ROOMS: which rooms are sharded, and into how many", () => {
  it("takes an exact name over prefixes, the longest prefix over shorter ones, and 1 for the rest", () => {
    const config = loadConfig({ SHARDED_ROOMS: "live-*:8, live-big-*:16 ,town-hall:4,live-exact:2" });
    expect(shardsFor(config, "live-match")).toBe(8);
    expect(shardsFor(config, "live-big-final")).toBe(16);
    expect(shardsFor(config, "live-exact")).toBe(2);
    expect(shardsFor(config, "town-hall")).toBe(4);
    expect(shardsFor(config, "town-hall-2")).toBe(1);
    expect(shardsFor(loadConfig({}), "live-match")).toBe(1);
  });
});

describe("KeyedBuckets: a bucket per HTTP publisher, bounded", () => {
  it("limits each key on its own and says when a token is back, in whole seconds", () => {
    const b = new KeyedBuckets(0.5, 2); // one token per 2 s
    expect([b.take("a", 0), b.take("a", 0)]).toEqual([null, null]);
    expect(b.take("a", 0)).toEqual({ retryAfterSec: 2 });
    expect(b.take("a", 1_500)).toEqual({ retryAfterSec: 1 }); // 0.5 s left, rounded up
    expect(b.take("b", 1_500)).toBeNull();
    expect(b.take("a", 2_000)).toBeNull();
  });

  it("stays within MAX_KEYS under a flood of distinct senders, none of them full again yet", () => {
    const max = KeyedBuckets.MAX_KEYS;
    const b = new KeyedBuckets(1, 2);
    b.take("limited", 0);
    b.take("limited", 0); // empty until t = 1 s
    for (let i = 0; i < max - 1; i++) b.take(`idle-${i}`, 0); // each refills by t = 1 s
    expect(b.size).toBe(max);
    expect(b.take("newcomer", 500)).toBeNull(); // nobody is full yet: the least recently used are forgotten
    expect(b.size).toBeLessThanOrEqual(max);
    for (let i = 0; i < 3 * max; i++) b.take(`flood-${i}`, 600);
    expect(b.size).toBeLessThanOrEqual(max);
  });

  it("forgets nothing by dropping full buckets: a sender still limited stays limited", () => {
    const max = KeyedBuckets.MAX_KEYS;
    const b = new KeyedBuckets(1, 2);
    for (let i = 0; i < max - 1; i++) b.take(`idle-${i}`, 0);
    b.take("limited", 2_500);
    b.take("limited", 2_500); // the idle ones are full again by now; this one is empty
    expect(b.take("newcomer", 2_500)).toBeNull(); // at the cap: the full ones are dropped
    expect(b.size).toBe(2);
    expect(b.take("limited", 2_500)).toEqual({ retryAfterSec: 1 });
  });
});

describe("Serial: a shard's intake, one step after another", () => {
  it("runs steps in order, and a failed step fails only its own caller: the steps behind it still run", async () => {
    const failures: unknown[] = [];
    const serial = new Serial((err) => failures.push(err));
    const ran: string[] = [];
    const slow = serial.run(async () => {
      await new Promise((r) => setTimeout(r, 20));
      ran.push("slow");
    });
    const broken = serial.run(() => {
      ran.push("broken");
      throw new Error("root.range failed");
    });
    const after = serial.run(() => (ran.push("after"), 42));
    await slow;
    await expect(broken).rejects.toThrow("root.range failed");
    expect(await after).toBe(42);
    expect(ran).toEqual(["slow", "broken", "after"]);
    expect(failures).toHaveLength(1);
  });
});
