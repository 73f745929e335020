// Cross-origin reads of the HTTP room routes, so a browser app served from another origin can
// page history, read presence, publish, and tell a 401/403 from an outage (the SDK probes
// /rooms/:room/join after a refused handshake, which browsers do not otherwise explain). CORS is not
// auth: every route still needs its token; it only lets an allowed page read the answer.
import type { Config } from "../config";

/** An Origin may use the rooms when no list is configured, or when it is on the list. */
export function originAllowed(origin: string, config: Config): boolean {
  return config.ALLOWED_ORIGINS.length === 0 || config.ALLOWED_ORIGINS.includes(origin);
}

/** Adds the allow headers to a plain HTTP answer (errors included) for an allowed Origin. */
export function withCors(response: Response, request: Request, config: Config): Response {
  const origin = request.headers.get("origin");
  response.headers.append("vary", "Origin");
  if (origin !== null && originAllowed(origin, config)) {
    response.headers.set("access-control-allow-origin", origin);
    // Not a CORS-safelisted header: without this a page cannot read how long a 429/503 asks it to wait.
    response.headers.set("access-control-expose-headers", "retry-after");
  }
  return response;
}

/** Answers a preflight: 204 with what the routes accept, or 403 for an origin not allowed. */
export function preflight(request: Request, config: Config): Response {
  const origin = request.headers.get("origin");
  if (origin === null || !originAllowed(origin, config)) return new Response(null, { status: 403 });
  return new Response(null, {
    status: 204,
    headers: {
      "access-control-allow-origin": origin,
      "access-control-allow-methods": "GET, POST, DELETE",
      "access-control-allow-headers": "authorization, content-type, idempotency-key",
      "access-control-max-age": "600",
      vary: "Origin",
    },
  });
}
