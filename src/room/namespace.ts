// Which binding a room's own class is bound under. A library user names it (`createRooms({ room })`),
// but a room also needs it by itself (a giant room's root calls its shards, a shard its root, an
// alarm may wake either), and nothing tells a Durable Object its binding. Its id does: an id made
// from a name belongs to exactly one namespace, so the namespace whose id for this object's name
// is this object's id is its own.

/** The namespace in `env` that `id` (the id of the object named `name`) belongs to. */
export function ownNamespace<T extends Rpc.DurableObjectBranded | undefined>(
  env: object,
  id: DurableObjectId,
  name: string,
): DurableObjectNamespace<T> {
  for (const value of Object.values(env)) {
    if (isNamespace(value) && value.idFromName(name).equals(id) === true) return value as unknown as DurableObjectNamespace<T>;
  }
  throw new Error(`no Durable Object binding in env holds room ${name}: bind the Room class in wrangler.toml`);
}

/**
 * A service binding answers any method name (it may be an RPC call), so one with `fetch` is
 * skipped before anything is called on it; a namespace has none.
 */
export function isNamespace(value: unknown): value is DurableObjectNamespace {
  if (typeof value !== "object" || value === null) return false;
  const v = value as { idFromName?: unknown; fetch?: unknown };
  return typeof v.fetch !== "function" && typeof v.idFromName === "function";
}
