/**
 * Classification of one inbound message, as a pure function of the parsed message (parse.ts): the
 * `scaisend bounce classify` command and the inbound SMTP server share it. docs/bounces.md describes
 * the formats, the reason vocabulary and how a report is tied to the message it is about.
 *
 * Order matters, because the formats overlap:
 *  1. an ARF report (RFC 5965: multipart/report; report-type=feedback-report) → spam_report;
 *  2. a DSN (RFC 3464: a message/delivery-status part) → one result per recipient with Action failed;
 *  3. an auto-reply (X-Autoreply, Precedence: auto_reply, a vacation subject…) → ignored;
 *  4. a bounce in one of the non-standard text formats (qmail and Yahoo, Exim, Sendmail, Microsoft's
 *     plain NDR) from a mailer daemon or with a bounce subject → one result per address it names;
 *  5. anything else with RFC 3834's Auto-Submitted (other than "no") → ignored.
 * DSNs and Exim's text bounces carry `Auto-Submitted: auto-replied` themselves, so (5) comes last.
 *
 * Which message a report belongs to: a VERP address whose HMAC verifies (verp.ts) wins; a VERP
 * address that does not verify is refused (never trusted) and the Message-ID of the returned
 * original is used instead, then its X-Message-Id. The edge checks that the message exists and the
 * recipient is one of its recipients before it records anything.
 */
import { decodeVerp } from "../delivery/verp.ts";
import {
  field,
  parseFieldGroups,
  parseHeaderBlock,
  type HeaderFields,
  type InboundMessage,
} from "./parse.ts";
import { classifyFailure, parseStatus, type BounceReason, type BounceType } from "./reasons.ts";

export interface ClassifyOptions {
  /** The VERP key and local-part prefix; without it no VERP token can be verified, so none is trusted. */
  verp?: { secret: string; prefix?: string } | null;
}

export type MessageIdSource = "verp" | "message-id" | "x-message-id";

/** Which of our messages a report is about. */
export interface MessageRef {
  message_id: string | null;
  message_id_source?: MessageIdSource;
  /** The Message-ID header the id was read from (without <>), so the edge can compare it to its own. */
  message_id_header?: string;
  /** "invalid" when a VERP address was present but its token did not verify (it was not used). */
  verp?: "verified" | "invalid";
}

export type BounceFormat = "rfc3464" | "qmail" | "exim" | "sendmail" | "text";

export interface BounceResult extends MessageRef {
  event: "bounce";
  recipient: string;
  type: BounceType;
  reason: BounceReason;
  /** RFC 3463 enhanced status code, or null when the bounce gave none. */
  status: string | null;
  diagnostic: string;
  format: BounceFormat;
  /** DSN Action (RFC 3464 §2.3.3): "failed" for every result here. */
  action?: string;
  /** The Final-Recipient, when the DSN also named a different Original-Recipient. */
  final_recipient?: string;
  remote_mta?: string;
  reporting_mta?: string;
}

export interface ComplaintResult extends MessageRef {
  event: "spam_report";
  /** Original-Rcpt-To, else the original's To; null when the provider redacted it. */
  recipient: string | null;
  /** RFC 5965 §3.1 Feedback-Type: abuse, fraud, virus or other. */
  feedback_type: string;
  user_agent?: string;
  source_ip?: string;
  arrival_date?: string;
}

export type Classification =
  | { kind: "bounce"; format: BounceFormat; reportId: string | null; results: BounceResult[] }
  | { kind: "spam_report"; reportId: string | null; results: ComplaintResult[] }
  | { kind: "auto_reply" | "delay" | "unknown"; reportId: string | null; why: string; results: [] };

/** Diagnostics are kept this long at most (they end up in event metadata). */
const MAX_DIAGNOSTIC = 1_000;
const DEFAULT_VERP_PREFIX = "bounces";

