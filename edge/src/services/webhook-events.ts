/**
 * What a webhook receives (docs/api/webhooks.md): the ScaiSend event envelope, and the same event in
 * SendGrid's Event Webhook form with the exact bytes SendGrid POSTs. No I/O here.
 *
 * SendGrid's body is a JSON array serialized compactly with every object's keys sorted, the events
 * joined by `,\r\n` and the whole followed by `\r\n`: those are the bytes SendGrid's published
 * signature vectors were computed over, so a receiver that verifies the raw body sees exactly what
 * SendGrid would have sent.
 */
import { EVENT_TYPES, type EventType } from "../db/schema.ts";

export { EVENT_TYPES, type EventType };

/** An event as the hub's catalog flush hands it over (the D1 `events` row's fields). */
export interface FlushedEvent {
  id: string;
  tenantId: string;
  messageId: string;
  eventType: EventType;
  recipientEmail: string;
  /** Unix milliseconds. */
  timestamp: number;
  attempt?: number | null;
  metadata: Record<string, unknown> | unknown;
}

/** What the message itself adds to its events (read from the D1 catalog, which the flush just wrote). */
export interface MessageInfo {
  categories: string[];
  customArgs: Record<string, string>;
  /** RFC 5322 Message-ID without angle brackets. */
  messageIdHeader: string;
}

/** The ScaiSend envelope (one per event), as ScaiSend-format endpoints receive it. */
export interface WebhookEvent {
  event_id: string;
  event_type: EventType;
  /** Unix seconds. */
  timestamp: number;
  message_id: string;
  recipient_email: string;
  tenant_id: string;
  metadata: Record<string, unknown>;
}

/** A queued event: the envelope plus what the SendGrid form needs and the envelope does not carry. */
export interface QueuedEvent extends WebhookEvent {
  smtp_id: string | null;
}

/**
 * The key that makes an event the same event: a result recorded twice (a replayed flush, a result
 * the origin sent again) gets a fresh row id but the same (message, attempt, recipient, type), the
 * key of D1's unique event index. Events not tied to an attempt (`processed`, attempt 0) keep the id
 * they were given at accept, which is stored with them until the flush.
 */
export function dedupeKey(
  e: Pick<FlushedEvent, "id" | "messageId" | "attempt" | "recipientEmail" | "eventType">,
) {
  const attempt = e.attempt ?? 0;
  return attempt > 0 ? `${e.messageId}|${attempt}|${e.recipientEmail}|${e.eventType}` : e.id;
}

export function toWebhookEvent(e: FlushedEvent, info: MessageInfo | undefined): QueuedEvent {
  const meta = e.metadata && typeof e.metadata === "object" ? (e.metadata as Record<string, unknown>) : {};
  return {
    event_id: e.id,
    event_type: e.eventType,
    timestamp: Math.floor(e.timestamp / 1000),
    message_id: e.messageId,
    recipient_email: e.recipientEmail,
    tenant_id: e.tenantId,
    metadata: {
      ...meta,
      ...(info ? { custom_args: info.customArgs, categories: info.categories } : {}),
    },
    smtp_id: info ? `<${info.messageIdHeader}>` : null,
  };
}

/** ScaiSend's own format: a JSON array of envelopes. */
export function scaisendBody(events: QueuedEvent[]): string {
  return JSON.stringify(events.map(({ smtp_id: _smtpId, ...envelope }) => envelope));
}

/** SendGrid's `event` value: ScaiSend's name, except these two. */
const SENDGRID_EVENT: Partial<Record<EventType, string>> = { spam_report: "spamreport", blocked: "bounce" };

/** The settings flag (`/v3/user/webhooks/event/settings`) that subscribes to each event type. */
export const SENDGRID_FLAG: Record<EventType, string> = {
  processed: "processed",
  deferred: "deferred",
  delivered: "delivered",
  bounce: "bounce",
  blocked: "bounce",
  dropped: "dropped",
  open: "open",
  click: "click",
  spam_report: "spam_report",
  unsubscribe: "unsubscribe",
  group_unsubscribe: "group_unsubscribe",
  group_resubscribe: "group_resubscribe",
};
export const SENDGRID_FLAGS = [...new Set(Object.values(SENDGRID_FLAG))];

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** One event in SendGrid's field names (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event). */
export function toSendGridEvent(e: QueuedEvent): Record<string, unknown> {
  const m = e.metadata;
  const specific: Record<string, unknown> = {};
  const response = str(m["smtp_response"]);
  switch (e.event_type) {
    case "delivered":
      if (response !== undefined) specific["response"] = response;
      break;
    case "deferred":
      if (response !== undefined) specific["response"] = response;
      specific["attempt"] = String(m["attempt"] ?? "");
      break;
    case "bounce":
    case "blocked": {
      // SendGrid's `type`: "bounce" for a hard bounce, "blocked" for everything it would retry or a
      // policy refusal.
      const hard = e.event_type === "bounce" && (m["bounce_type"] ?? "hard") === "hard";
      specific["type"] = hard ? "bounce" : "blocked";
      specific["reason"] = str(m["reason"]) ?? response ?? "";
      specific["status"] = str(m["status"]) ?? "5.0.0";
      break;
    }
    case "dropped":
      specific["reason"] = str(m["reason"]) ?? "";
      if (str(m["status"]) !== undefined) specific["status"] = m["status"];
      break;
    case "open":
    case "click":
    case "unsubscribe":
    case "group_unsubscribe":
    case "group_resubscribe":
      for (const k of ["url", "ip", "asm_group_id"]) if (m[k] !== undefined) specific[k] = m[k];
      if (m["user_agent"] !== undefined) specific["useragent"] = m["user_agent"];
      break;
  }
  if (m["source_ip"] !== undefined && specific["ip"] === undefined) specific["ip"] = m["source_ip"];
  if (typeof m["tls"] === "boolean") specific["tls"] = m["tls"] ? 1 : 0;
  const categories = Array.isArray(m["categories"]) ? (m["categories"] as string[]) : [];
  const customArgs =
    m["custom_args"] && typeof m["custom_args"] === "object"
      ? (m["custom_args"] as Record<string, unknown>)
      : {};
  return {
    // Custom args are top-level keys in SendGrid's events; its own keys win over one of the same name.
    ...customArgs,
    ...specific,
    email: e.recipient_email,
    timestamp: e.timestamp,
    event: SENDGRID_EVENT[e.event_type] ?? e.event_type,
    sg_event_id: e.event_id,
    sg_message_id: e.message_id,
    ...(e.smtp_id !== null ? { "smtp-id": e.smtp_id } : {}),
    // SendGrid sends a string for one category and an array for several.
    ...(categories.length === 1
      ? { category: categories[0] }
      : categories.length > 1
        ? { category: categories }
        : {}),
  };
}

/** Compact JSON with every object's keys sorted (arrays keep their order). */
export function sortedJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );
}

/** The exact bytes SendGrid POSTs for a batch of events. */
export function sendgridBody(events: Record<string, unknown>[]): string {
  return `[${events.map(sortedJson).join(",\r\n")}]\r\n`;
}
