/**
 * One webhook POST's body and headers (docs/api/webhooks.md#what-a-receiver-gets), and the retry
 * schedule. No storage here; the WebhookQueue object decides when and records what happened.
 */
import {
  scaisendBody,
  sendgridBody,
  toSendGridEvent,
  type EventType,
  type QueuedEvent,
} from "./webhook-events.ts";
import { hmacSignature, signSendGrid } from "./webhook-signing.ts";

/** Seconds from a failed attempt to the next: attempt 1 is at once, attempt 6 the last. */
export const RETRY_DELAYS_S = [60, 300, 900, 3600, 7200] as const;
export const MAX_ATTEMPTS = RETRY_DELAYS_S.length + 1;
/** Consecutive failed attempts, across deliveries, that disable an endpoint. */
export const AUTO_DISABLE_AFTER = 10;
/** A 2xx within this long is a success; anything else, or nothing, a failure. */
export const DELIVERY_TIMEOUT_MS = 30_000;
/** Events per POST, at most. */
export const BATCH_MAX_EVENTS = 500;

/** The delay before attempt `attempts + 1` after `attempts` failed ones, or null when none is left. */
export function retryDelayMs(attempts: number): number | null {
  const s = RETRY_DELAYS_S[attempts - 1];
  return s === undefined ? null : s * 1000;
}

export type EndpointKind = "scaisend" | "sendgrid";

/** ScaiSend endpoints name event types (or "*"); the SendGrid settings name SendGrid's flags. */
export function wants(
  kind: EndpointKind,
  events: readonly string[],
  type: EventType,
  flagOf: (t: EventType) => string,
) {
  return kind === "scaisend" ? events.includes("*") || events.includes(type) : events.includes(flagOf(type));
}

export function bodyFor(kind: EndpointKind, events: QueuedEvent[]): string {
  return kind === "sendgrid" ? sendgridBody(events.map(toSendGridEvent)) : scaisendBody(events);
}

export interface SigningMaterial {
  kind: EndpointKind;
  endpointId: string;
  deliveryId: string;
  /** The endpoint's `whsec_…` (ScaiSend), or the tenant's ECDSA PKCS #8 key when signing is on (SendGrid). */
  secret: string | null;
}

export async function headersFor(
  m: SigningMaterial,
  body: string,
  nowMs: number,
): Promise<Record<string, string>> {
  const timestamp = String(Math.floor(nowMs / 1000));
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "user-agent": "ScaiSend-Webhook/1",
  };
  if (m.kind === "sendgrid") {
    if (m.secret !== null) {
      headers["x-twilio-email-event-webhook-signature"] = await signSendGrid(m.secret, timestamp, body);
      headers["x-twilio-email-event-webhook-timestamp"] = timestamp;
    }
    return headers;
  }
  headers["x-scaisend-webhook-id"] = m.endpointId;
  headers["x-scaisend-delivery-id"] = m.deliveryId;
  headers["x-scaisend-timestamp"] = timestamp;
  if (m.secret !== null)
    headers["x-scaisend-signature"] = `sha256=${await hmacSignature(m.secret, timestamp, body)}`;
  return headers;
}