export function classifyInbound(msg: InboundMessage, options: ClassifyOptions = {}): Classification {
  const reportId = messageIdValue(field(msg.headers, "message-id")) ?? null;
  const prefix = options.verp?.prefix ?? DEFAULT_VERP_PREFIX;

  if (msg.feedbackReport !== null || msg.reportType === "feedback-report") {
    return classifyArf(msg, options, reportId);
  }
  if (msg.deliveryStatus !== null) {
    // Gmail names the original's Message-ID among the per-message fields.
    const perMessage = parseFieldGroups(msg.deliveryStatus)[0];
    const ref = messageRef(msg, msg.original, options, [], [field(perMessage, "x-original-message-id")]);
    const results = dsnResults(msg, ref);
    if (results.length > 0) return { kind: "bounce", format: "rfc3464", reportId, results };
    return {
      kind: "delay",
      reportId,
      why: "the DSN reports no failed recipient (delayed, delivered or relayed only)",
      results: [],
    };
  }
  const auto = autoReplyMarker(msg, false);
  if (auto) return { kind: "auto_reply", reportId, why: auto, results: [] };
  if (looksLikeBounce(msg)) {
    const text = textBounce(msg.text, prefix);
    if (text && text.failures.length > 0) {
      const ref = messageRef(msg, msg.original ?? text.original, options);
      const results = text.failures.map((f): BounceResult => ({
        event: "bounce",
        recipient: f.recipient,
        ...classifyFailure(parseStatus(f.diagnostic)?.join(".") ?? undefined, f.diagnostic),
        status: parseStatus(f.diagnostic)?.join(".") ?? null,
        diagnostic: clip(f.diagnostic),
        format: text.format,
        ...ref,
      }));
      return { kind: "bounce", format: text.format, reportId, results };
    }
  }
  const submitted = autoReplyMarker(msg, true);
  if (submitted) return { kind: "auto_reply", reportId, why: submitted, results: [] };
  return {
    kind: "unknown",
    reportId,
    why: "neither a delivery report, a feedback report nor a recognised bounce",
    results: [],
  };
}

// ---------------------------------------------------------------------------------------- DSN

function dsnResults(msg: InboundMessage, ref: MessageRef): BounceResult[] {
  const groups = parseFieldGroups(msg.deliveryStatus ?? "");
  const perMessage = groups.find((g) => !g["final-recipient"] && !g["original-recipient"]);
  const reportingMta = typeValue(field(perMessage, "reporting-mta"));
  const out: BounceResult[] = [];
  for (const g of groups) {
    const final = addressValue(field(g, "final-recipient"));
    const original = addressValue(field(g, "original-recipient"));
    const recipient = original ?? final;
    if (!recipient) continue;
    const action = field(g, "action")
      ?.toLowerCase()
      .replace(/\(.*?\)/g, "")
      .trim();
    const statusField = field(g, "status");
    const code = parseStatus(statusField);
    // RFC 3464 §2.3.3: only "failed" is a bounce; a missing Action with a 5.x.x status is one too
    // (some MTAs omit the field); delayed, delivered, relayed and expanded are not failures.
    if (action ? action !== "failed" : code?.[0] !== 5) continue;
    let diagnostic = typeValue(field(g, "diagnostic-code")) ?? "";
    if (diagnostic === "") diagnostic = textDiagnosticFor(msg.text, recipient) ?? "";
    const status = code ? code.join(".") : (parseStatus(diagnostic)?.join(".") ?? null);
    const remote = typeValue(field(g, "remote-mta"));
    out.push({
      event: "bounce",
      recipient,
      ...classifyFailure(status ?? undefined, diagnostic),
      status,
      diagnostic: clip(diagnostic),
      format: "rfc3464",
      ...ref,
      action: "failed",
      ...(original && final && original !== final ? { final_recipient: final } : {}),
      ...(remote ? { remote_mta: remote } : {}),
      ...(reportingMta ? { reporting_mta: reportingMta } : {}),
    });
  }
  return out;
}

/** A DSN without Diagnostic-Code: the human-readable part's line about this recipient, if any. */
function textDiagnosticFor(text: string, recipient: string): string | undefined {
  const lines = text.split(/\r?\n/);
  const i = lines.findIndex((l) => l.toLowerCase().includes(recipient));
  if (i === -1) return undefined;
  const near = lines.slice(i, i + 6).find((l) => /\b[45]\d\d\b|\b[45]\.\d{1,3}\.\d{1,3}\b/.test(l));
  return near?.trim();
}

// ---------------------------------------------------------------------------------------- ARF

