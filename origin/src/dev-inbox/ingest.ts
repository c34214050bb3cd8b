// Turns raw bytes from the SMTP sink into a StoredMessage: parse with mailparser, verify DKIM
// with mailauth. Never throws: a message that cannot be parsed is still kept with its raw source,
// because a dev inbox that silently drops malformed mail hides exactly the bugs it exists to show.
import { randomBytes } from "node:crypto";
import type { DNSResolver } from "mailauth";
import { simpleParser } from "mailparser";
import type { AddressObject, ParsedMail } from "mailparser";
import { verifyDkim } from "./dkim.ts";
import type { HeaderLine, StoredMessage } from "./types.ts";

export interface Envelope {
  mailFrom: string;
  rcptTo: string[];
}

export async function ingestMessage(
  raw: Buffer,
  envelope: Envelope,
  resolver: DNSResolver | undefined,
): Promise<StoredMessage> {
  const receivedAt = new Date();
  const [parsed, dkim] = await Promise.all([parse(raw), verifyDkim(raw, resolver)]);
  const mail = parsed.mail;
  return {
    id: newId(receivedAt),
    receivedAt,
    envelope: { mailFrom: envelope.mailFrom, rcptTo: [...envelope.rcptTo] },
    raw,
    size: raw.length,
    headers: mail ? toHeaderLines(mail) : [],
    subject: mail?.subject ?? "",
    from: addressText(mail?.from),
    to: addressText(mail?.to),
    cc: addressText(mail?.cc),
    messageId: mail?.messageId ?? null,
    date: mail?.date ?? null,
    text: mail?.text ?? "",
    html: mail && mail.html !== false ? mail.html : null,
    attachments: (mail?.attachments ?? []).map((a) => ({
      filename: a.filename ?? null,
      contentType: a.contentType,
      size: a.size,
      contentId: a.contentId ?? null,
    })),
    attachmentData: (mail?.attachments ?? []).map((a) => a.content),
    dkim,
    parseError: parsed.error,
  };
}

async function parse(raw: Buffer): Promise<{ mail: ParsedMail | null; error: string | null }> {
  try {
    // cid: images stay inlined as data: URIs (mailparser's default), which the page CSP allows;
    // remote images stay blocked so opening a message never calls out.
    const mail = await simpleParser(raw, { skipTextToHtml: true });
    return { mail, error: null };
  } catch (err) {
    return { mail: null, error: err instanceof Error ? err.message : String(err) };
  }
}

/** Sortable by arrival and unguessable enough for a local tool: 12 hex of time, 8 of randomness. */
function newId(at: Date): string {
  return at.getTime().toString(16).padStart(12, "0") + randomBytes(4).toString("hex");
}

function toHeaderLines(mail: ParsedMail): HeaderLine[] {
  return mail.headerLines.map(({ key, line }) => {
    const colon = line.indexOf(":");
    const name = colon >= 0 ? line.slice(0, colon) : key;
    // RFC 5322 §2.2.3: unfolding removes the CRLF before folding whitespace.
    const value =
      colon >= 0
        ? line
            .slice(colon + 1)
            .replace(/\r?\n(?=[ \t])/g, "")
            .trim()
        : line;
    return { name, value };
  });
}

function addressText(value: AddressObject | AddressObject[] | undefined): string {
  if (!value) return "";
  return (Array.isArray(value) ? value : [value]).map((a) => a.text).join(", ");
}
