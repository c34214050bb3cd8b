import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context.ts";

/** Gives every request an id (echoed as X-Request-Id) that error logs carry. */
export function requestId(): MiddlewareHandler<AppEnv> {
  return async function requestIdMiddleware(c, next) {
    const incoming = c.req.header("x-request-id");
    const id = incoming && /^[\w.-]{1,64}$/.test(incoming) ? incoming : crypto.randomUUID();
    c.set("requestId", id);
    await next();
    c.header("X-Request-Id", id);
  };
}
