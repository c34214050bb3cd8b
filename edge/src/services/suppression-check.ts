/**
 * The check before dispatch (docs/architecture.md, "Suppressions"): the OriginHub asks D1 once per
 * dispatch round which recipients of the due messages are suppressed, and drops those instead of
 * handing them to an origin. What applies to a message comes from its outbox entry: its unsubscribe
 * group (`asm.group_id`) and its `bypass_*` mail settings, as SendGrid defines them:
 *
 * - `bypass_list_management` bypasses every list and every group;
 * - `bypass_bounce_management` the bounce list; `bypass_spam_management` the spam reports;
 *   `bypass_unsubscribe_management` the global unsubscribes (a group unsubscribe still drops);
 * - invalid emails are bypassed by `bypass_list_management` only; blocks never drop (db/suppressions.ts).
 *
 * A dropped recipient gets a `dropped` event whose `reason` is SendGrid's text ("Bounced Address",
 * "Spam Reporting Address", "Unsubscribed Address", "Invalid"). The decision is a result plan
 * (services/result-plan.ts) the hub records like an origin's outcome: a message with recipients
 * left goes back to the queue with those (due now), one with none left ends.
 */
import type { NewEvent } from "../db/messages.ts";
import type { SuppressionList } from "../db/schema.ts";
import { findSuppressed, normalizeEmail, type SuppressionHit } from "../db/suppressions.ts";
import { eventRow, type AttemptState, type ResultPlan } from "./result-plan.ts";

/** The `bypass_*` mail settings a send enabled, short names. */
export type Bypass = "list" | "bounce" | "spam" | "unsubscribe";

/** What an outbox entry carries for the check (set by services/suppression-policy.ts). */
export interface SuppressionPolicy {
  /** `asm`: the group the message belongs to and the groups its unsubscribe page offers. */
  asm?: { groupId: number; groupsToDisplay?: number[] };
  bypass?: Bypass[];
}

export const DROP_REASONS: Record<Exclude<SuppressionList, "blocks">, string> = {
  bounces: "Bounced Address",
  invalid_emails: "Invalid",
  spam_reports: "Spam Reporting Address",
  unsubscribes: "Unsubscribed Address",
};
/** SendGrid names a group unsubscribe like a global one; `asm_group_id` in the metadata tells them apart. */
export const GROUP_DROP_REASON = "Unsubscribed Address";

const BYPASSED_BY: Record<Exclude<SuppressionList, "blocks">, Bypass | null> = {
  bounces: "bounce",
  invalid_emails: null,
  spam_reports: "spam",
  unsubscribes: "unsubscribe",
};
/** The first list that applies names the reason. */
const PRECEDENCE = ["bounces", "invalid_emails", "spam_reports", "unsubscribes"] as const;

export interface Drop {
  email: string;
  reason: string;
  suppression: SuppressionList | "group";
  groupId?: number;
}

export interface DropDecision {
  dropped: Drop[];
  /** Recipients that still go, in the order the message had them. */
  kept: string[];
}

/** The due rows as the hub has them: recipients and entry as stored JSON. */
export interface CheckRow {
  message_id: string;
  tenant_id: string;
  recipients: string;
  entry: string | null;
}

function policyOf(entry: string | null): SuppressionPolicy {
  if (entry === null) return {};
  const e = JSON.parse(entry) as SuppressionPolicy;
  return { ...(e.asm ? { asm: e.asm } : {}), ...(e.bypass ? { bypass: e.bypass } : {}) };
}