function classifyArf(msg: InboundMessage, options: ClassifyOptions, reportId: string | null): Classification {
  const groups = parseFieldGroups(msg.feedbackReport ?? "");
  const all: HeaderFields = {};
  for (const g of groups) for (const [k, v] of Object.entries(g)) (all[k] ??= []).push(...v);
  const feedbackType = (field(all, "feedback-type") ?? "abuse").toLowerCase().trim();
  if (feedbackType === "not-spam") {
    return {
      kind: "unknown",
      reportId,
      why: "a not-spam feedback report (RFC 6650) is no complaint",
      results: [],
    };
  }
  // The envelope sender of the reported message is our VERP address (RFC 5965 Original-Mail-From).
  const ref = messageRef(msg, msg.original, options, [field(all, "original-mail-from")]);
  const rcpts = (all["original-rcpt-to"] ?? []).map(addressValue).filter((a): a is string => !!a);
  if (rcpts.length === 0) {
    const to = firstAddress(field(msg.original, "to"));
    rcpts.push(...(to && !isRedacted(to) ? [to] : []));
  }
  const userAgent = field(all, "user-agent");
  const sourceIp = field(all, "source-ip");
  const arrival = field(all, "arrival-date") ?? field(all, "received-date");
  const base = {
    event: "spam_report" as const,
    feedback_type: feedbackType,
    ...ref,
    ...(userAgent ? { user_agent: userAgent } : {}),
    ...(sourceIp ? { source_ip: sourceIp } : {}),
    ...(arrival ? { arrival_date: arrival } : {}),
  };
  const results: ComplaintResult[] =
    rcpts.length > 0 ? rcpts.map((recipient) => ({ ...base, recipient })) : [{ ...base, recipient: null }];
  return { kind: "spam_report", reportId, results };
}

/** Providers redact the complainer's address in FBL reports (e.g. "redacted@", "xxxxxxxx@"). */
function isRedacted(address: string): boolean {
  return /^(redacted|x+|\*+|unknown)@/i.test(address) || address.includes("[redacted]");
}

// ---------------------------------------------------------------------------------------- auto-replies

/**
 * Why this message is an auto-reply, or null. `withAutoSubmitted` adds RFC 3834's own field, which
 * bounces carry too and so is only decisive once the message is known not to be one.
 */
