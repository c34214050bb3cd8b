/**
 * Inbound bounces and complaints (docs/bounces.md) → the D1 writes that record them. The planning is
 * pure; the OriginHub reads the targets, applies the statements and acknowledges the frame.
 *
 * Rules:
 *  - An event is recorded only for a message that exists, and when it was found by its Message-ID,
 *    only if that equals the message's own `message_id_header` (a header is easier to copy than a
 *    VERP token is to forge).
 *  - Its recipient must be one of the message's recipients; a report naming none (a redacted FBL
 *    report) or another address (the mailbox forwarded elsewhere) is attributed to the message's
 *    only recipient when it has exactly one, else it is skipped.
 *  - The event id is `evt_<eventKey>`: a re-sent frame, or the remote MTA's retry of the same report,
 *    inserts nothing the second time (`ON CONFLICT DO NOTHING` on the primary key). `attempt` is 0:
 *    the event is not tied to a delivery attempt (schema.ts).
 *  - A bounce marks the recipient `bounced`. The message's status is left as delivery set it, and
 *    suppressing the address is the suppression lists' job, not this one.
 * The reads and the statements are in edge/src/db/inbound-events.ts.
 */
import type { InboundEvent } from "../../../shared/link/protocol.ts";

/** One events-table row (edge/src/db/schema.ts), spelt out so this module imports no D1 code. */
export interface InboundEventRow {
  id: string;
  tenantId: string;
  messageId: string;
  eventType: "bounce" | "spam_report";
  recipientEmail: string;
  timestamp: number;
  attempt: number;
  metadata: Record<string, unknown>;
}

export interface InboundTarget {
  id: string;
  tenantId: string;
  messageIdHeader: string;
  /** Envelope recipients, lower case. */
  recipients: string[];
}

export interface InboundPlan {
  events: InboundEventRow[];
  /** Recipients to mark `bounced`. */
  bounced: { messageId: string; email: string }[];
  skipped: { eventKey: string; messageId: string; why: string }[];
}

export function planInboundEvents(input: InboundEvent[], targets: Map<string, InboundTarget>): InboundPlan {
  const plan: InboundPlan = { events: [], bounced: [], skipped: [] };
  const seen = new Set<string>();
  for (const e of input) {
    if (seen.has(e.eventKey)) continue;
    seen.add(e.eventKey);
    const skip = (why: string) => plan.skipped.push({ eventKey: e.eventKey, messageId: e.messageId, why });
    const t = targets.get(e.messageId);
    if (!t) {
      skip("no such message");
      continue;
    }
    if (
      e.messageIdSource === "message-id" &&
      (e.messageIdHeader ?? "").toLowerCase() !== t.messageIdHeader.toLowerCase()
    ) {
      skip("the returned Message-ID is not this message's");
      continue;
    }
    const reported = e.recipient?.toLowerCase() ?? null;
    let recipient: string;
    if (reported !== null && t.recipients.includes(reported)) recipient = reported;
    else if (t.recipients.length === 1) recipient = t.recipients[0]!;
    else {
      skip(reported === null ? "no recipient named" : "not a recipient of this message");
      continue;
    }
    const common = {
      source: "inbound",
      message_id_source: e.messageIdSource,
      ...(reported !== recipient ? { reported_recipient: reported } : {}),
      ...(e.format ? { format: e.format } : {}),
    };
    const metadata: Record<string, unknown> =
      e.type === "bounce"
        ? {
            ...common,
            bounce_type: e.bounceType ?? "hard",
            bounce_reason: e.reason ?? "unknown",
            ...(e.status ? { status: e.status } : {}),
            reason: e.diagnostic ?? "",
          }
        : { ...common, feedback_type: e.feedbackType ?? "abuse" };
    plan.events.push({
      id: `evt_${e.eventKey}`,
      tenantId: t.tenantId,
      messageId: t.id,
      eventType: e.type,
      recipientEmail: recipient,
      timestamp: e.receivedAt,
      attempt: 0,
      metadata,
    });
    if (e.type === "bounce") plan.bounced.push({ messageId: t.id, email: recipient });
  }
  return plan;
}
