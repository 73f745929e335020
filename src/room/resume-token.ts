// Resume tokens: the room's proof of where a user's connections started, so a resume without
// the `history` capability replays only what that user could have received live.
//
// `since` is a number any client can make up, so by itself it proves nothing: a subscribe-only
// token reconnecting with `since=0` would otherwise read the whole retained history, which the
// `history` capability exists to guard. Each welcome therefore carries a token the room signs
// with an HMAC key that never leaves its storage, binding room, epoch, user and the seq the
// user's first connection started at. A resume that presents a valid token carries that start
// forward into the next welcome's token, so a client that keeps reconnecting keeps its gap-free
// resume; one that presents nothing (or a forged, foreign or other-epoch token) starts now.
//
// Signed, not stored: a row per connection would add a write to every handshake and a table
// to trim, while a MAC costs one HMAC per welcome and nothing at rest.

const VERSION = "r1";
/** Truncated HMAC-SHA256: 128 bits is far past guessing over a network. */
const MAC_BYTES = 16;
/** The longest token the Worker passes on; anything longer is not one of ours. */
export const MAX_RESUME_TOKEN_LENGTH = 128;

/** What a token binds, besides the start it proves. */
export interface ResumeScope {
  room: string;
  epoch: string;
  user: string;
}

export class ResumeTokens {
  readonly #key: Promise<CryptoKey>;

  /** `secret`: the room's own random key (kept in its storage, see context.ts). */
  constructor(secret: string) {
    const raw = new TextEncoder().encode(secret);
    this.#key = crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  }

  async issue(scope: ResumeScope, start: number): Promise<string> {
    return `${VERSION}.${start}.${await this.#mac(scope, start)}`;
  }

  /**
   * The token a welcome carries, and the start it proves. A token verify() proved (`given`, its
   * start `proven`) is handed back: it already says all a new one would. Otherwise a new one starts
   * at `head()`, signed again if a publish moved the head during the await, so the start is never
   * before the seq the welcome carries.
   */
  async forWelcome(
    scope: ResumeScope,
    given: string | undefined,
    proven: number | undefined,
    head: () => number,
  ): Promise<{ start: number; token: string }> {
    if (proven !== undefined && given !== undefined) return { start: proven, token: given };
    for (;;) {
      const start = head();
      const token = await this.issue(scope, start);
      if (start === head()) return { start, token };
    }
  }

  /** The start a token proves for this scope, or undefined when it proves nothing. */
  async verify(token: string | undefined, scope: ResumeScope): Promise<number | undefined> {
    if (token === undefined) return undefined;
    const m = /^r1\.(0|[1-9][0-9]{0,15})\.([A-Za-z0-9_-]{22})$/.exec(token);
    if (!m) return undefined;
    const start = Number(m[1]);
    if (!Number.isSafeInteger(start)) return undefined;
    const expected = await this.#mac(scope, start);
    return timingSafeEqual(expected, m[2]!) ? start : undefined;
  }

  async #mac(scope: ResumeScope, start: number): Promise<string> {
    // Newline-separated, the all-digit start last: room names and epochs hold no newline, so
    // two different scopes or starts can never spell the same message.
    const message = new TextEncoder().encode(`${VERSION}\n${scope.room}\n${scope.epoch}\n${scope.user}\n${start}`);
    const sig = new Uint8Array(await crypto.subtle.sign("HMAC", await this.#key, message));
    return base64url(sig.subarray(0, MAC_BYTES));
  }
}

function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  const enc = new TextEncoder();
  return crypto.subtle.timingSafeEqual(enc.encode(a), enc.encode(b));
}
