// Every limit and default in one place: the env is parsed once per isolate, each field says its
// default, and nonsense values are rejected at start-up instead of surfacing mid-conversation.
import { z } from "zod";

const int = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);
/** A comma list in an env var, or a list in code (createRooms' config). */
const list = z
  .union([z.string(), z.array(z.string())])
  .optional()
  .transform((s) => (Array.isArray(s) ? s : (s ?? "").split(",")).map((x) => x.trim()).filter(Boolean));
const bool = z
  .union([z.boolean(), z.enum(["true", "false", "1", "0", ""])])
  .optional()
  .transform((v) => v === true || v === "true" || v === "1");
const optionalString = z
  .string()
  .optional()
  .transform((s) => (s ? s : undefined));

/** One `pattern:shards` entry of SHARDED_ROOMS: a room name, or a prefix ending in `*`. */
const ShardRule = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\*?:[0-9]+$|^\*:[0-9]+$/, "each entry is pattern:shards, e.g. live-*:8")
  .transform((entry) => {
    const at = entry.lastIndexOf(":");
    const pattern = entry.slice(0, at);
    return { pattern, prefix: pattern.endsWith("*"), shards: Number(entry.slice(at + 1)) };
  })
  .refine((r) => r.shards >= 2 && r.shards <= 64, "shards must be 2 to 64");
export type ShardRule = z.infer<typeof ShardRule>;

export const ConfigSchema = z
  .object({
    /** HS256 shared secret. No secret and no JWKS URL means every protected route answers 503. */
    AUTH_SECRET: optionalString,
    /** JWKS endpoint for RS256/ES256/EdDSA tokens. Default: none. */
    AUTH_JWKS_URL: optionalString.pipe(z.url().optional()),
    /** Required `iss` claim when set. Default: not checked. */
    AUTH_ISSUER: optionalString,
    /** Required `aud` claim when set. Default: not checked. */
    AUTH_AUDIENCE: optionalString,
    /** Comma list of origins allowed to upgrade. Default: empty (Origin not checked). */
    ALLOWED_ORIGINS: list,
    /** Upgrade attempts per 10 s per client IP. Default 60. */
    UPGRADE_LIMIT: int(60, 1, 1_000_000),
    /** Largest client frame in UTF-8 bytes, and largest HTTP publish body. Default 65536. */
    MAX_MESSAGE_BYTES: int(65_536, 256, 1_048_576),
    /** Token-bucket refill per connection, frames per second. Default 10. */
    RATE_LIMIT_PER_SEC: int(10, 1, 1_000_000),
    /** Token-bucket capacity per connection. Default 20. */
    RATE_LIMIT_BURST: int(20, 1, 1_000_000),
    /** HTTP publishes per second per sender (`sub`) per room, refilled into the next bucket. Default 50. */
    PUBLISH_RATE_PER_SEC: int(50, 1, 1_000_000),
    /** HTTP publishes one sender may make at once in a room. Default 100. */
    PUBLISH_BURST: int(100, 1, 1_000_000),
    /** Messages retained per room for history and resume. Default 1000. */
    HISTORY_LIMIT: int(1000, 1, 1_000_000),
    /** Above this many users a room tells presence as a count, not per user (crowd.ts). Default 1000. */
    PRESENCE_LIMIT: int(1000, 1, 1_000_000),
    /** Seconds of silence (not even `ping`) after which a socket is closed with 4408. Default 90. */
    IDLE_TIMEOUT_SEC: int(90, 1, 86_400),
    /** Rooms one connection (GET /connect) may hold at once; the next subscribe is refused `too_many_rooms`. Default 100. */
    MAX_ROOMS_PER_CONNECTION: int(100, 1, 10_000),
    /**
     * Frames a connection (GET /connect) relays, both ways, before the Worker closes it with 1012
     * so the client resumes on a fresh request: the Worker holds the socket as one request, whose
     * CPU budget is not topped up per message (docs/architecture.md). Default 1000000.
     */
    MAX_FRAMES_PER_CONNECTION: int(1_000_000, 100, 100_000_000),
    /** Milliseconds a Room subclass's hook may take before what it decides is refused as `internal` (room/hooks.ts). Default 10000. */
    HOOK_TIMEOUT_MS: int(10_000, 1, 60_000),
    /**
     * Rooms served by several shard objects (room/shards.ts): a comma list of `pattern:shards`,
     * `pattern` a room name or a prefix ending in `*`, `shards` 2–64. Default: none.
     */
    SHARDED_ROOMS: list.pipe(z.array(ShardRule)),
    /** Adds GET /dev/token. Set only by the local dev script, never in wrangler.toml. Default false. */
    DEV_TOKENS: bool,
    /** Where the room's events are POSTed (room/webhooks.ts, worker/webhooks.ts). Default: none, no events. */
    WEBHOOK_URL: optionalString.pipe(z.url({ protocol: /^https?$/ }).optional()),
    /** HMAC-SHA256 key of the webhook signature (a secret); required when WEBHOOK_URL is set. */
    WEBHOOK_SECRET: optionalString,
  })
  .refine((c) => !c.WEBHOOK_URL || c.WEBHOOK_SECRET, {
    // Fail closed: events are never sent unsigned.
    error: "WEBHOOK_URL needs WEBHOOK_SECRET (events are never sent unsigned)",
    path: ["WEBHOOK_SECRET"],
  });
