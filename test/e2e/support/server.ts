// One `wrangler dev` per suite file, plus the pieces every suite shares: tokens with all
// capabilities, an HTTP publisher that retries with an Idempotency-Key (so a publish is either
// acknowledged with its seq or retried until it is, across restarts), and a crash watch.
import { startDevServer, type DevServer } from "../../../scripts/devserver.mjs";
import type { PresenceEntry, PublishResult, RoomStats } from "../../../src/protocol";
import { api, presenceById, RoomClient, sleep } from "./client";

export type { DevServer };

export async function devServer(vars: Record<string, string>): Promise<DevServer> {
  return startDevServer({ vars });
}

export async function allCaps(server: DevServer, sub: string, room: string, name?: string): Promise<string> {
  return server.token({ sub, ...(name ? { name } : {}), rooms: { [room]: ["*"] } });
}

export async function clients(server: DevServer, room: string, users: string[]): Promise<RoomClient[]> {
  return Promise.all(users.map(async (u) => new RoomClient(server, room, await allCaps(server, u, room))));
}

/**
 * Publishes over HTTP until stopped, one at a time, `everyMs` apart. Every publish carries an
 * Idempotency-Key and is retried (same key) until acknowledged, so `acked` is exactly the set of
 * seqs the room assigned to this publisher, even when the server is restarted under it.
 */
export class HttpPublisher {
  readonly acked: PublishResult[] = [];
  attempts = 0;
  failures = 0;
  #running = false;
  #done: Promise<void> = Promise.resolve();
  #n = 0;

  constructor(
    readonly server: DevServer,
    readonly room: string,
    readonly token: string,
    readonly everyMs: number,
  ) {}

  get lastSeq(): number {
    return Math.max(0, ...this.acked.map((a) => a.seq));
  }

  /** Publishes one message (retrying with its key until acknowledged) and returns its seq. */
  async publishOne(data: unknown = {}): Promise<PublishResult> {
    const key = `k${this.#n++}-${process.pid}`;
    for (;;) {
      this.attempts++;
      try {
        const res = await fetch(`${this.server.url}/rooms/${this.room}/messages`, {
          method: "POST",
          headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json", "idempotency-key": key },
          body: JSON.stringify({ data: { key, ...(data as object) } }),
          signal: AbortSignal.timeout(5_000),
        });
        if (res.status === 201) {
          const result = await res.json<PublishResult>();
          this.acked.push(result);
          return result;
        }
        await res.body?.cancel();
      } catch {
        // connection refused or reset (a restart): retry the same key
      }
      this.failures++;
      await sleep(50);
    }
  }

  /** Publishes from `lanes` loops at once, each waiting for its acknowledgement and `everyMs`. */
  start(lanes = 1): void {
    this.#running = true;
    const lane = async () => {
      while (this.#running) {
        await this.publishOne({ n: this.#n });
        await sleep(this.everyMs);
      }
    };
    this.#done = Promise.all(Array.from({ length: lanes }, lane)).then(() => undefined);
  }

  /** Stops after the publish in flight is acknowledged. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }
}

/**
 * Crashes seen so far: the dev server gone unasked, sockets the room closed with 1011, and
 * uncaught exceptions wrangler printed (a thrown handler shows there even when the room survives).
 */
export function crashes(server: DevServer, seen: RoomClient[]): number {
  let n = 0;
  try {
    process.kill(server.pid()!, 0);
  } catch {
    n++;
  }
  for (const c of seen) n += c.connections.filter((conn) => conn.closed?.code === 1011).length;
  n += (server.output().match(/uncaught|unhandled|internal error/gi) ?? []).length;
  return n;
}

/** The room's stats (admin route). */
export async function roomStats(server: DevServer, room: string): Promise<RoomStats> {
  const token = await server.token({ sub: "e2e-admin", rooms: { [room]: ["admin"] } });
  return (await api<RoomStats>(server, token, `/rooms/${room}/stats`)).body;
}

/** The room's presence (HTTP route), by user id. */
export async function roomPresence(server: DevServer, room: string): Promise<Record<string, PresenceEntry>> {
  const token = await server.token({ sub: "e2e-observer", rooms: { [room]: ["subscribe"] } });
  return presenceById((await api<{ users: PresenceEntry[] }>(server, token, `/rooms/${room}/presence`)).body.users);
}
