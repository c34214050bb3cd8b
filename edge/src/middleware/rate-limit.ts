import type { MiddlewareHandler } from "hono";
import { AppError } from "../../../shared/errors.ts";
import type { AppEnv } from "../context.ts";
import type { Config } from "../env.ts";
import { LeasedBucket } from "../objects/rate-limiter.ts";

export interface RateLimitRule {
  /** Bucket name; the tenant or credential id is appended. */
  name: string;
  per: "tenant" | "credential";
  limit: (config: Config) => number;
  windowMs: number;
}

/**
 * This isolate's side of every bucket it has used: leased tokens, spent without a round trip
 * (edge/src/objects/rate-limiter.ts states the bound). Capped, least recently used dropped first; a
 * dropped bucket's unspent tokens are simply not returned, which only makes the limit stricter.
 */
const MAX_BUCKETS = 10_000;
const buckets = new Map<string, LeasedBucket>();

function bucketFor(name: string): LeasedBucket {
  let bucket = buckets.get(name);
  if (bucket) buckets.delete(name);
  else bucket = new LeasedBucket();
  buckets.set(name, bucket);
  while (buckets.size > MAX_BUCKETS) buckets.delete(buckets.keys().next().value as string);
  return bucket;
}

/**
 * Applies a RateLimiter bucket (docs/api/sendgrid.md#rate-limits): X-RateLimit-* headers on every answer,
 * 429 with Retry-After once the bucket is empty. Runs after authentication. A warm isolate answers
 * from its lease; X-RateLimit-Remaining is what the object had left at the last lease plus what this
 * isolate still holds.
 */
export function rateLimit(rule: RateLimitRule): MiddlewareHandler<AppEnv> {
  return async function rateLimitMiddleware(c, next) {
    const p = c.get("principal");
    const subject = p.kind === "operator" ? "operator" : rule.per === "tenant" ? p.tenantId : p.keyId;
    const name = `${rule.name}:${subject}`;
    // The stub is made for this request: a stub (an I/O object) must not outlive the request that made it.
    const stub = c.env.RATE_LIMITER.getByName(name);
    const result = await bucketFor(name).take(rule.limit(c.get("config")), rule.windowMs, stub, (work) =>
      c.executionCtx.waitUntil(work),
    );
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
