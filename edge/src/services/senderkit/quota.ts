/**
 * SenderKit's monthly message quota (docs/api/senderkit.md#quota): live /v1 sends per tenant and UTC
 * calendar month, counted at accept (a scheduled send counts when it is accepted). Enforcement is
 * soft: sends keep working past the limit up to `grace_percent` more, then `402 message_limit_reached`.
 * The limit is the tenant's own (`sk_quotas`, set by the operator with
 * PUT /api/admin/tenants/{id}/senderkit_quota) or else SENDERKIT_MONTHLY_LIMIT and
 * SENDERKIT_QUOTA_GRACE_PERCENT; a limit of 0 is no limit. Test sends never count.
 * One D1 statement charges the send only while the count is under the cap, so concurrent sends
 * cannot overshoot it; a send that was not accepted after all (a refusal, an idempotent replay) is
 * given back.
 */
import type { Db } from "../../db/client.ts";
import { SkError } from "../../surfaces/senderkit/errors.ts";

export interface QuotaDefaults {
  monthlyLimit: number;
  gracePercent: number;
}

export const monthOf = (now: number) => new Date(now).toISOString().slice(0, 7);

/** The cap (limit plus grace), or -1 for none. */
export const capOf = (limit: number, gracePercent: number) =>
  limit === 0 ? -1 : Math.floor((limit * (100 + gracePercent)) / 100);

/** Counts one live send, or throws 402 once the month's count reached the cap. Returns the month charged. */
export async function chargeLiveSend(
  db: Db,
  tenantId: string,
  now: number,
  d: QuotaDefaults,
): Promise<string> {
  const month = monthOf(now);
  const cap = `coalesce((SELECT CASE WHEN q.monthly_limit = 0 THEN -1
      ELSE (q.monthly_limit * (100 + q.grace_percent)) / 100 END FROM sk_quotas q WHERE q.tenant_id = ?1), ?3)`;
  const r = await db.$client
    .prepare(
      `INSERT INTO sk_usage (tenant_id, month, count) SELECT ?1, ?2, 1 WHERE ${cap} = -1 OR ${cap} >= 1
       ON CONFLICT (tenant_id, month) DO UPDATE SET count = count + 1 WHERE ${cap} = -1 OR sk_usage.count < ${cap}
       RETURNING count`,
    )
    .bind(tenantId, month, capOf(d.monthlyLimit, d.gracePercent))
    .first<{ count: number }>();
  if (!r) {
    throw new SkError(
      402,
      "message_limit_reached",
      `The workspace's monthly message quota is used up for ${month} (grace included); live sends resume next month or when the operator raises the quota. Test-mode sends are not counted.`,
    );
  }
  return month;
}

/** Gives back a charge for a send that was not accepted after all. */
export async function refundLiveSend(db: Db, tenantId: string, month: string): Promise<void> {
  await db.$client
    .prepare("UPDATE sk_usage SET count = count - 1 WHERE tenant_id = ? AND month = ? AND count > 0")
    .bind(tenantId, month)
    .run();
}