function autoReplyMarker(msg: InboundMessage, withAutoSubmitted: boolean): string | null {
  const h = msg.headers;
  if (field(h, "x-autoreply") || field(h, "x-autorespond") || field(h, "x-autoresponder")) {
    return "X-Autoreply / X-Autorespond header";
  }
  const precedence = field(h, "precedence")?.toLowerCase();
  if (precedence === "auto_reply") return "Precedence: auto_reply";
  const autoResponse = field(h, "x-auto-response-suppress");
  void autoResponse; // Exchange sets it on ordinary mail too: not a marker.
  if (
    /^(auto(matic)?[ _-]?(reply|response|antwort)|autoreply|auto:|out of (the )?office|vacation|away from (the )?office|abwesenheit|absence|r[ée]ponse automatique)/i.test(
      msg.subject.trim(),
    )
  ) {
    return `vacation subject "${clip(msg.subject, 80)}"`;
  }
  if (withAutoSubmitted) {
    const submitted = field(h, "auto-submitted")?.toLowerCase().split(";")[0]?.trim();
    if (submitted && submitted !== "no") return `Auto-Submitted: ${submitted} (RFC 3834)`;
    if (precedence === "bulk" || precedence === "junk" || precedence === "list") {
      return `Precedence: ${precedence}`;
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------- text bounces

function looksLikeBounce(msg: InboundMessage): boolean {
  if (msg.envelope && (msg.envelope.mailFrom === "" || msg.envelope.mailFrom === "<>")) return true;
  const from = (field(msg.headers, "from") ?? "").toLowerCase();
  if (/mailer-daemon|postmaster|mail delivery (subsystem|system)|mail-?daemon/.test(from)) return true;
  return /undeliver|delivery (status notification|failure|failed|has failed|problem|notification)|failure notice|returned mail|mail delivery (failed|failure)|non-?delivery|could not be delivered|not delivered|delivery error/i.test(
    msg.subject,
  );
}

interface TextBounce {
  format: BounceFormat;
  failures: { recipient: string; diagnostic: string }[];
  /** The returned message's headers, when the bounce quotes it inline. */
  original: HeaderFields | null;
}

/** Lines after which a text bounce quotes the returned message. */
const COPY_MARKER =
  /^\s*(-+ ?below this line is a copy of the message|-+ ?this is a copy of the message|-+ ?original message|-+ ?the header of the original message|original message headers|-+ ?forwarded message|-+ ?returned message)/i;

function textBounce(text: string, prefix: string): TextBounce | null {
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  const copyAt = lines.findIndex((l) => COPY_MARKER.test(l));
  const body = copyAt === -1 ? lines : lines.slice(0, copyAt);
  const original =
    copyAt === -1
      ? null
      : parseHeaderBlock(
          lines
            .slice(copyAt + 1)
            .join("\n")
            .replace(/^\s*\n/, ""),
        );
  const originalHeaders = original && Object.keys(original).length > 0 ? original : null;
  const ours = (a: string) => a.toLowerCase().startsWith(`${prefix.toLowerCase()}+`);
  const keep = (f: { recipient: string; diagnostic: string }[]) => f.filter((x) => !ours(x.recipient));

  // qmail and Yahoo: "<user@domain>:" on its own line, the remote server's words below it.
  const qmail: { recipient: string; diagnostic: string }[] = [];
  for (let i = 0; i < body.length; i++) {
    const m = /^<([^<>\s]+@[^<>\s]+)>:\s*(.*)$/.exec(body[i]!.trim());
    if (!m) continue;
    const rest = [m[2]!];
    for (
      let j = i + 1;
      j < body.length && body[j]!.trim() !== "" && !/^<[^<>\s]+@[^<>\s]+>:/.test(body[j]!.trim());
      j++
    ) {
      rest.push(body[j]!.trim());
    }
    qmail.push({ recipient: m[1]!.toLowerCase(), diagnostic: oneLine(rest.join(" ")) });
  }
  if (keep(qmail).length > 0) return { format: "qmail", failures: keep(qmail), original: originalHeaders };

  // Exim: "The following address(es) failed:", then "  user@domain" and indented details.
  const eximAt = body.findIndex((l) => /following address(\(es\)|es)? failed/i.test(l));
  if (eximAt !== -1) {
    const exim: { recipient: string; diagnostic: string }[] = [];
    let current: { recipient: string; details: string[] } | null = null;
    for (const line of body.slice(eximAt + 1)) {
      const addr = /^ {1,3}(\S+@\S+?)(?::)?\s*$/.exec(line);
      if (addr) {
        if (current)
          exim.push({ recipient: current.recipient, diagnostic: oneLine(current.details.join(" ")) });
        current = { recipient: stripAngles(addr[1]!).toLowerCase(), details: [] };
      } else if (current && /^\s{4,}\S/.test(line)) {
        current.details.push(line.trim());
      } else if (current && line.trim() !== "") {
        exim.push({ recipient: current.recipient, diagnostic: oneLine(current.details.join(" ")) });
        current = null;
      }
    }
    if (current) exim.push({ recipient: current.recipient, diagnostic: oneLine(current.details.join(" ")) });
    if (keep(exim).length > 0) return { format: "exim", failures: keep(exim), original: originalHeaders };
  }

  // Sendmail ("----- The following addresses had permanent fatal errors -----") and Microsoft's
  // plain NDR ("Delivery has failed to these recipients or groups:"): addresses after the marker,
  // the diagnostic from the nearest line with an SMTP reply code.
  const markerAt = body.findIndex((l) =>
    /permanent fatal errors|delivery has failed to these recipients|could not be delivered to|following recipients? failed|failed recipients?:|delivery to the following recipients? (failed|has failed)|unable to deliver (your )?message to the following/i.test(
      l,
    ),
  );
  if (markerAt !== -1) {
    const failures: { recipient: string; diagnostic: string }[] = [];
    const region = body.slice(markerAt + 1, markerAt + 60);
    for (let i = 0; i < region.length; i++) {
      const m = /^\s*<?([^<>\s()@]+@[^<>\s()]+?)>?(\s|\(|$|:)/.exec(region[i]!);
      if (!m) continue;
      const recipient = m[1]!.toLowerCase();
      if (failures.some((f) => f.recipient === recipient)) continue;
      const diagLine =
        region.slice(i, i + 8).find((l) => /\b[45]\d\d\b|\b[45]\.\d{1,3}\.\d{1,3}\b/.test(l)) ??
        region.slice(i + 1, i + 4).find((l) => l.trim() !== "") ??
        "";
      failures.push({ recipient, diagnostic: oneLine(diagLine.replace(/^\s*\(reason:\s*|\)\s*$/gi, "")) });
    }
    const format: BounceFormat = /permanent fatal errors/i.test(body[markerAt]!) ? "sendmail" : "text";
    if (keep(failures).length > 0) return { format, failures: keep(failures), original: originalHeaders };
  }
  return null;
}

// ---------------------------------------------------------------------------------------- message ids

/**
 * The message a report is about. `extra` are more places a VERP address can be found (ARF's
 * Original-Mail-From). Every VERP-looking address is checked; only a verified one is used.
 */
function messageRef(
  msg: InboundMessage,
  original: HeaderFields | null,
  options: ClassifyOptions,
  extra: (string | undefined)[] = [],
  extraIds: (string | undefined)[] = [],
): MessageRef {
  const prefix = `${(options.verp?.prefix ?? DEFAULT_VERP_PREFIX).toLowerCase()}+`;
  const candidates = [
    ...(msg.envelope?.rcptTo ?? []),
    ...extra,
    ...(msg.headers["x-original-to"] ?? []),
    ...(msg.headers["delivered-to"] ?? []),
    ...(msg.headers["envelope-to"] ?? []),
    ...(msg.headers["to"] ?? []),
    ...(original?.["return-path"] ?? []),
  ];
  let invalid = false;
  for (const value of candidates) {
    for (const address of addressesIn(value ?? "")) {
      if (!address.toLowerCase().startsWith(prefix)) continue;
      const decoded = options.verp ? decodeVerp(address, options.verp) : null;
      if (decoded) return { message_id: decoded.messageId, message_id_source: "verp", verp: "verified" };
      invalid = true;
    }
  }
  const flag = invalid ? { verp: "invalid" as const } : {};
  // Our Message-ID is "<id body, lower case>@<sender domain>" (the edge fixes it at accept time). The
  // body is Crockford base32, plus the letter U in ids that name their hub shard.
  const headerIds = [
    field(original, "message-id"),
    ...extraIds,
    ...(msg.headers["in-reply-to"] ?? []),
    ...(msg.headers["references"] ?? []).flatMap((r) => r.split(/\s+/)),
  ];
  for (const value of headerIds) {
    const id = messageIdValue(value);
    const m = id ? /^([0-9a-hjkmnp-z]{26})@[^@\s]+$/i.exec(id) : null;
    if (m && id) {
      return {
        message_id: `msg_${m[1]!.toUpperCase()}`,
        message_id_source: "message-id",
        message_id_header: id,
        ...flag,
      };
    }
  }
  const x = field(original, "x-message-id")?.trim();
  if (x && /^msg_[0-9a-hjkmnp-z]{26}$/i.test(x)) {
    return { message_id: `msg_${x.slice(4).toUpperCase()}`, message_id_source: "x-message-id", ...flag };
  }
  return { message_id: null, ...flag };
}

// ---------------------------------------------------------------------------------------- small parsers

/** "rfc822; user@example.com" → "user@example.com" (RFC 3464 §2.3.1–2.3.2 address-type; address). */
function addressValue(value: string | undefined): string | undefined {
  const v = typeValue(value);
  if (!v) return undefined;
  const a = stripAngles(v.replace(/\(.*?\)/g, "").trim());
  return a.includes("@") ? a.toLowerCase() : undefined;
}

/** "dns; mx.example.net" → "mx.example.net"; "smtp; 550 …" → "550 …". A value without a type stays. */
function typeValue(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const semi = value.indexOf(";");
  const out = (
    semi !== -1 && /^[\w-]+$/.test(value.slice(0, semi).trim()) ? value.slice(semi + 1) : value
  ).trim();
  return out === "" ? undefined : out;
}

function stripAngles(v: string): string {
  return v.replace(/^<|>$/g, "").trim();
}

function messageIdValue(value: string | undefined): string | undefined {
  const m = /<([^<>\s]+)>/.exec(value ?? "") ?? /^\s*([^<>\s]+@[^<>\s]+)\s*$/.exec(value ?? "");
  return m?.[1];
}

function addressesIn(value: string): string[] {
  return [...value.matchAll(/[^\s<>,;:"()]+@[^\s<>,;:"()]+/g)].map((m) => m[0]);
}

function firstAddress(value: string | undefined): string | undefined {
  return addressesIn(value ?? "")[0]?.toLowerCase();
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

function clip(text: string, max = MAX_DIAGNOSTIC): string {
  const t = oneLine(text);
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}
