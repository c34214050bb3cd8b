/**
 * One failed recipient's status code and diagnostic → bounce type and reason. The vocabulary and
 * the rules are documented in docs/bounces.md; keep the two in step.
 *
 * The RFC 3463 enhanced code decides first (its subject and detail say what failed), and the
 * diagnostic text refines it where providers reuse one code for several causes: 5.7.1 is a spam
 * block at one provider and "relaying denied" at another, and Microsoft answers 5.4.1 for a
 * recipient its directory does not know (Directory-Based Edge Blocking).
 */

export type BounceType = "hard" | "soft" | "block";

export const BOUNCE_REASONS = {
  user_unknown: "hard",
  mailbox_disabled: "hard",
  bad_address: "hard",
  domain_not_found: "hard",
  relay_denied: "hard",
  routing_error: "hard",
  mailbox_full: "soft",
  message_too_large: "soft",
  expired: "soft",
  rate_limited: "soft",
  connection_failed: "soft",
  system_error: "soft",
  temporary_failure: "soft",
  spam_block: "block",
  policy_block: "block",
  authentication_failed: "block",
  content_rejected: "block",
  virus_detected: "block",
  unknown: "hard",
} as const satisfies Record<string, BounceType>;

export type BounceReason = keyof typeof BOUNCE_REASONS;

export interface Verdict {
  type: BounceType;
  reason: BounceReason;
}

const verdict = (reason: BounceReason, type: BounceType = BOUNCE_REASONS[reason]): Verdict => ({
  type,
  reason,
});

