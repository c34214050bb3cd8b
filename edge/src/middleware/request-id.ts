import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context.ts";

/** Gives every request an id (echoed as X-Request-Id) that error logs carry. */
export function requestId(): MiddlewareHandler<AppEnv> {
  return async function requestIdMiddleware(c, next) {
    const incoming = c.req.header("x-request-id");
    const id = incoming && /^[\w.-]{1,64}$/.test(incoming) ? incoming : crypto.randomUUID();
    c.set("requestId", id);
    await next();
    // On the response itself: c.header() after the handler answered copies the whole Response to add
    // one header. A response with immutable headers (one passed through from fetch) takes that path.
    try {
      c.res.headers.set("X-Request-Id", id);
    } catch {
      c.header("X-Request-Id", id);
    }
  };
}
