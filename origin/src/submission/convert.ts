/**
 * A submitted SMTP message → a `POST /v3/mail/send` body (docs/smtp-submission.md#how-a-message-becomes-a-send).
 * The edge then checks it exactly as it checks an API call, so nothing here re-implements its
 * validation: a field it refuses comes back as its 400 with SendGrid's message.
 *
 * - Recipients are the envelope's (RCPT TO), as with SendGrid's relay. One that the To header names
 *   goes in `to`, one the Cc header names in `cc`, every other one in `bcc` (never in a header).
 *   When the To header names none of them (Bcc only, "undisclosed-recipients:;") each recipient
 *   gets a message of its own addressed to it, since mail/send needs a `to`.
 * - From, Reply-To and Subject from the headers (From falls back to MAIL FROM); the text and HTML
 *   parts; attachments, with inline ones (a Content-ID) as `disposition: inline` + `content_id`.
 * - Other headers travel in `headers` as written (encoded words included). The ones the MIME
 *   builder writes itself, and trace headers, are dropped (a rebuilt message must not carry them);
 *   `Sender` and `Feedback-ID`, which mail/send refuses and which mean something, are refused.
 * - `X-SMTPAPI` is read (smtpapi.ts) and never passed on.
 */
import { createHash } from "node:crypto";
import type { AddressObject, Attachment, EmailAddress, ParsedMail } from "mailparser";
import { SmtpReply } from "./reply.ts";
import { parseSmtpApi } from "./smtpapi.ts";

export interface SubmissionEnvelope {
  mailFrom: string;
  rcptTo: string[];
}

interface Address {
  email: string;
  name?: string;
}

/** What the mail/send body is built from; `body` is serialised once and hashed as sent. */
export interface Converted {
  body: Record<string, unknown>;
  /** The JSON sent to the edge (the idempotency key is a digest of it). */
  json: string;
  /** Absent without a Message-ID header: nothing then tells a retry from a second message. */
  idempotencyKey?: string;
}

/**
 * Headers not carried as custom headers: mapped to their own fields, written by the MIME builder
 * (structure, Date, Message-ID), or trace and signature headers that a rebuilt message must not
 * carry (RFC 5321 §4.4: Received and Return-Path are the transport's; an old DKIM signature would
 * not verify). X-SG-ID/X-SG-EID are SendGrid's own.
 */
const DROPPED = new Set([
  "from",
  "to",
  "cc",
  "bcc",
  "reply-to",
  "subject",
  "date",
  "message-id",
  "mime-version",
  "content-type",
  "content-transfer-encoding",
  "content-disposition",
  "content-id",
  "x-smtpapi",
  "received",
  "return-path",
  "dkim-signature",
  "domainkey-signature",
  "authentication-results",
  "arc-seal",
  "arc-message-signature",
  "arc-authentication-results",
  "x-sg-id",
  "x-sg-eid",
]);

/** Reserved by mail/send and meaningful: refused rather than dropped (docs/api/sendgrid.md#fields). */
const REFUSED: Record<string, string> = {
  sender:
    "5.7.1 The Sender header is not carried: the mailbox responsible for sending is the verified From domain's; remove it",
  "feedback-id": "5.7.1 The Feedback-ID header is written by ScaiSend; remove it",
};

function addresses(field: AddressObject | AddressObject[] | undefined): EmailAddress[] {
  const out: EmailAddress[] = [];
  const walk = (list: EmailAddress[]) => {
    for (const a of list) {
      if (a.group) walk(a.group);
      else if (a.address) out.push(a);
    }
  };
  for (const obj of field === undefined ? [] : Array.isArray(field) ? field : [field]) walk(obj.value);
  return out;
}

/**
 * mail/send refuses `;` and `,` in a recipient's name (SendGrid's limits); a display name like
 * "Doe, Jane" is common in headers, so those become spaces rather than refusing the message.
 */
function recipientName(name: string | undefined): string | undefined {
  const cleaned = name?.replace(/[;,]+/g, " ").replace(/\s+/g, " ").trim();
  return cleaned ? cleaned : undefined;
}

const withName = (email: string, name: string | undefined): Address => (name ? { email, name } : { email });

/** `Name: value` of a raw header line, unfolded (RFC 5322 §2.2.3). */
function splitHeader(line: string): { name: string; value: string } {
  const i = line.indexOf(":");
  return {
    name: line.slice(0, i).trim(),
    value: line
      .slice(i + 1)
      .replace(/\r?\n(?=[ \t])/g, "")
      .trim(),
  };
}

