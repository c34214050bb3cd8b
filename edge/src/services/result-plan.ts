/**
 * What one delivery attempt's outcomes mean, decided without I/O: which events to record, which
 * recipients retry and when, and the message's new status. The OriginHub applies the plan.
 *
 * Two counters, never confused (docs/link-protocol.md):
 *  - `dispatches`: times the hub handed the message to an origin. It names the job (`<id>.<dispatches>`)
 *    and tags the events a result produces; a dropped link or an expired lease adds one.
 *  - `deferrals`: results in which recipients were deferred. Only this indexes the retry schedule, so
 *    a link drop or a restarted origin never uses up a retry step. After the Nth deferral the next try
 *    waits intervals[N-1]; when the schedule has no Nth entry the deferred recipients bounce (soft).
 *
 * Deferrals the origin timed (`retryAfterMs`: its own rate limit, back-off pause or warm-up
 * allowance, docs/link-protocol.md) are retried no sooner than that. A result whose deferred recipients
 * all carry it was the origin pacing itself, not a destination refusing: it uses no retry step and
 * the retry comes at the latest `retryAfterMs`. Otherwise the schedule's delay applies, raised to the
 * latest `retryAfterMs`. Either way `notAfter` (the message's maximum queue age) caps the retry time,
 * where the hub's expiry ends the message.
 */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { RetrySchedule } from "../../../shared/delivery/retry-schedule.ts";
import { newId } from "../../../shared/ids.ts";
import type { NewEvent } from "../db/messages.ts";
import type { MessageStatus } from "../db/schema.ts";

/** The outbox row fields a plan depends on. */
export interface AttemptState {
  message_id: string;
  tenant_id: string;
  /** The dispatch this result belongs to (1-based). */
  dispatches: number;
  /** Deferrals recorded before this result. */
  deferrals: number;
  delivered: number;
  bounced: number;
  failed: number;
}

export function eventRow(
  row: Pick<AttemptState, "message_id" | "tenant_id" | "dispatches">,
  type: NewEvent["eventType"],
  recipient: string,
  now: number,
  metadata: Record<string, unknown>,
): NewEvent {
  return {
    id: newId("evt", now),
    tenantId: row.tenant_id,
    messageId: row.message_id,
    eventType: type,
    recipientEmail: recipient.toLowerCase(),
    timestamp: now,
    attempt: row.dispatches,
    metadata,
  };
}

export interface ResultPlan {
  status: MessageStatus;
  /** The deferral count after this result: one more than before when any recipient retries. */
  deferrals: number;
  retryRecipients: string[];
  retryAt: number;
  totals: { delivered: number; bounced: number; failed: number };
  recipientStatuses: { email: string; status: string }[];
  errorMessage: string | null | undefined;
  events(tenantId: string): NewEvent[];
}

export interface PlanLimits {
  /** Latest retry time: when the message reaches the maximum queue age (enqueued_at + MAX_QUEUE_AGE_MS). */
  notAfter?: number;
}

