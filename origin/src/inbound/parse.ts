/**
 * Turns a raw inbound message (a bounce, a complaint, an auto-reply) into the plain structure the
 * classifier reads (`InboundMessage`). mailparser does the MIME work; the report parts it would
 * otherwise flatten into the text body are kept raw (`keepDeliveryStatus`), because their fields are
 * what RFC 3464 (message/delivery-status) and RFC 5965 (message/feedback-report) define.
 *
 * No npm library parses RFC 3464 fields: the bounce parsers on npm match provider texts with regular
 * expressions only (and one needs the native `re2` module). The report fields are a simple header-
 * like syntax (RFC 3464 §2.1), parsed here in `parseFieldGroups`; docs/bounces.md lists the formats.
 */
import { simpleParser, type ParsedMail } from "mailparser";

/** Header fields by lower-case name, each value unfolded, in the order they appear. */
export type HeaderFields = Record<string, string[]>;

/** What the classifier needs of one received message; built by `toInboundMessage`. */
export interface InboundMessage {
  headers: HeaderFields;
  /** Decoded Subject (RFC 2047 words resolved). */
  subject: string;
  /** Plain text body (from text/plain, else converted from HTML), without the report parts. */
  text: string;
  /** `report-type` of a multipart/report (RFC 6522), lower-case, or null. */
  reportType: string | null;
  /** The raw message/delivery-status (or message/global-delivery-status, RFC 6533) part. */
  deliveryStatus: string | null;
  /** The raw message/feedback-report part (RFC 5965 §3.2). */
  feedbackReport: string | null;
  /** Header fields of the returned original (message/rfc822 or text/rfc822-headers), if included. */
  original: HeaderFields | null;
  /** The SMTP envelope, when the message came in over the inbound server (not from a file). */
  envelope?: { mailFrom: string; rcptTo: string[] };
}

export class InboundParseError extends Error {}

/** Parses raw RFC 5322 bytes. Throws InboundParseError when the input is not a message at all. */
export async function parseInbound(raw: Buffer | string): Promise<InboundMessage> {
  const bytes = typeof raw === "string" ? Buffer.from(raw, "utf8") : raw;
  if (bytes.toString("latin1").trim() === "") throw new InboundParseError("the input is empty");
  // A message starts with header fields (RFC 5322 §2.1); mailparser accepts anything, so check first.
  const head = bytes.subarray(0, 2000).toString("latin1");
  if (!/^[\x21-\x39\x3b-\x7e]+[ \t]*:/.test(head)) {
    throw new InboundParseError(
      "the input does not start with header fields, so it is not an RFC 5322 message",
    );
  }
  let parsed: ParsedMail;
  try {
    parsed = await simpleParser(bytes, {
      keepDeliveryStatus: true,
      skipImageLinks: true,
      skipTextLinks: true,
      skipTextToHtml: true,
      maxHtmlLengthToParse: 1_000_000,
    });
  } catch (err) {
    throw new InboundParseError(
      `the message could not be parsed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return toInboundMessage(parsed);
}

/** Pure: mailparser's output → InboundMessage. */
export function toInboundMessage(parsed: ParsedMail): InboundMessage {
  const headers = parseHeaderBlock(parsed.headerLines.map((h) => h.line).join("\r\n"));
  const contentType = parsed.headers.get("content-type") as
    { value?: string; params?: Record<string, string> } | undefined;
  const reportType =
    contentType?.value?.toLowerCase() === "multipart/report"
      ? (contentType.params?.["report-type"]?.toLowerCase() ?? null)
      : null;
  let deliveryStatus: string | null = null;
  let feedbackReport: string | null = null;
  let original: HeaderFields | null = null;
  for (const a of parsed.attachments) {
    const type = a.contentType.toLowerCase();
    const content = a.content.toString("utf8");
    if (
      (type === "message/delivery-status" || type === "message/global-delivery-status") &&
      !deliveryStatus
    ) {
      deliveryStatus = content;
    } else if (type === "message/feedback-report" && !feedbackReport) {
      feedbackReport = content;
    } else if (
      !original &&
      (type === "message/rfc822" ||
        type === "message/global" ||
        type === "text/rfc822-headers" ||
        type === "message/rfc822-headers" ||
        type === "message/global-headers")
    ) {
      original = parseHeaderBlock(content);
    }
  }
  return {
    headers,
    subject: parsed.subject ?? "",
    text: parsed.text ?? "",
    reportType,
    deliveryStatus,
    feedbackReport,
    original: original && Object.keys(original).length > 0 ? original : null,
  };
}

/**
 * Header fields of a header block (everything up to the first empty line), unfolded (RFC 5322
 * §2.2.3). Lines that are not fields end the block, as a body would.
 */
export function parseHeaderBlock(text: string): HeaderFields {
  const out: HeaderFields = {};
  let name: string | null = null;
  let value = "";
  const push = () => {
    if (name !== null) (out[name] ??= []).push(value.replace(/\s+/g, " ").trim());
    name = null;
  };
  for (const line of text.split(/\r?\n/)) {
    if (line === "") break;
    if (/^[ \t]/.test(line)) {
      if (name !== null) value += ` ${line.trim()}`;
      continue;
    }
    const m = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)$/.exec(line);
    if (!m) break;
    push();
    name = m[1]!.toLowerCase();
    value = m[2]!;
  }
  push();
  return out;
}

/**
 * The field groups of a report part: RFC 3464 §2.1 (and RFC 5965 §3.1, which reuses the syntax) —
 * header-like fields, groups separated by empty lines. The first group of a DSN is per-message, each
 * further group is one recipient. Fields that repeat keep every value.
 */
export function parseFieldGroups(text: string): HeaderFields[] {
  const groups: HeaderFields[] = [];
  const blocks = text.replace(/\r\n/g, "\n").split(/\n[ \t]*\n/);
  for (const block of blocks) {
    if (block.trim() === "") continue;
    const fields = parseHeaderBlock(block.replace(/^\n+/, ""));
    if (Object.keys(fields).length > 0) groups.push(fields);
  }
  return groups;
}

/** First value of a field, or undefined. */
export const field = (fields: HeaderFields | null | undefined, name: string): string | undefined =>
  fields?.[name.toLowerCase()]?.[0];
