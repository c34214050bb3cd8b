/**
 * Classification → the events the edge records (the `inbound` link frame, shared/link/protocol.ts).
 * Results tied to no message are dropped here: there is nothing to record them on.
 *
 * The event key is a hash of what identifies one report about one recipient: the event type, the
 * message, the recipient and the report's own Message-ID (else a hash of the whole report). A remote
 * MTA that sends the same DSN again after a 4xx keeps its Message-ID, so the edge records it once.
 */
import { createHash } from "node:crypto";
import type { InboundEvent } from "../../../shared/link/protocol.ts";
import type { Classification } from "./classify.ts";

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** 26 characters of Crockford base32 (130 bits) of SHA-256: the shape of the edge's event ids. */
export function eventKeyOf(parts: string[]): string {
  const digest = createHash("sha256").update(parts.join("\u0000")).digest();
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of digest) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += CROCKFORD[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

export function toInboundEvents(
  c: Classification,
  opts: { receivedAt: number; raw: Buffer | string },
): InboundEvent[] {
  const reportId = c.reportId ?? `sha256:${createHash("sha256").update(opts.raw).digest("hex")}`;
  const out: InboundEvent[] = [];
  for (const r of c.results) {
    if (!r.message_id || !r.message_id_source) continue;
    const common = {
      messageId: r.message_id,
      recipient: r.recipient,
      messageIdSource: r.message_id_source,
      ...(r.message_id_header ? { messageIdHeader: r.message_id_header } : {}),
      receivedAt: opts.receivedAt,
    };
    if (r.event === "bounce") {
      out.push({
        eventKey: eventKeyOf(["bounce", r.message_id, r.recipient, reportId]),
        type: "bounce",
        ...common,
        bounceType: r.type,
        reason: r.reason,
        status: r.status,
        diagnostic: r.diagnostic,
        format: r.format,
      });
    } else {
      out.push({
        eventKey: eventKeyOf(["spam_report", r.message_id, r.recipient ?? "", reportId]),
        type: "spam_report",
        ...common,
        feedbackType: r.feedback_type,
        format: "arf",
      });
    }
  }
  return out;
}
