/**
 * PUT / GET /api/admin/tenants/{id}/senderkit_quota (operator token): a tenant's SenderKit monthly
 * quota (docs/api/senderkit.md#quota). Body `{"monthly_limit": n, "grace_percent": g}`; 0 is no
 * limit; without a row the SENDERKIT_MONTHLY_LIMIT / SENDERKIT_QUOTA_GRACE_PERCENT defaults apply.
 * GET also answers this month's count of live sends.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../../context.ts";
import { requireOperator } from "../../middleware/auth.ts";
import { capOf, monthOf } from "../../services/senderkit/quota.ts";
import { requireTenant } from "../../services/tenants.ts";
import { parseInput, readJson } from "../validate.ts";

const QuotaBody = z.strictObject({
  monthly_limit: z.int().min(0),
  grace_percent: z.int().min(0).max(1000).default(20),
});

async function quotaOf(
  c: { get: (k: "db") => AppEnv["Variables"]["db"] },
  tenantId: string,
  defaults: { limit: number; grace: number },
) {
  const db = c.get("db");
  const now = Date.now();
  const own = await db.$client
    .prepare("SELECT monthly_limit, grace_percent FROM sk_quotas WHERE tenant_id = ?")
    .bind(tenantId)
    .first<{ monthly_limit: number; grace_percent: number }>();
  const used = await db.$client
    .prepare("SELECT count FROM sk_usage WHERE tenant_id = ? AND month = ?")
    .bind(tenantId, monthOf(now))
    .first<{ count: number }>();
  const limit = own?.monthly_limit ?? defaults.limit;
  const grace = own?.grace_percent ?? defaults.grace;
  return {
    tenant_id: tenantId,
    monthly_limit: limit,
    grace_percent: grace,
    cap: limit === 0 ? null : capOf(limit, grace),
    source: own ? "tenant" : "default",
    month: monthOf(now),
    used: used?.count ?? 0,
  };
}

export const skQuotaAdminApi = new Hono<AppEnv>()
  .put("/", requireOperator(), async (c) => {
    const tenant = await requireTenant(c.get("db"), c.req.param("id")!);
    const body = parseInput(QuotaBody, await readJson(c.req.raw), "body");
    await c
      .get("db")
      .$client.prepare(
        `INSERT INTO sk_quotas (tenant_id, monthly_limit, grace_percent, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (tenant_id) DO UPDATE SET monthly_limit = excluded.monthly_limit,
           grace_percent = excluded.grace_percent, updated_at = excluded.updated_at`,
      )
      .bind(tenant.id, body.monthly_limit, body.grace_percent, Date.now())
      .run();
    const config = c.get("config");
    return c.json({
      data: await quotaOf(c, tenant.id, {
        limit: config.SENDERKIT_MONTHLY_LIMIT,
        grace: config.SENDERKIT_QUOTA_GRACE_PERCENT,
      }),
    });
  })
  .get("/", requireOperator(), async (c) => {
    const tenant = await requireTenant(c.get("db"), c.req.param("id")!);
    const config = c.get("config");
    return c.json({
      data: await quotaOf(c, tenant.id, {
        limit: config.SENDERKIT_MONTHLY_LIMIT,
        grace: config.SENDERKIT_QUOTA_GRACE_PERCENT,
      }),
    });
  });
