/**
 * GET/PUT /api/admin/tenants/{id}/rate_limits: a tenant's rate limits (docs/api/admin.md#rate-limits),
 * one entry per row of the table (services/rate-limit-table.ts) with the deployment's limit, the
 * tenant's override and the limit in force.
 *  - GET: the operator token, or an API key with `admin.settings` for its own tenant (another
 *    tenant's id is 404, like one that does not exist).
 *  - PUT `{"rate_limits": {"<row>": <requests per window> | null, …}}`: operator only (a tenant does not
 *    raise its own limits). It replaces the tenant's whole set of overrides: a row not named, or
 *    named with null, has none. An unknown row, a limit that is not an integer from 1 to 1,000,000,
 *    or another field is a 422 (the admin API's validation status).
 * An override takes effect at once in the isolate that set it and within AUTH_CACHE_TTL_MS in every
 * other; the row's bucket starts full at the new size (edge/src/objects/rate-limiter.ts).
 */
import { Hono, type Context } from "hono";
import { eq } from "drizzle-orm";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { tenantRateLimits } from "../../db/schema.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { requireOperator } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import {
  effectiveLimit,
  forgetOverrides,
  MAX_OVERRIDE,
  overridesOf,
  RATE_LIMIT_ROWS,
  ROW_NAMES,
  type Overrides,
} from "../../services/rate-limit-table.ts";
import { requireTenant } from "../../services/tenants.ts";
import { parseInput, readJson } from "../validate.ts";

const Limit = z.number().int().min(1).max(MAX_OVERRIDE).nullable();
const PutBody = z.strictObject({
  rate_limits: z.record(z.string(), Limit).superRefine((map, ctx) => {
    for (const name of Object.keys(map)) {
      if (!ROW_NAMES.includes(name))
        ctx.addIssue({ code: "custom", message: `unknown rate limit: ${name}`, path: [name] });
    }
  }),
});

async function tenantOf(c: Context<AppEnv>): Promise<string> {
  const id = c.req.param("id") ?? "";
  const p = c.get("principal");
  if (p.kind !== "operator" && p.tenantId !== id) throw new AppError("not_found", "Tenant not found");
  return (await requireTenant(c.get("db"), id)).id;
}

function view(c: Context<AppEnv>, tenantId: string, overrides: Overrides, updatedAt: number | null) {
  const config = c.get("config");
  return {
    tenant_id: tenantId,
    updated_at: iso(updatedAt),
    rate_limits: RATE_LIMIT_ROWS.map((r) => ({
      name: r.name,
      routes: r.routes ?? null,
      per: r.per,
      window_seconds: r.windowMs / 1000,
      default: r.limit(config),
      override: overrides[r.name] ?? null,
      limit: effectiveLimit(r, config, overrides),
    })),
  };
}

export const tenantRateLimitsApi = new Hono<AppEnv>()
  .get("/", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const row = (
      await c
        .get("db")
        .select()
        .from(tenantRateLimits)
        .where(eq(tenantRateLimits.tenantId, tenantId))
        .limit(1)
    )[0];
    return c.json({ data: view(c, tenantId, row?.limits ?? {}, row?.updatedAt ?? null) });
  })
  .put("/", requireOperator(), async (c) => {
    const tenantId = await tenantOf(c);
    const body = parseInput(PutBody, await readJson(c.req.raw), "body");
    const limits: Overrides = {};
    for (const [name, n] of Object.entries(body.rate_limits)) if (n !== null) limits[name] = n;
    const now = Date.now();
    await c
      .get("db")
      .insert(tenantRateLimits)
      .values({ tenantId, limits, updatedAt: now })
      .onConflictDoUpdate({ target: tenantRateLimits.tenantId, set: { limits, updatedAt: now } });
    forgetOverrides(tenantId);
    // Read back through the cache the limiter uses, so the answer is what requests now get here.
    const inForce = await overridesOf(c.get("db"), tenantId, c.get("config").AUTH_CACHE_TTL_MS);
    return c.json({ data: view(c, tenantId, inForce, now) });
  });