/** Diagnostic texts that name a cause whatever code came with them, most specific first. */
const TEXT_RULES: [RegExp, BounceReason][] = [
  [/\bvirus|malware|infected/i, "virus_detected"],
  [
    /spamhaus|spamcop|barracuda|\bsorbs\b|\brbl\b|\bdnsbl\b|block ?list|black ?list|listed (at|in|on|by)|part of their network is on our block list|banned sending ip|traffic not accepted from this ip|poor reputation|bad reputation|ip reputation|sender reputation|\breputation\b|\[TSS\d+\]|unsolicited|spam|junk mail|bulk mail|suspicious/i,
    "spam_block",
  ],
  [
    /\bdmarc\b|\bspf\b|\bdkim\b|unauthenticated|not authenticated|authentication (failed|required)|\bptr record|reverse dns|rdns/i,
    "authentication_failed",
  ],
  [
    /relay(ing)? (access )?(denied|not permitted|prohibited)|not permitted to relay|unable to relay|relay not permitted|we do not relay|relaying/i,
    "relay_denied",
  ],
  [
    /over ?quota|quota (exceeded|full)|mailbox (is )?full|mailbox full|exceeded (the )?storage|insufficient (system )?storage|out of storage|mail ?box has exceeded|full mailbox/i,
    "mailbox_full",
  ],
  [
    /(message|mail) (size )?(too (big|large)|exceeds|exceeded)|size limit|message size|too large/i,
    "message_too_large",
  ],
  [
    /account (has been )?(disabled|deactivated|suspended|inactive|locked|closed|expired)|mailbox (is )?(disabled|inactive|suspended|not active)|user (is )?(disabled|inactive|suspended)|is disabled|no longer (active|available|in use)/i,
    "mailbox_disabled",
  ],
  [
    /user (unknown|not found|does not exist)|unknown (user|recipient|mailbox|local[- ]part)|no such (user|mailbox|recipient|address)|(address|account|mailbox|recipient) (does not|doesn't|doesnt) exist|does not exist|doesn't have a [\w.-]+ account|recipient not found|recipientnotfound|recipnotfound|invalid (recipient|mailbox|address|user)|mailbox (not found|unavailable)|unrouteable address|no mailbox here|not our customer|address rejected|user doesn't exist|no such person|unknown address|recipient address rejected: access denied/i,
    "user_unknown",
  ],
  [
    /host (or domain name )?not found|domain (not found|does not exist)|no mx|nxdomain|name or service not known|unrouteable (mail )?domain|no such domain|domain name not found|mx lookup failed/i,
    "domain_not_found",
  ],
  [
    /rate limit|too many (messages|connections|recipients)|unusual rate|throttl|temporarily deferred|try again later|exceeded.*(rate|limit)/i,
    "rate_limited",
  ],
  [
    /(delivery|retry) time(out)? (expired|exceeded)|retry timeout exceeded|too long in queue|message expired|expired in queue|could not be delivered within|has been delayed for too long|gave up/i,
    "expired",
  ],
  [
    /connection (timed out|refused|reset)|timed out|no route to host|network is unreachable|lost connection|connect to .* failed/i,
    "connection_failed",
  ],
  [
    /policy|not authorized|not allowed|access denied|rejected by|administrative(ly)? prohibited|prohibited|refused/i,
    "policy_block",
  ],
  [/loop|too many hops|hop count exceeded/i, "routing_error"],
];

/** Enhanced codes with one meaning at every provider (RFC 3463, RFC 7372 for 5.7.23–5.7.27). */
const DECISIVE_CODES: Record<string, BounceReason> = {
  "5.1.1": "user_unknown",
  "5.1.10": "user_unknown",
  "5.1.2": "domain_not_found",
  "5.1.3": "bad_address",
  "5.2.2": "mailbox_full",
  "4.2.2": "mailbox_full",
  "5.2.3": "message_too_large",
  "5.3.4": "message_too_large",
  "4.4.7": "expired",
  "5.4.7": "expired",
  "5.7.23": "authentication_failed",
  "5.7.24": "authentication_failed",
  "5.7.25": "authentication_failed",
  "5.7.26": "authentication_failed",
  "5.7.27": "authentication_failed",
};

/** By RFC 3463 enhanced code, when the text named no cause. */
function byCode(cls: number, subject: number, detail: number): BounceReason | null {
  switch (subject) {
    case 1:
      if (detail === 2) return "domain_not_found";
      if (detail === 3) return "bad_address";
      if (detail === 6) return "mailbox_disabled"; // destination mailbox has moved
      if (detail === 0 || detail === 1 || detail === 10) return "user_unknown"; // 5.1.10: Microsoft's RecipientNotFound
      return "bad_address";
    case 2:
      if (detail === 1) return "mailbox_disabled";
      if (detail === 2) return "mailbox_full";
      if (detail === 3) return "message_too_large";
      return cls === 4 ? "temporary_failure" : "mailbox_disabled";
    case 3:
      if (detail === 4) return "message_too_large";
      return "system_error";
    case 4:
      if (detail === 4) return "domain_not_found"; // unable to route
      if (detail === 7) return "expired";
      if (detail === 1 || detail === 2) return "connection_failed";
      if (detail === 6) return "routing_error"; // routing loop detected
      return cls === 4 ? "connection_failed" : "routing_error";
    case 5:
      return cls === 4 ? "temporary_failure" : "system_error";
    case 6:
      return "content_rejected";
    case 7:
      if (detail >= 23 && detail <= 27) return "authentication_failed"; // RFC 7372: SPF, DKIM, reverse DNS…
      if (detail === 28) return "rate_limited"; // Google: unusual rate of unsolicited mail
      if (detail === 1 || detail === 0) return "policy_block";
      return "policy_block";
    default:
      return null;
  }
}

/** A status code such as "5.1.1" (RFC 3463 §2), or null. */
export function parseStatus(status: string | undefined): [number, number, number] | null {
  const m = /\b([245])\.(\d{1,3})\.(\d{1,3})\b/.exec(status ?? "");
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

/**
 * The verdict for one failed recipient. `status` is the enhanced code (may be absent in non-standard
 * bounces), `diagnostic` the remote server's text, `action` the DSN Action (a "failed" with a
 * 4.x.x status means the reporting MTA gave up on a temporary failure: soft).
 */
export function classifyFailure(status: string | undefined, diagnostic: string): Verdict {
  const code = parseStatus(status) ?? parseStatus(diagnostic);
  const basic = /\b([45])\d\d\b/.exec(diagnostic);
  const cls = code?.[0] ?? (basic ? Number(basic[1]) : 5);
  // Codes that name one cause exactly win over the text (Google's 5.7.26 text mentions spam).
  const decisive = code ? DECISIVE_CODES[code.join(".")] : undefined;
  if (decisive) return verdict(decisive);
  // Text decides among causes a code is shared by; a plain 5.1.1 with no telling text stays user_unknown.
  for (const [pattern, reason] of TEXT_RULES) {
    if (!pattern.test(diagnostic)) continue;
    // "Mailbox unavailable" is a user_unknown at most providers, but with a 4.x.x it is temporary.
    if (reason === "user_unknown" && cls === 4) return verdict("temporary_failure");
    return verdict(reason);
  }
  if (code) {
    const reason = byCode(code[0], code[1], code[2]);
    if (reason) {
      // A temporary failure the reporting MTA gave up on is soft, whatever its subject.
      if (code[0] === 4 && BOUNCE_REASONS[reason] === "hard") return verdict("expired");
      return verdict(reason);
    }
  }
  return cls === 4 ? verdict("temporary_failure") : verdict("unknown");
}