export function planResult(
  row: AttemptState,
  outcomes: RecipientOutcome[],
  retry: RetrySchedule,
  now: number,
  limits: PlanLimits = {},
): ResultPlan {
  const deferredOutcomes = outcomes.filter((o) => o.status === "deferred");
  const paced = deferredOutcomes.length > 0 && deferredOutcomes.every((o) => o.retryAfterMs !== undefined);
  const notBefore = now + Math.max(0, ...deferredOutcomes.map((o) => o.retryAfterMs ?? 0));
  // This result's deferral, if it has one, is number deferrals + 1; a paced one uses no step.
  const delay = paced ? 0 : retry.nextRetryDelay(row.deferrals + 1);
  const retryAt =
    delay === null ? 0 : Math.min(Math.max(now + delay, notBefore), limits.notAfter ?? Infinity);
  const totals = { delivered: row.delivered, bounced: row.bounced, failed: row.failed };
  const retryRecipients: string[] = [];
  const recipientStatuses: { email: string; status: string }[] = [];
  const pending: { type: NewEvent["eventType"]; recipient: string; metadata: Record<string, unknown> }[] = [];
  let lastError: string | undefined;

  for (const o of outcomes) {
    const smtp = {
      smtp_response: o.response,
      ...(o.smtpCode !== undefined ? { smtp_code: o.smtpCode } : {}),
      ...(o.enhancedCode !== undefined ? { status: o.enhancedCode } : {}),
      ...(o.mxHost !== undefined ? { mx_host: o.mxHost } : {}),
      // The origin's source address for the session (its IP pool's, docs/api/sendgrid.md#ip-pools).
      ...(o.sourceAddress !== undefined ? { source_ip: o.sourceAddress } : {}),
      ...(o.tls !== undefined ? { tls: o.tls } : {}),
      ...(o.tlsVersion !== undefined ? { tls_version: o.tlsVersion } : {}),
      // The recipient domain's MTA-STS policy mode, and how delivery fell short of it (RFC 8461).
      ...(o.mtaSts !== undefined
        ? { mta_sts: o.mtaSts.mode, ...(o.mtaSts.failure ? { mta_sts_failure: o.mtaSts.failure } : {}) }
        : {}),
      attempt: row.dispatches,
    };
    const email = o.recipient.toLowerCase();
    switch (o.status) {
      case "delivered":
        totals.delivered++;
        recipientStatuses.push({ email, status: "delivered" });
        pending.push({
          type: "delivered",
          recipient: o.recipient,
          metadata: {
            ...smtp,
            ...(o.latencyMs !== undefined ? { latency_ms: Math.round(o.latencyMs) } : {}),
            // A channel job's provider id (Twilio's SM…, FCM's message name…, docs/channels.md#outcomes).
            ...(o.providerMessageId !== undefined ? { provider_message_id: o.providerMessageId } : {}),
          },
        });
        break;
      case "deferred":
        if (delay !== null) {
          retryRecipients.push(o.recipient);
          recipientStatuses.push({ email, status: "deferred" });
          pending.push({
            type: "deferred",
            recipient: o.recipient,
            metadata: { ...smtp, next_retry_at: Math.floor(retryAt / 1000) },
          });
        } else {
          totals.bounced++;
          lastError = o.response;
          recipientStatuses.push({ email, status: "bounced" });
          pending.push({ type: "deferred", recipient: o.recipient, metadata: smtp });
          pending.push({
            type: "bounce",
            recipient: o.recipient,
            metadata: { ...smtp, bounce_type: "soft", reason: `retries exhausted: ${o.response}` },
          });
        }
        break;
      case "bounced":
        totals.bounced++;
        lastError = o.response;
        recipientStatuses.push({ email, status: "bounced" });
        pending.push({
          type: "bounce",
          recipient: o.recipient,
          metadata: { ...smtp, bounce_type: o.bounceType ?? "hard", reason: o.response },
        });
        break;
      case "failed":
        totals.failed++;
        lastError = o.response;
        recipientStatuses.push({ email, status: "failed" });
        pending.push({ type: "dropped", recipient: o.recipient, metadata: { ...smtp, reason: o.response } });
        break;
    }
  }

  let made: { tenantId: string; rows: NewEvent[] } | null = null;
  let status: MessageStatus;
  if (retryRecipients.length > 0) status = "queued";
  else if (totals.delivered > 0) status = "delivered";
  else if (totals.bounced > 0) status = "bounced";
  else status = "failed";

  return {
    status,
    deferrals: retryRecipients.length > 0 && !paced ? row.deferrals + 1 : row.deferrals,
    retryRecipients,
    retryAt,
    totals,
    recipientStatuses,
    errorMessage: status === "bounced" || status === "failed" ? (lastError ?? null) : undefined,
    // The same rows (and ids) each time: the hub's D1 write and its webhook fan-out name one event alike.
    events: (tenantId) => {
      if (made?.tenantId !== tenantId) {
        made = {
          tenantId,
          rows: pending.map((p) =>
            eventRow({ ...row, tenant_id: tenantId }, p.type, p.recipient, now, p.metadata),
          ),
        };
      }
      return made.rows;
    },
  };
}
