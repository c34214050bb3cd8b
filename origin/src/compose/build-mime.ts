/**
 * DeliveryJob → raw RFC 5322 message, built by nodemailer's MailComposer.
 *
 * The edge validated everything already (no CR/LF, no reserved header names); this module checks
 * again and throws rather than repairing: a CR/LF that reached a header here would let API input
 * inject headers or a second message, and quietly stripping it would hide the edge bug.
 */
import MailComposer from "nodemailer/lib/mail-composer/index.js";
import type { DeliveryJob, LinkAddress } from "../../../shared/link/protocol.ts";

export class MimeBuildError extends Error {
  override name = "MimeBuildError";
}

/** Headers this module sets itself, or that only the transport and signer may write. */
const RESERVED_HEADERS = new Set([
  "from",
  "to",
  "cc",
  "bcc",
  "reply-to",
  "sender",
  "subject",
  "date",
  "message-id",
  "mime-version",
  "content-type",
  "content-transfer-encoding",
  "dkim-signature",
  "return-path",
]);

// RFC 5322 §3.6.8: a field name is printable US-ASCII except the colon.
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
const CR_OR_LF = /[\r\n]/;

function assertNoLineBreak(value: string, what: string): void {
  if (CR_OR_LF.test(value)) throw new MimeBuildError(`${what} contains CR or LF`);
}

function toComposerAddress(address: LinkAddress, what: string): { name: string; address: string } {
  assertNoLineBreak(address.email, `${what} address`);
  if (address.name !== undefined) assertNoLineBreak(address.name, `${what} name`);
  return { name: address.name ?? "", address: address.email };
}

function customHeaders(headers: Record<string, string>): Record<string, string> {
  for (const [name, value] of Object.entries(headers)) {
    if (!FIELD_NAME.test(name)) throw new MimeBuildError(`header name "${name}" is not a valid field name`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw new MimeBuildError(`header "${name}" is reserved`);
    assertNoLineBreak(value, `header "${name}"`);
  }
  return headers;
}

export interface BuildMimeOptions {
  /** Date header value; tests pin it, production uses the time of the attempt. */
  date?: Date;
}

/** Builds the message once per job; every recipient domain gets the same bytes (and signature). */
export async function buildMime(job: DeliveryJob, options: BuildMimeOptions = {}): Promise<Buffer> {
  const { message } = job;
  assertNoLineBreak(message.subject, "subject");
  assertNoLineBreak(message.messageIdHeader, "Message-ID");
  if (!/^[^<>\s@]+@[^<>\s@]+$/.test(message.messageIdHeader)) {
    throw new MimeBuildError(`Message-ID "${message.messageIdHeader}" is not id-left@id-right`);
  }
  const composer = new MailComposer({
    from: toComposerAddress(message.from, "from"),
    to: message.to.map((a) => toComposerAddress(a, "to")),
    ...(message.cc?.length ? { cc: message.cc.map((a) => toComposerAddress(a, "cc")) } : {}),
    ...(message.replyTo?.length
      ? { replyTo: message.replyTo.map((a) => toComposerAddress(a, "reply-to")) }
      : {}),
    subject: message.subject,
    messageId: `<${message.messageIdHeader}>`,
    date: options.date ?? new Date(),
    // With both parts present MailComposer builds multipart/alternative, text first (RFC 2046 §5.1.4).
    ...(message.text !== undefined ? { text: message.text } : {}),
    ...(message.html !== undefined ? { html: message.html } : {}),
    headers: customHeaders(message.headers),
    // API input must never make the origin read local files or fetch URLs (nodemailer's own advice).
    disableFileAccess: true,
    disableUrlAccess: true,
    xMailer: false,
  });
  return composer.compile().build();
}
