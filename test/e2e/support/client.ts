// A raw Node client for the end-to-end suites: speaks the wire contract directly over `ws`, so
// the suites test the server and not the client SDK. One RoomClient is one logical client; each
// (re)connection is a new socket, and every frame any of its sockets received is kept in order,
// so a suite can check "every message exactly once, in order" across drops and resumes.
import type { Socket } from "node:net";
import WebSocket from "ws";
import type { MessageFrame, PresenceEntry, ServerFrame, WelcomeFrame } from "../../../src/protocol";

export interface Endpoint {
  wsUrl: string;
}

export interface Closed {
  code: number;
  reason: string;
}

export interface ConnectOptions {
  /** resume: send `since`/`epoch` from what this client has seen (default: only on reconnect) */
  resume?: boolean;
  /** explicit resume point, overriding what was seen */
  since?: number;
  epoch?: string;
  /** how long the handshake and welcome may take */
  timeoutMs?: number;
}

const DEFAULT_WAIT_MS = 15_000;

export class RoomClient {
  /** Every frame received on any of this client's sockets, in arrival order. */
  readonly frames: ServerFrame[] = [];
  /** When each of `frames` arrived (performance.now()), so a suite can time an event, not its look at it. */
  readonly arrivedAt: number[] = [];
  /** Every `message` frame received, across reconnections, in arrival order. */
  readonly messages: MessageFrame[] = [];
  /** Non-JSON texts received (the auto-response "pong"). */
  readonly texts: string[] = [];
  /** One entry per socket: its welcome (once received) and its close (once closed). */
  readonly connections: { welcome?: WelcomeFrame; closed?: Closed }[] = [];
  /** Messages replayed by a resume: received on a socket with a seq at or below its welcome's. */
  replayed = 0;
  /** Highest seq seen and the epoch it belongs to: what a resume sends. */
  lastSeq: number | undefined;
  epoch: string | undefined;
  ws: WebSocket | undefined;
  /** Called with each frame as it arrives (latency probes). */
  onFrame: ((frame: ServerFrame) => void) | undefined;
  #waiters = new Set<() => void>();
  #pinger: NodeJS.Timeout | undefined;

  constructor(
    readonly server: Endpoint,
    readonly room: string,
    readonly token: string,
  ) {}