export type Config = z.infer<typeof ConfigSchema>;

export class ConfigError extends Error {}

/** The names of the settings above: env vars, or createRooms' `config` keys. */
export type ConfigKey = keyof Config;

/**
 * Settings given in code (`createRooms({ config })`), over the env's: the env vars' names, with
 * values as wrangler.toml would give them, or as numbers, booleans and lists.
 */
export type ConfigOverrides = { [K in Exclude<ConfigKey, "DEV_TOKENS">]?: ConfigValue };

/** A setting's value as an env var (wrangler.toml `[vars]` may hold strings, numbers, booleans or lists) or in code. */
export type ConfigValue = string | number | boolean | string[];

/**
 * The script's overrides, set once by createRooms. Module state on purpose: a room's object is
 * made by the runtime, not by createRooms, and reads them in the same module instance, because
 * createRooms runs where the Worker's module is evaluated (its top level), in every isolate.
 */
let overrides: { given: ConfigOverrides; merged: WeakMap<object, object> } | undefined;

/** Registers createRooms' `config`; each value is checked now, so a typo fails at start-up, not mid-request. */
export function overrideConfig(given: ConfigOverrides): void {
  const shape = ConfigSchema.shape as Record<string, z.ZodType>;
  for (const [key, value] of Object.entries(given)) {
    // Fail closed: a dev convenience set in code would ship with the bundle.
    if (key === "DEV_TOKENS") throw new ConfigError("config: DEV_TOKENS is for the local dev script (wrangler dev --var), never in code");
    const field = shape[key];
    if (!field) throw new ConfigError(`config: unknown setting ${key}; the settings are ${KEYS.join(", ")}`);
    const parsed = field.safeParse(value);
    if (!parsed.success) throw new ConfigError(`config.${key}: ${z.prettifyError(parsed.error)}`);
  }
  if (overrides && canonical(overrides.given) !== canonical(given)) {
    throw new ConfigError("createRooms: a Worker script has one config (its rooms read it too); pass the same config to every call");
  }
  overrides ??= { given, merged: new WeakMap() };
}

/** A config's values in key order: two configs are the same whatever order their keys were written in. */
function canonical(config: ConfigOverrides): string {
  return JSON.stringify(Object.entries(config).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** The env with the overrides on top, made once per env object. */
function withOverrides(env: object): object {
  if (!overrides) return env;
  let merged = overrides.merged.get(env);
  if (!merged) overrides.merged.set(env, (merged = { ...env, ...overrides.given }));
  return merged;
}

const cache = new WeakMap<object, Config>();
const KEYS = Object.keys(ConfigSchema.shape) as (keyof Config)[];
/** The last env parsed, by value: the runtime may hand each request a new env object with the same values. */
let last: { raw: unknown[]; config: Config } | undefined;

/**
 * Parses the Worker env once per isolate: per env object, and else per set of values (the
 * profile showed a fresh parse, ~30 µs, on every request under wrangler dev).
 */
export function loadConfig(given: object): Config {
  const env = withOverrides(given);
  let config = cache.get(env);
  if (config) return config;
  const values = env as Record<string, unknown>;
  const raw = [...KEYS.map((k) => values[k]), Boolean(values.WEBHOOKS)];
  if (last && raw.every((v, i) => v === last!.raw[i])) {
    cache.set(env, last.config);
    return last.config;
  }
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) throw new ConfigError(z.prettifyError(parsed.error));
  config = parsed.data;
  // Events a room cannot send would be lost: refuse to start instead.
  if (config.WEBHOOK_URL && !values.WEBHOOKS) {
    throw new ConfigError("WEBHOOK_URL is set, but the WEBHOOKS queue binding is missing from wrangler.toml");
  }
  cache.set(env, config);
  last = { raw, config };
  return config;
}

/**
 * How many shard objects serve `room`: 1 (an ordinary room) unless SHARDED_ROOMS names it. An
 * exact name wins over prefixes; among prefixes, the longest.
 */
export function shardsFor(config: Config, room: string): number {
  let best: ShardRule | undefined;
  for (const rule of config.SHARDED_ROOMS) {
    if (!rule.prefix) {
      if (rule.pattern === room) return rule.shards;
    } else if (room.startsWith(rule.pattern.slice(0, -1)) && (!best || rule.pattern.length > best.pattern.length)) {
      best = rule;
    }
  }
  return best?.shards ?? 1;
}