function recipients(parsed: ParsedMail, rcptTo: string[]): Record<string, unknown>[] {
  const byEmail = (list: EmailAddress[]) =>
    new Map(list.map((a) => [a.address!.toLowerCase(), a.name || undefined] as const));
  const toHeader = byEmail(addresses(parsed.to));
  const ccHeader = byEmail(addresses(parsed.cc));
  const to: Address[] = [];
  const cc: Address[] = [];
  const bcc: Address[] = [];
  for (const rcpt of rcptTo) {
    const key = rcpt.toLowerCase();
    if (toHeader.has(key)) to.push(withName(rcpt, recipientName(toHeader.get(key))));
    else if (ccHeader.has(key)) cc.push(withName(rcpt, recipientName(ccHeader.get(key))));
    else bcc.push({ email: rcpt });
  }
  if (to.length === 0) {
    // Nobody to show in To: one message per recipient, addressed to it alone, so no recipient sees
    // another's address (what Bcc promised).
    return [...cc, ...bcc].map((a) => ({ to: [a] }));
  }
  return [{ to, ...(cc.length ? { cc } : {}), ...(bcc.length ? { bcc } : {}) }];
}

function attachment(a: Attachment, i: number): Record<string, unknown> {
  // An inline part is one the HTML can name: a Content-ID, in multipart/related or marked inline.
  const inline = Boolean(a.cid) && (a.related || a.contentDisposition === "inline");
  return {
    content: a.content.toString("base64"),
    // mail/send needs a filename (1–255 characters); a part without one gets a neutral name.
    filename: a.filename || `attachment-${i + 1}`,
    type: a.contentType || "application/octet-stream",
    ...(inline ? { disposition: "inline", content_id: a.cid } : { disposition: "attachment" }),
  };
}

/**
 * Builds the body. Throws SmtpReply for what cannot be carried (a refused header, a bad X-SMTPAPI),
 * so the client gets 550 with the reason instead of mail sent without what it asked for.
 */
export function toMailSend(parsed: ParsedMail, envelope: SubmissionEnvelope): Converted {
  const headers: Record<string, string> = {};
  const seen = new Set<string>();
  let smtpApi: string | undefined;
  for (const { key, line } of parsed.headerLines) {
    const { name, value } = splitHeader(line);
    if (key === "x-smtpapi") {
      if (smtpApi !== undefined) throw new SmtpReply(550, "5.6.0 X-SMTPAPI appears more than once");
      smtpApi = value;
      continue;
    }
    if (DROPPED.has(key) || key.startsWith("arc-")) continue;
    if (REFUSED[key]) throw new SmtpReply(550, REFUSED[key]);
    // mail/send's headers hold one value per name; joining two would change what they mean.
    if (seen.has(key)) {
      throw new SmtpReply(550, `5.6.0 The header ${name} appears more than once; it can be carried once`);
    }
    seen.add(key);
    headers[name] = value;
  }

  const from = addresses(parsed.from);
  if (from.length > 1) throw new SmtpReply(550, "5.6.0 The From header names more than one mailbox");
  const sender = from[0] ?? (envelope.mailFrom ? { address: envelope.mailFrom, name: "" } : undefined);
  if (!sender) throw new SmtpReply(550, "5.6.0 The message has no From address");
  const replyTo = addresses(parsed.replyTo).map((a) => withName(a.address!, a.name || undefined));

  const content: { type: string; value: string }[] = [];
  if (parsed.text) content.push({ type: "text/plain", value: parsed.text });
  if (typeof parsed.html === "string" && parsed.html) content.push({ type: "text/html", value: parsed.html });

  const body: Record<string, unknown> = {
    personalizations: recipients(parsed, envelope.rcptTo),
    from: withName(sender.address!, sender.name || undefined),
    ...(replyTo.length === 1 ? { reply_to: replyTo[0] } : {}),
    ...(replyTo.length > 1 ? { reply_to_list: replyTo } : {}),
    ...(parsed.subject !== undefined ? { subject: parsed.subject } : {}),
    ...(content.length ? { content } : {}),
    ...(parsed.attachments.length ? { attachments: parsed.attachments.map(attachment) } : {}),
    ...(Object.keys(headers).length ? { headers } : {}),
    ...(smtpApi !== undefined ? parseSmtpApi(smtpApi) : {}),
  };
  const json = JSON.stringify(body);
  // The same Message-ID and the same content is the same message (RFC 5322 §3.6.4): a client that
  // lost our 250 and submits again is answered from the edge's idempotency record, not sent twice.
  const messageId = parsed.messageId;
  const idempotencyKey = messageId
    ? `smtp-${createHash("sha256").update(messageId).update("\n").update(json).digest("hex")}`
    : undefined;
  return { body, json, ...(idempotencyKey ? { idempotencyKey } : {}) };
}