/** Decides, for hits already looked up, which recipients of one message are dropped and why. */
export function decide(
  recipients: string[],
  policy: SuppressionPolicy,
  hitsOf: (email: string) => SuppressionHit[] | undefined,
): DropDecision {
  const bypass = new Set(policy.bypass ?? []);
  const out: DropDecision = { dropped: [], kept: [] };
  for (const recipient of recipients) {
    const hits = bypass.has("list") ? undefined : hitsOf(normalizeEmail(recipient));
    let drop: Drop | null = null;
    if (hits) {
      const lists = new Set(hits.map((h) => h.list));
      for (const list of PRECEDENCE) {
        const by = BYPASSED_BY[list];
        if (lists.has(list) && (by === null || !bypass.has(by))) {
          drop = { email: recipient, reason: DROP_REASONS[list], suppression: list };
          break;
        }
      }
      const group = policy.asm?.groupId;
      if (!drop && group !== undefined && hits.some((h) => h.groupId === group))
        drop = { email: recipient, reason: GROUP_DROP_REASON, suppression: "group", groupId: group };
    }
    if (drop) out.dropped.push(drop);
    else out.kept.push(recipient);
  }
  return out;
}

/**
 * One D1 statement (per 2,000 recipients) for all rows: the messages with a recipient to drop,
 * each with its decision. Throws when D1 does: the caller then sends nothing.
 */
export async function suppressionDrops(
  d1: D1Database,
  rows: CheckRow[],
): Promise<{ drops: Map<string, DropDecision>; rowsRead: number }> {
  const parsed = rows.map((r) => ({ row: r, recipients: JSON.parse(r.recipients) as string[] }));
  const pairs = parsed.flatMap(({ row, recipients }) =>
    recipients.map((email) => ({ tenantId: row.tenant_id, email })),
  );
  const drops = new Map<string, DropDecision>();
  if (pairs.length === 0) return { drops, rowsRead: 0 };
  const { hits, rowsRead } = await findSuppressed(d1, pairs);
  if (hits.length === 0) return { drops, rowsRead };
  const byKey = new Map<string, SuppressionHit[]>();
  for (const h of hits) {
    const key = `${h.tenantId}\n${h.email}`;
    const list = byKey.get(key);
    if (list) list.push(h);
    else byKey.set(key, [h]);
  }
  for (const { row, recipients } of parsed) {
    const d = decide(recipients, policyOf(row.entry), (email) => byKey.get(`${row.tenant_id}\n${email}`));
    if (d.dropped.length > 0) drops.set(row.message_id, d);
  }
  return { drops, rowsRead };
}

/**
 * The decision as a result plan: `dropped` events for the dropped recipients (recipient status
 * `dropped`); the kept ones are queued again at once, or, with none left, the message ends: as
 * `delivered` or `bounced` when an earlier attempt reached or bounced a recipient, else `failed`
 * with the drop reason as its error (docs/api/sendgrid.md#suppressions).
 */
export function dropPlan(row: AttemptState, d: DropDecision, now: number): ResultPlan {
  const totals = { delivered: row.delivered, bounced: row.bounced, failed: row.failed + d.dropped.length };
  const ended = d.kept.length === 0;
  const status = !ended
    ? "queued"
    : totals.delivered > 0
      ? "delivered"
      : totals.bounced > 0
        ? "bounced"
        : "failed";
  const reasons = [...new Set(d.dropped.map((x) => x.reason))].join(", ");
  let made: { tenantId: string; rows: NewEvent[] } | null = null;
  return {
    status,
    deferrals: row.deferrals,
    retryRecipients: d.kept,
    retryAt: now,
    totals,
    recipientStatuses: d.dropped.map((x) => ({ email: x.email.toLowerCase(), status: "dropped" })),
    errorMessage: status === "failed" ? `Dropped, every recipient is suppressed: ${reasons}` : undefined,
    events: (tenantId) => {
      if (made?.tenantId !== tenantId) {
        made = {
          tenantId,
          rows: d.dropped.map((x) =>
            eventRow({ ...row, tenant_id: tenantId }, "dropped", x.email, now, {
              reason: x.reason,
              suppression: x.suppression,
              ...(x.groupId !== undefined ? { asm_group_id: x.groupId } : {}),
            }),
          ),
        };
      }
      return made.rows;
    },
  };
}