  /** The latest welcome. */
  get welcome(): WelcomeFrame | undefined {
    return this.connections.at(-1)?.welcome;
  }

  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Opens a socket and resolves with its welcome. Resumes from what was seen when asked to or on a reconnect. */
  async connect(opts: ConnectOptions = {}): Promise<WelcomeFrame> {
    const params = new URLSearchParams({ token: this.token });
    const resume = opts.resume ?? this.connections.length > 0;
    const since = opts.since ?? (resume ? this.lastSeq : undefined);
    const epoch = opts.epoch ?? (resume ? this.epoch : undefined);
    if (since !== undefined) params.set("since", String(since));
    if (epoch !== undefined) params.set("epoch", epoch);
    // the room's proof of where this client started, as a real client sends it back
    const proof = resume ? this.connections.findLast((c) => c.welcome)?.welcome?.resume : undefined;
    if (proof !== undefined) params.set("resume", proof);
    const ws = new WebSocket(`${this.server.wsUrl}/rooms/${this.room}/ws?${params.toString()}`, { perMessageDeflate: false });
    const conn: (typeof this.connections)[number] = {};
    this.connections.push(conn);
    this.ws = ws;
    ws.on("message", (data, isBinary) => this.#onMessage(conn, isBinary ? "<binary>" : (data as Buffer).toString()));
    ws.on("close", (code, reason) => {
      conn.closed = { code, reason: reason.toString() };
      if (this.ws === ws) this.stopPinging();
      this.#wake();
    });
    ws.on("error", () => {
      // a failed handshake or a reset: the close event (or the timeout below) reports it
    });
    ws.on("unexpected-response", (_req, res) => {
      conn.closed = { code: -res.statusCode!, reason: `HTTP ${res.statusCode}` };
      res.resume();
      ws.terminate();
      this.#wake();
    });
    return this.until(
      () => {
        if (conn.welcome) return conn.welcome;
        if (conn.closed) throw new Error(`${this.room}: connect failed: ${conn.closed.code} ${conn.closed.reason}`);
        return undefined;
      },
      `welcome in ${this.room}`,
      opts.timeoutMs,
    );
  }

  /** Connects, retrying while the server is unreachable (a restart in progress), as a client's backoff would. */
  async reconnect(opts: ConnectOptions = {}, giveUpAfterMs = 30_000): Promise<WelcomeFrame> {
    const deadline = Date.now() + giveUpAfterMs;
    for (;;) {
      try {
        return await this.connect({ ...opts, timeoutMs: opts.timeoutMs ?? 5_000 });
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
  }

  #onMessage(conn: (typeof this.connections)[number], text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      this.texts.push(text);
      return this.#wake();
    }
    // The room may coalesce frames into an array under load: read it in order.
    for (const frame of (Array.isArray(parsed) ? parsed : [parsed]) as ServerFrame[]) {
      this.frames.push(frame);
      this.arrivedAt.push(performance.now());
      this.onFrame?.(frame);
      if (frame.type === "welcome") {
        conn.welcome = frame;
        this.epoch = frame.epoch;
        // A fresh (non-recovered) view starts at the room's seq; a recovered one continues ours.
        if (frame.recovered !== true) this.lastSeq = frame.seq;
      } else if (frame.type === "message") {
        this.messages.push(frame);
        if (conn.welcome && frame.seq <= conn.welcome.seq) this.replayed++;
        this.lastSeq = Math.max(this.lastSeq ?? 0, frame.seq);
      }
    }
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves with the first non-undefined value of `check`, re-evaluated on every event. */
  until<R>(check: () => R | undefined, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<R> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        let r: R | undefined;
        try {
          r = check();
        } catch (err) {
          done();
          return reject(err instanceof Error ? err : new Error(`the check for ${what} threw`, { cause: err }));
        }
        if (r !== undefined) {
          done();
          resolve(r);
        }
      };
      const done = () => {
        this.#waiters.delete(attempt);
        clearTimeout(timer);
      };
      const timer = setTimeout(() => {
        done();
        const tail = JSON.stringify(this.frames.slice(-5)).slice(0, 800);
        reject(new Error(`${this.token.slice(-6)}: timed out after ${timeoutMs} ms waiting for ${what}; last frames ${tail}`));
      }, timeoutMs);
      this.#waiters.add(attempt);
      attempt();
    });
  }

  /** Waits for a frame received after index `from` (default: any so far) matching `match`. */
  next<T extends ServerFrame["type"]>(
    type: T,
    match: (f: Extract<ServerFrame, { type: T }>) => boolean = () => true,
    opts: { from?: number; timeoutMs?: number } = {},
  ): Promise<Extract<ServerFrame, { type: T }>> {
    const from = opts.from ?? 0;
    return this.until(
      () =>
        this.frames.slice(from).find((f): f is Extract<ServerFrame, { type: T }> => f.type === type && match(f as Extract<ServerFrame, { type: T }>)),
      `a ${type} frame`,
      opts.timeoutMs,
    );
  }

  /** When `frame` (one of `frames`) arrived. */
  arrivalOf(frame: ServerFrame): number {
    const i = this.frames.indexOf(frame);
    if (i < 0) throw new Error("not a frame this client received");
    return this.arrivedAt[i]!;
  }

  /** Waits until this client has seen message `seq`. */
  seen(seq: number, timeoutMs?: number): Promise<true> {
    return this.until(() => ((this.lastSeq ?? 0) >= seq ? true : undefined), `seq ${seq}`, timeoutMs);
  }

  /** Waits for the current socket to close. */
  closed(timeoutMs?: number): Promise<Closed> {
    const conn = this.connections.at(-1);
    return this.until(() => conn?.closed, "close", timeoutMs);
  }

  /**
   * Waits for the server's Close frame on the current socket and returns its code. Unlike
   * `closed()`, this does not wait for the TCP connection to end (ws's public `close` event
   * does): when the room idle-closes a socket that never sent anything, `wrangler dev` keeps the
   * connection open until ws gives up 30 s later (see faults-slow-peers.test.ts). Reads ws 8 internals.
   */
  async closeFrame(timeoutMs = DEFAULT_WAIT_MS): Promise<number> {
    const ws = this.ws as unknown as { _closeFrameReceived: boolean; _closeCode: number } | undefined;
    const deadline = Date.now() + timeoutMs;
    while (!ws?._closeFrameReceived) {
      if (Date.now() > deadline) throw new Error(`no Close frame within ${timeoutMs} ms`);
      await sleep(20);
    }
    return ws._closeCode;
  }

  send(frame: unknown): void {
    this.ws?.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  publish(data: unknown, id?: string): void {
    this.send({ type: "publish", data, ...(id === undefined ? {} : { id }) });
  }

  /** Sends `ping` now and every `everyMs`, as a well-behaved client does (the spec says 25 s). */
  startPinging(everyMs: number): void {
    this.stopPinging();
    const ping = () => {
      if (this.isOpen) this.ws!.send("ping");
    };
    ping();
    this.#pinger = setInterval(ping, everyMs);
  }

  stopPinging(): void {
    clearInterval(this.#pinger);
    this.#pinger = undefined;
  }

  /** A clean close (close frame sent). */
  close(code = 1000): void {
    this.stopPinging();
    this.ws?.close(code);
  }

  /** The connection dies without a close frame: the TCP socket is destroyed under the client. */
  drop(): void {
    this.stopPinging();
    this.ws?.terminate();
  }

  /** Stops reading: the kernel buffers fill and the server's writes back up. Nothing else changes. */
  pauseReading(): void {
    this.#socket()?.pause();
  }

  resumeReading(): void {
    this.#socket()?.resume();
  }

  #socket(): Socket | undefined {
    return (this.ws as unknown as { _socket?: Socket } | undefined)?._socket;
  }

  /** Message seqs received, in arrival order. */
  seqs(): number[] {
    return this.messages.map((m) => m.seq);
  }
}

