/**
 * The one list of header names API callers may not set, and the field-name syntax, shared by the
 * edge validator (`shared/sendgrid/mail-send.ts`, which refuses them with SendGrid's "Header cannot
 * be one of the reserved keys.") and the origin's MIME builder (`origin/src/compose/build-mime.ts`,
 * which throws on them). Two copies of this list once drifted apart: the edge accepted `Date` and the
 * origin refused it, so a send was answered 202 and then failed (docs/api/sendgrid.md, reserved
 * headers). Keep it here, and only here.
 *
 * Pure, no imports: runs in the Worker and in Node.
 */

/**
 * Reserved header names, lower-case (field names compare case-insensitively, RFC 5322 §1.2.2).
 * Each group says why a caller may not write the name.
 */
export const RESERVED_HEADER_NAMES: readonly string[] = [
  // SendGrid's documented reserved keys (SendGrid v3 Mail Send reference, "headers"): kept so that
  // a body SendGrid refuses is refused here too.
  "x-sg-id",
  "x-sg-eid",
  "received",
  "dkim-signature",
  "content-type",
  "content-transfer-encoding",
  "to",
  "from",
  "subject",
  "reply-to",
  "cc",
  "bcc",
  // Written by the MIME builder from the message itself; RFC 5322 §3.6 allows each at most once, and
  // Message-ID is fixed at accept time so that retries, bounces and the read API correlate.
  "date",
  "message-id",
  "mime-version",
  // The mailbox responsible for transmission (RFC 5322 §3.6.2): that is the verified From domain;
  // a caller-chosen Sender could name any mailbox of any domain, unverified.
  "sender",
  // Trace and authentication fields only the transport, intermediaries and receivers write:
  // Return-Path is added at final delivery from the envelope sender (RFC 5321 §4.4), which is ours;
  // Authentication-Results is the receiver's verdict (RFC 8601 §5); ARC sets are added by
  // intermediaries (RFC 8617 §4); DomainKey-Signature is the legacy signer's (RFC 4870).
  "return-path",
  "authentication-results",
  "arc-seal",
  "arc-message-signature",
  "arc-authentication-results",
  "domainkey-signature",
  // Written by the MIME builder (tenant, From domain, mail type, sender id) for the mailbox
  // providers' complaint feedback loops (Gmail's bulk sender guidelines): a caller-set value could
  // file its complaints under another tenant's identifiers.
  "feedback-id",
];

const RESERVED = new Set(RESERVED_HEADER_NAMES);

/** True when an API caller may not set this header (any letter case). */
export function isReservedHeader(name: string): boolean {
  return RESERVED.has(name.toLowerCase());
}

/** RFC 5322 §3.6.8 field-name: printable US-ASCII except the colon (so no space either). */
export function isHeaderFieldName(name: string): boolean {
  return /^[\x21-\x39\x3b-\x7e]+$/.test(name);
}
