/**
 * What one delivery attempt's outcomes mean, decided without I/O: which events to record, which
 * recipients retry and when, and the message's new status. The OriginHub applies the plan.
 * Deferred recipients retry on the schedule; once it runs out they bounce (soft).
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
  attempt: number;
  delivered: number;
  bounced: number;
  failed: number;
}

export function eventRow(
  row: Pick<AttemptState, "message_id" | "tenant_id" | "attempt">,
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
    attempt: row.attempt,
    metadata,
  };
}

export interface ResultPlan {
  status: MessageStatus;
  retryRecipients: string[];
  retryAt: number;
  totals: { delivered: number; bounced: number; failed: number };
  recipientStatuses: { email: string; status: string }[];
  errorMessage: string | null | undefined;
  events(tenantId: string): NewEvent[];
}

export function planResult(
  row: AttemptState,
  outcomes: RecipientOutcome[],
  retry: RetrySchedule,
  now: number,
): ResultPlan {
  const delay = retry.nextRetryDelay(row.attempt);
  const retryAt = delay === null ? 0 : now + delay;
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
      ...(o.tls !== undefined ? { tls: o.tls } : {}),
      attempt: row.attempt,
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

  let status: MessageStatus;
  if (retryRecipients.length > 0) status = "queued";
  else if (totals.delivered > 0) status = "delivered";
  else if (totals.bounced > 0) status = "bounced";
  else status = "failed";

  return {
    status,
    retryRecipients,
    retryAt,
    totals,
    recipientStatuses,
    errorMessage: status === "bounced" || status === "failed" ? (lastError ?? null) : undefined,
    events: (tenantId) =>
      pending.map((p) => eventRow({ ...row, tenant_id: tenantId }, p.type, p.recipient, now, p.metadata)),
  };
}
