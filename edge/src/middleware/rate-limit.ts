import type { MiddlewareHandler } from "hono";
import { AppError } from "../../../shared/errors.ts";
import type { AppEnv } from "../context.ts";
import type { Config } from "../env.ts";

export interface RateLimitRule {
  /** Bucket name; the tenant or credential id is appended. */
  name: string;
  per: "tenant" | "credential";
  limit: (config: Config) => number;
  windowMs: number;
}

/**
 * Applies a RateLimiter bucket (docs/api/sendgrid.md#rate-limits): X-RateLimit-* headers on every answer,
 * 429 with Retry-After once the bucket is empty. Runs after authentication.
 */
export function rateLimit(rule: RateLimitRule): MiddlewareHandler<AppEnv> {
  return async function rateLimitMiddleware(c, next) {
    const p = c.get("principal");
    const subject = p.kind === "operator" ? "operator" : rule.per === "tenant" ? p.tenantId : p.keyId;
    const stub = c.env.RATE_LIMITER.getByName(`${rule.name}:${subject}`);
    const result = await stub.take(rule.limit(c.get("config")), rule.windowMs);
    const headers = {
      "X-RateLimit-Limit": String(result.limit),
      "X-RateLimit-Remaining": String(result.remaining),
      "X-RateLimit-Reset": String(result.resetAt),
    };
    if (!result.allowed) {
      throw new AppError("rate_limited", "Rate limit exceeded", {
        retryAfterSeconds: result.retryAfter,
        headers,
      });
    }
    await next();
    for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
  };
}