/** Connects `n` clients at once (bounded concurrency so 300 handshakes don't all race). */
export async function connectAll(clients: RoomClient[], opts: ConnectOptions = {}, concurrency = 50): Promise<WelcomeFrame[]> {
  const out: WelcomeFrame[] = new Array(clients.length);
  let next = 0;
  const worker = async () => {
    while (next < clients.length) {
      const i = next++;
      out[i] = await clients[i]!.connect(opts);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, clients.length) }, worker));
  return out;
}

/** The problems with a client's message stream against the expected seqs `first..last`: duplicates, gaps, disorder. */
export function streamProblems(seqs: number[], first: number, last: number): { lost: number; duplicated: number; outOfOrder: number } {
  const seen = new Set<number>();
  let duplicated = 0;
  let outOfOrder = 0;
  let prev = -Infinity;
  for (const s of seqs) {
    if (seen.has(s)) duplicated++;
    else if (s < prev) outOfOrder++;
    seen.add(s);
    prev = Math.max(prev, s);
  }
  let lost = 0;
  for (let s = first; s <= last; s++) if (!seen.has(s)) lost++;
  return { lost, duplicated, outOfOrder };
}

/** Presence as a map id → entry, for exact comparisons. */
export function presenceById(list: PresenceEntry[]): Record<string, PresenceEntry> {
  return Object.fromEntries(list.map((p) => [p.id, p]));
}

/** Re-evaluates `check` until it returns a value or `timeoutMs` passes (for state read over HTTP or kept by a client). */
export async function eventually<R>(check: () => R | undefined | Promise<R | undefined>, what: string, timeoutMs = 10_000): Promise<R> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await check();
    if (r !== undefined) return r;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** HTTP against the Worker with a bearer token. */
export async function api<T>(
  server: { url: string },
  token: string,
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: T }> {
  const res = await fetch(`${server.url}${path}`, {
    method: init.method ?? "GET",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...init.headers },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
