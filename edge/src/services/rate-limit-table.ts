/**
 * Every rate limit of the API in one table (docs/api/sendgrid.md#rate-limits): which bucket a route
 * spends from, per tenant or per credential (API key, or a JWT's user), how many requests per window.
 * The routes name their row (`rateLimit(RATE_LIMITS.x)`, edge/src/middleware/rate-limit.ts); an
 * authenticated route that names none spends from `default` (applied by the authentication
 * middleware). The buckets are RateLimiter objects, leased by each isolate
 * (edge/src/objects/rate-limiter.ts states the bound).
 *
 * The first five rows are ScaiSend's documented table; the others are ScaiSend's stricter limits for
 * routes that read or write a lot per request. A tenant may have its own limit for any row
 * (`tenant_rate_limits`, set by the operator: PUT /api/admin/tenants/{id}/rate_limits); it replaces
 * the row's limit for that tenant, per tenant or per credential as the row says.
 */
import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { tenantRateLimits } from "../db/schema.ts";
import type { Config } from "../env.ts";
import { IsolateCache, MISSING } from "../lib/isolate-cache.ts";

export interface RateLimitRule {
  /** Bucket name; the tenant or credential id is appended. */
  name: string;
  per: "tenant" | "credential";
  /** The deployment's limit (requests per window) before a tenant's override. */
  limit: (config: Config) => number;
  windowMs: number;
  /** What it covers, for the docs and the admin API. */
  routes?: string;
}

const SECOND = 1000;
const MINUTE = 60_000;
const fixed = (n: number) => () => n;

export const RATE_LIMITS = {
  mailSend: {
    name: "mail.send",
    per: "tenant",
    limit: (c) => c.MAIL_SEND_RATE_LIMIT,
    windowMs: SECOND,
    routes: "POST /v3/mail/send",
  },
  webhooksCreate: {
    name: "webhooks.create",
    per: "tenant",
    limit: fixed(10),
    windowMs: MINUTE,
    routes: "POST /v3/user/webhooks",
  },
  apiKeysCreate: {
    name: "api_keys.create",
    per: "tenant",
    limit: fixed(10),
    windowMs: MINUTE,
    routes: "POST /v3/api_keys",
  },
  messagesList: {
    name: "messages.list",
    per: "credential",
    limit: fixed(100),
    windowMs: SECOND,
    routes: "GET /v3/messages",
  },
  default: {
    name: "default",
    per: "credential",
    limit: fixed(1000),
    windowMs: SECOND,
    routes: "every other authenticated /v3 and /api/admin route",
  },
  // ScaiSend's stricter rows.
  templates: {
    name: "templates",
    per: "credential",
    limit: fixed(100),
    windowMs: SECOND,
    routes: "/v3/templates (every route)",
  },
  stats: {
    name: "stats",
    per: "credential",
    limit: fixed(50),
    windowMs: SECOND,
    routes: "/v3/stats, /v3/categories/stats (reads)",
  },
  statsRebuild: {
    name: "stats.rebuild",
    per: "tenant",
    limit: fixed(6),
    windowMs: MINUTE,
    routes: "POST /v3/stats/rebuild (besides stats)",
  },
  suppressions: {
    name: "suppressions",
    per: "credential",
    limit: fixed(100),
    windowMs: SECOND,
    routes: "/v3/suppression/*",
  },
  asm: {
    name: "asm",
    per: "credential",
    limit: fixed(100),
    windowMs: SECOND,
    routes: "/v3/asm/*",
  },
  batches: {
    name: "mail.batch",
    per: "credential",
    limit: fixed(50),
    windowMs: SECOND,
    routes: "/v3/mail/batch",
  },
  scheduledSends: {
    name: "scheduled_sends",
    per: "credential",
    limit: fixed(50),
    windowMs: SECOND,
    routes: "/v3/user/scheduled_sends",
  },
  images: {
    name: "images",
    per: "credential",
    limit: fixed(1000),
    windowMs: SECOND,
    routes: "/v3/images",
  },
  apiKeys: {
    name: "api_keys",
    per: "credential",
    limit: fixed(1000),
    windowMs: SECOND,
    routes: "/v3/api_keys (besides api_keys.create for POST)",
  },
  authMe: {
    name: "auth.me",
    per: "credential",
    limit: fixed(100),
    windowMs: SECOND,
    routes: "GET /v3/auth/me",
  },
} as const satisfies Record<string, RateLimitRule>;

export type RateLimitRow = (typeof RATE_LIMITS)[keyof typeof RATE_LIMITS];
export const RATE_LIMIT_ROWS: readonly RateLimitRule[] = Object.values(RATE_LIMITS);
export const ROW_NAMES: readonly string[] = RATE_LIMIT_ROWS.map((r) => r.name);
/** The largest limit an override may set (requests per window). */
export const MAX_OVERRIDE = 1_000_000;

/** A tenant's overrides: row name → requests per window. */
export type Overrides = Record<string, number>;

/**
 * This isolate's copy of the tenants' overrides, for AUTH_CACHE_TTL_MS (the same window as keys):
 * an override set through another isolate takes effect here within that window, and at once in the
 * isolate that set it (`forgetOverrides`).
 */
const cache = new IsolateCache<string, Overrides>(10_000, 10_000);

export async function overridesOf(db: Db, tenantId: string, ttlMs: number): Promise<Overrides> {
  const got = await cache.get(tenantId, ttlMs, async () => {
    const row = (
      await db
        .select({ limits: tenantRateLimits.limits })
        .from(tenantRateLimits)
        .where(eq(tenantRateLimits.tenantId, tenantId))
        .limit(1)
    )[0];
    return row ? row.limits : MISSING;
  });
  return got === MISSING ? {} : got;
}

export function forgetOverrides(tenantId: string): void {
  cache.delete(tenantId);
}

/** The limit a tenant gets on a row: its override, else the deployment's. */
export function effectiveLimit(rule: RateLimitRule, config: Config, overrides: Overrides): number {
  return overrides[rule.name] ?? rule.limit(config);
}
