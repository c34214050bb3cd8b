/**
 * SMTP replies and delivery errors → the outcome fields of the link protocol. Pure: the transport
 * hands in what the server said (or how the connection failed) and gets back a verdict.
 *
 *   2xx → delivered    4xx, no answer, DNS trouble → deferred (the edge retries)
 *   5xx → bounced, typed by RFC 3463 enhanced code first, then by the reply text:
 *     hard  the address or domain is bad (5.1.x, "user unknown", null MX, NXDOMAIN, an MX that
 *           resolves only to non-public addresses: 5.4.4)
 *     soft  the mailbox exists but cannot take it now (5.2.2 full, 5.3.4 too big)
 *     block policy or reputation (5.7.x, blocklists, a refused sender)
 */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";

export type Classification = Pick<
  RecipientOutcome,
  "status" | "smtpCode" | "enhancedCode" | "response" | "bounceType"
>;
export type BounceType = NonNullable<RecipientOutcome["bounceType"]>;

/**
 * Codes the MX lookup (smtp/mx.ts) raises. They are ours, not Node's, so an ENOTFOUND from some
 * other lookup (a smarthost name, say) is never mistaken for "the recipient domain does not exist".
 */
export const MX_ERROR_CODES = {
  /** RFC 7505 null MX: the domain declares it accepts no mail. */
  nullMx: "ENULLMX",
  /** The recipient domain does not exist. */
  nxDomain: "ENXDOMAIN",
  /** The domain exists but has neither MX nor A/AAAA records (RFC 5321 §5.1: permanent). */
  noAddress: "ENOADDRESS",
  /**
   * Every address the domain's MX (or implicit MX) resolves to is loopback, private, link-local or
   * otherwise not public, and the operator does not allow those (smtp/mx.ts explains the choice).
   */
  nonPublic: "ENONPUBLICMX",
  /** SERVFAIL, timeouts, refused queries: try again later. */
  temporary: "EDNSTEMP",
} as const;

// "550 5.1.1 <a@b>: ..." or "550-5.1.1 ..." on any line of a multi-line reply (RFC 3463 §2).
const ENHANCED = /(?:^|\n)\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})(?=\s|$)/;
const BASIC = /^([2-5]\d{2})(?=[ -]|$)/;

const HARD_TEXT =
  /user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|doesn't exist|invalid (recipient|mailbox|address)|recipient (address )?(not found|unknown|invalid)|mailbox (not found|unavailable|does not exist)|undeliverable|no mailbox|not a valid/i;
const BLOCK_TEXT =
  /block|blacklist|denylist|spamhaus|barracuda|spamcop|reputation|policy|spam|rbl\b|dnsbl|not allowed|access denied|prohibited|refused by|sender (address )?rejected|authentication|dmarc|spf|dkim/i;
const SOFT_TEXT =
  /mailbox (is )?full|over ?quota|quota exceeded|insufficient (storage|space)|too (large|big)|size (limit|exceeded)/i;

export interface ParsedReply {
  smtpCode?: number;
  enhancedCode?: string;
}

/** Reads the basic and enhanced status codes out of a reply. Absent when the text has none. */
export function parseReply(response: string): ParsedReply {
  const parsed: ParsedReply = {};
  const basic = BASIC.exec(response.trimStart());
  if (basic?.[1]) parsed.smtpCode = Number(basic[1]);
  const enhanced = ENHANCED.exec(response.trimStart());
  if (enhanced?.[1]) parsed.enhancedCode = enhanced[1];
  return parsed;
}

/** Which part of the session the reply answered: a refused sender or greeting is not a bad recipient. */
export type SmtpStage = "connect" | "mail" | "rcpt" | "data";

function bounceTypeFor(enhancedCode: string | undefined, response: string, stage: SmtpStage): BounceType {
  const [, subject, detail] = (enhancedCode ?? "").split(".");
  if (subject === "7") return "block"; // 5.7.x: security or policy status
  if (subject === "1" && (detail === "7" || detail === "8")) return "block"; // bad *sender* address/domain
  if (enhancedCode === "5.2.2" || enhancedCode === "5.2.3" || enhancedCode === "5.3.4") return "soft";
  if (subject === "1" || enhancedCode === "5.2.1" || subject === "4") return "hard";
  // No enhanced code, or a generic one (5.0.0, 5.5.x): fall back to the words servers actually use.
  if (SOFT_TEXT.test(response)) return "soft";
  if (HARD_TEXT.test(response)) return "hard";
  if (BLOCK_TEXT.test(response)) return "block";
  // A server that refuses us at the greeting or at MAIL FROM objects to the sender, not the address.
  return stage === "connect" || stage === "mail" ? "block" : "hard";
}

/** Classifies a full SMTP reply such as "550 5.1.1 <a@b>: Recipient address rejected". */
export function classifyReply(response: string, stage: SmtpStage = "rcpt"): Classification {
  const text = response.trim();
  const { smtpCode, enhancedCode } = parseReply(text);
  const base: Classification = { status: "deferred", response: text };
  if (smtpCode !== undefined) base.smtpCode = smtpCode;
  if (enhancedCode !== undefined) base.enhancedCode = enhancedCode;
  if (smtpCode === undefined) return base; // garbage from the server: nothing proves the address is bad
  if (smtpCode < 300) return { ...base, status: "delivered" };
  if (smtpCode < 500) return base; // 3xx where a final reply was due is odd, 4xx is temporary: retry both
  return { ...base, status: "bounced", bounceType: bounceTypeFor(enhancedCode, text, stage) };
}

interface ErrorLike {
  code?: unknown;
  response?: unknown;
  responseCode?: unknown;
  command?: unknown;
  message?: unknown;
}

function stageOf(command: unknown): SmtpStage {
  if (typeof command !== "string") return "connect";
  const upper = command.toUpperCase();
  if (upper.startsWith("MAIL")) return "mail";
  if (upper.startsWith("RCPT")) return "rcpt";
  if (upper.startsWith("DATA") || upper === "API") return "data";
  return "connect";
}

/**
 * Classifies a thrown error: nodemailer's SMTP errors carry `response`/`responseCode`/`command`
 * (`_formatError`), our MX errors carry an MX_ERROR_CODES code, anything else is a network or
 * local failure and is retried.
 */
export function classifyError(err: unknown): Classification {
  const e: ErrorLike = typeof err === "object" && err !== null ? (err as ErrorLike) : {};
  const message = typeof e.message === "string" ? e.message : String(err);
  if (typeof e.response === "string" && /^[2-5]\d{2}/.test(e.response.trimStart())) {
    return classifyReply(e.response, stageOf(e.command));
  }
  switch (e.code) {
    case MX_ERROR_CODES.nullMx:
      return { status: "bounced", bounceType: "hard", enhancedCode: "5.1.10", response: message };
    case MX_ERROR_CODES.nonPublic:
      // RFC 3463 5.4.4: "unable to route", the next hop cannot be used.
      return { status: "bounced", bounceType: "hard", enhancedCode: "5.4.4", response: message };
    case MX_ERROR_CODES.nxDomain:
    case MX_ERROR_CODES.noAddress:
      return { status: "bounced", bounceType: "hard", enhancedCode: "5.1.2", response: message };
    default:
      // Connection refused/reset, timeouts, TLS failures, SERVFAIL: nothing said the address is bad.
      return { status: "deferred", response: typeof e.code === "string" ? `${e.code}: ${message}` : message };
  }
}
