export interface TokenClaims {
  sub: string;
  name?: string;
  rooms: Record<string, string[]>;
  ttlSec?: number;
}
export interface DevServer {
  url: string;
  wsUrl: string;
  port: number;
  secret: string;
  persistTo: string;
  output(): string;
  token(claims: TokenClaims): Promise<string>;
  stop(): Promise<void>;
  restart(): Promise<void>;
  pid(): number | undefined;
  inspectorPort(): number;
}
export function freePort(): Promise<number>;
export function mintToken(secret: string, claims: TokenClaims): Promise<string>;
export function startDevServer(opts?: {
  vars?: Record<string, string>;
  /** a wrangler config other than ./wrangler.toml, relative to the repo (the bench's) */
  config?: string;
  /** run wrangler there (with its wrangler.toml) instead of in the repo: another project's Worker */
  cwd?: string;
  /** the path readiness is polled on (default /health) */
  health?: string;
  port?: number;
  persistTo?: string;
  log?: (line: string) => void;
}): Promise<DevServer>;
