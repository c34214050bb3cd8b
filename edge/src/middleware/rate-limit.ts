import type { Context, MiddlewareHandler, Next } from "hono";
import { matchedRoutes } from "hono/route";
import { AppError } from "../../../shared/errors.ts";
import type { AppEnv } from "../context.ts";
import { LeasedBucket } from "../objects/rate-limiter.ts";
import {
  effectiveLimit,
  overridesOf,
  RATE_LIMITS,
  type RateLimitRule,
} from "../services/rate-limit-table.ts";

export type { RateLimitRule };

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

/** The middleware functions made by `rateLimit`: a route that has one does not spend from `default`. */
const limiters = new WeakSet<object>();

/**
 * Spends one token of `rule`'s bucket for the request's tenant or credential (after
 * authentication). The limit is the tenant's override of the row when it has one
 * (services/rate-limit-table.ts). X-RateLimit-* go on every answer; 429 with Retry-After once the
 * bucket is empty. A warm isolate answers from its lease; X-RateLimit-Remaining is what the object
 * had left at the last lease plus what this isolate still holds.
 */
async function spend(c: Context<AppEnv>, rule: RateLimitRule, next: Next): Promise<void> {
  const p = c.get("principal");
  const subject = p.kind === "operator" ? "operator" : rule.per === "tenant" ? p.tenantId : p.keyId;
  return spendFrom(c, rule, subject, p.kind === "operator" ? null : p.tenantId, next);
}

/** Spends from the bucket `rule.name:subject`, with `tenantId`'s override of the row (none for the operator). */
async function spendFrom(
  c: Context<AppEnv>,
  rule: RateLimitRule,
  subject: string,
  tenantId: string | null,
  next: Next,
): Promise<void> {
  const name = `${rule.name}:${subject}`;
  const config = c.get("config");
  const overrides =
    tenantId === null ? {} : await overridesOf(c.get("db"), tenantId, config.AUTH_CACHE_TTL_MS);
  const limit = effectiveLimit(rule, config, overrides);
  // The stub is made for this request: a stub (an I/O object) must not outlive the request that made it.
  const stub = c.env.RATE_LIMITER.getByName(name);
  const result = await bucketFor(name).take(limit, rule.windowMs, stub, (work) =>
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
  // A route with two rows (a create limit inside its surface's) answers with the inner, stricter one.
  for (const [k, v] of Object.entries(headers)) if (!c.res.headers.has(k)) c.res.headers.set(k, v);
}

/** A route's (or a surface's) row of the table (docs/api/sendgrid.md#rate-limits). */
export function rateLimit(rule: RateLimitRule): MiddlewareHandler<AppEnv> {
  const handler: MiddlewareHandler<AppEnv> = async function rateLimitMiddleware(c, next) {
    await spend(c, rule, next);
  };
  limiters.add(handler);
  return handler;
}

/**
 * A per-tenant row for a caller that is no API credential (a dashboard session, whose tenant
 * `tenantOf` reads): the same bucket as the API's for that tenant, so both together stay in the limit.
 */
export function tenantRateLimit<E extends { Variables: AppEnv["Variables"] }>(
  rule: RateLimitRule,
  tenantOf: (c: Context<E>) => string,
): MiddlewareHandler<E> {
  return async function tenantRateLimitMiddleware(c, next) {
    const tenantId = tenantOf(c);
    await spendFrom(c as unknown as Context<AppEnv>, rule, tenantId, tenantId, next);
  };
}

/** True when one of the handlers this request matched is a `rateLimit` middleware. */
function hasOwnRow(c: Context<AppEnv>): boolean {
  return matchedRoutes(c).some((r) => {
    const h = r.handler as { __COMPOSED_HANDLER?: object };
    // Hono wraps a sub-app's handlers when the sub-app has its own error handler (app.route).
    return (
      limiters.has(r.handler) || (h.__COMPOSED_HANDLER !== undefined && limiters.has(h.__COMPOSED_HANDLER))
    );
  });
}

/**
 * What the authentication middleware runs once the principal is set: the `default` row for a route
 * that names no row of its own, otherwise straight on (its own row runs further down).
 */
export function afterAuthentication(c: Context<AppEnv>, next: Next): Promise<void> {
  if (hasOwnRow(c)) return next();
  return spend(c, RATE_LIMITS.default, next);
}
