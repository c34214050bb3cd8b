/**
 * Expand a validated mail/send body into one message draft per personalization (each personalization
 * becomes one message: docs/api/sendgrid.md#post-v3mailsend). Pure: no I/O, no clock, input is not mutated.
 *
 * Precedence (docs/api/sendgrid.md#fields): a personalization's `from`, `subject`, `headers` and `send_at`
 * override the top-level ones; `custom_args` are merged with the personalization winning;
 * headers are merged too, a personalization header replacing a top-level one of the same name
 * (header names are case-insensitive, RFC 5322 §1.2.2).
 *
 * Legacy substitutions (SendGrid's legacy templates): plain string replacement of each key *as given*
 * ("-name-", "{{name}}": @sendgrid/mail has already wrapped keys in {{…}}) in subject, text,
 * html, other content blocks and header values. All keys are replaced in one left-to-right pass, longest key
 * first at any position, so a replaced value is never scanned again. `sections` are SendGrid's
 * per-message blocks that substitution *values* point at: a value that names a section expands to
 * that section's text, and substitution tags inside the section text are then filled in (one level).
 *
 * With a `template_id` (ScaiSend: always a d- dynamic template) nothing is substituted: the template step
 * renders Handlebars against `dynamic_template_data` and supplies subject and content later, so
 * `subject` may be undefined and text/html are absent.
 *
 * Header-injection guard: a substitution value may contain newlines (fine in a body); in the subject
 * and header values every CR/LF run is folded to one space after substitution.
 *
 * Growth guard: substitution multiplies sizes (a 16 KB subject of 3-byte tags, each replaced by a
 * 10,000-byte value, would be 54 MB), so with `limits` every replacement stops with an
 * `ExpansionLimitError` as soon as its result passes the limit for that field, before the large
 * string exists. Limits are compared with UTF-16 lengths, never more than the UTF-8 byte count, so a
 * byte limit passed here never refuses a value within it; callers check exact bytes afterwards.
 */
import type { Attachment, Content, EmailAddress, MailSend, Personalization } from "./mail-send.ts";

export type Address = EmailAddress;

/**
 * One outgoing message. Request-wide settings (asm, mail_settings, tracking_settings, batch_id,
 * ip_pool_name) are not copied: read them from the MailSend the drafts came from.
 */
export type MessageDraft = {
  /** Zero-based index of the personalization this draft came from. */
  personalizationIndex: number;
  from: Address;
  /** reply_to_list, or [reply_to], or []. */
  replyTo: Address[];
  to: Address[];
  cc: Address[];
  bcc: Address[];
  /** Undefined only when a template will supply it. */
  subject?: string;
  text?: string;
  html?: string;
  /** Content blocks other than text/plain and text/html (e.g. text/x-amp-html, text/calendar), in request order. */
  otherContent: Content[];
  headers: Record<string, string>;
  customArgs: Record<string, string>;
  categories: string[];
  /** Unix seconds; personalization-level wins. Undefined = send now. */
  sendAt?: number;
  templateId?: string;
  dynamicTemplateData?: Record<string, unknown>;
  /** Shared by every draft of the request (same array). */
  attachments: Attachment[];
  /** True when legacy substitutions were applied to this draft (not dynamic-template mail, a non-empty map). */
  substitutionsApplied: boolean;
};

/** Longest result substitution may produce per field, in UTF-16 code units (see "growth guard"). */
export interface ExpansionLimits {
  subject: number;
  headerValue: number;
  /** One content block, and also the sections and substitution values expanded on the way. */
  content: number;
}

/** A substitution made a field longer than its limit; `field` is "subject", "headers.<name>", "content" or "substitutions". */
export class ExpansionLimitError extends Error {
  override name = "ExpansionLimitError";
  constructor(
    readonly personalizationIndex: number,
    readonly field: string,
    readonly limit: number,
  ) {
    super(`after substitutions, ${field} of personalization ${personalizationIndex} is longer than ${limit}`);
  }
}

/** Thrown by a replace function given a maximum length; `draftFor` names the field. */
class LengthLimitError extends Error {}

const NO_LIMITS: ExpansionLimits = { subject: Infinity, headerValue: Infinity, content: Infinity };

export function expandPersonalizations(mail: MailSend, limits: ExpansionLimits = NO_LIMITS): MessageDraft[] {
  return mail.personalizations.map((_, index) => expandPersonalization(mail, index, limits));
}

/** The draft of one personalization: lets a caller check each draft before building the next. */
export function expandPersonalization(
  mail: MailSend,
  index: number,
  limits: ExpansionLimits = NO_LIMITS,
): MessageDraft {
  const p = mail.personalizations[index];
  if (p === undefined) throw new RangeError(`no personalization ${index}`);
  return draftFor(mail, p, index, limits);
}

function draftFor(mail: MailSend, p: Personalization, index: number, limits: ExpansionLimits): MessageDraft {
  /** Runs `fn`, naming `field` if it hits its length limit. */
  const bounded = <T>(field: string, limit: number, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof LengthLimitError) throw new ExpansionLimitError(index, field, limit);
      throw err;
    }
  };
  // A dynamic template (d-…) renders its own content from dynamic_template_data at the origin; a
  // legacy one wraps the request's content (its <%body%>), which substitutions fill here as always.
  const dynamic = mail.template_id !== undefined && mail.template_id.startsWith("d-");
  const replace = !dynamic
    ? bounded("substitutions", limits.content, () =>
        substituter(p.substitutions ?? {}, mail.sections ?? {}, limits.content),
      )
    : null;
  const sub = (field: string, value: string, limit: number): string =>
    replace === null ? value : bounded(field, limit, () => replace(value, limit));
  const subject = p.subject ?? mail.subject;
  const content = !dynamic ? (mail.content ?? []) : [];
  const text = content.find((c) => c.type.toLowerCase() === "text/plain");
  const html = content.find((c) => c.type.toLowerCase() === "text/html");
  const headers = Object.entries(mergeHeaders(mail.headers ?? {}, p.headers ?? {}));

  const draft: MessageDraft = {
    personalizationIndex: index,
    from: p.from ?? mail.from,
    replyTo: mail.reply_to_list ?? (mail.reply_to ? [mail.reply_to] : []),
    to: p.to,
    cc: p.cc ?? [],
    bcc: withBccSetting(mail, p),
    otherContent: content
      .filter((c) => c !== text && c !== html)
      .map((c) => ({ type: c.type, value: sub("content", c.value, limits.content) })),
    headers: Object.fromEntries(
      headers.map(([k, v]) => [k, oneLine(sub(`headers.${k}`, v, limits.headerValue))]),
    ),
    customArgs: { ...mail.custom_args, ...p.custom_args },
    categories: mail.categories ?? [],
    attachments: mail.attachments ?? [],
    substitutionsApplied: replace !== null && Object.keys(p.substitutions ?? {}).length > 0,
  };
  if (subject !== undefined) draft.subject = oneLine(sub("subject", subject, limits.subject));
  if (text) draft.text = sub("content", text.value, limits.content);
  if (html) draft.html = sub("content", html.value, limits.content);
  const sendAt = p.send_at ?? mail.send_at;
  if (sendAt !== undefined) draft.sendAt = sendAt;
  if (mail.template_id !== undefined) draft.templateId = mail.template_id;
  if (p.dynamic_template_data !== undefined) draft.dynamicTemplateData = p.dynamic_template_data;
  return draft;
}

/**
 * The personalization's bcc, plus `mail_settings.bcc.email` when that (older) setting is enabled:
 * SendGrid sent a blind copy of every message to it. Not added twice: an address already among the
 * personalization's recipients gets one copy, as SendGrid's one-address-once rule wants.
 */
function withBccSetting(mail: MailSend, p: Personalization): Address[] {
  const bcc = p.bcc ?? [];
  const setting = mail.mail_settings?.bcc;
  if (setting?.enable !== true || setting.email === undefined) return bcc;
  const email = setting.email.toLowerCase();
  const present = [...p.to, ...(p.cc ?? []), ...bcc].some((a) => a.email.toLowerCase() === email);
  return present ? bcc : [...bcc, { email: setting.email }];
}

/** Top-level headers overlaid with the personalization's; names compare case-insensitively, the winner's spelling is kept. */
export function mergeHeaders(
  base: Record<string, string>,
  override: Record<string, string>,
): Record<string, string> {
  const byName = new Map<string, [string, string]>();
  for (const [k, v] of Object.entries(base)) byName.set(k.toLowerCase(), [k, v]);
  for (const [k, v] of Object.entries(override)) byName.set(k.toLowerCase(), [k, v]);
  return Object.fromEntries(byName.values());
}

/**
 * A replace function. With `maxLength` it throws (LengthLimitError) as soon as substitution makes its
 * result longer than that; an input already longer is returned as long as it does not grow (its size
 * is the caller's to refuse, with the exact message).
 */
export type Replace = (s: string, maxLength?: number) => string;

/**
 * Build the replace function for one personalization, or null when it has no substitutions.
 * Section text has its own substitution tags filled first; then substitution values that name a section are expanded.
 * `maxTotal` bounds the filled sections together, and the expanded substitution values together.
 */
export function substituter(
  substitutions: Record<string, string>,
  sections: Record<string, string>,
  maxTotal = Infinity,
): Replace | null {
  if (Object.keys(substitutions).length === 0) return null;
  const fillTags = replaceAllOf(substitutions);
  const filledSections = mapWithin(sections, fillTags, maxTotal);
  const expandSections = replaceAllOf(filledSections);
  return replaceAllOf(mapWithin(substitutions, expandSections, maxTotal));
}

/** Replace every value of `record`, the results together at most `maxTotal` long. */
function mapWithin(
  record: Record<string, string>,
  replace: Replace,
  maxTotal: number,
): Record<string, string> {
  let left = maxTotal;
  return mapValues(record, (v) => {
    const out = replace(v, Math.max(left, 0));
    left -= out.length;
    return out;
  });
}

/** One-pass, simultaneous replacement of every key of `table` (longest key wins at a position). */
export function replaceAllOf(table: Record<string, string>): Replace {
  const keys = Object.keys(table)
    .filter((k) => k.length > 0)
    .sort((a, b) => b.length - a.length);
  if (keys.length === 0) return identity;
  const pattern = new RegExp(keys.map(escapeRegExp).join("|"), "g");
  // A Map, not table[match]: keys are user data and may be "__proto__" or "constructor".
  const lookup = new Map(Object.entries(table));
  return (s, maxLength = Infinity) => {
    const limit = Math.max(maxLength, s.length);
    let length = s.length;
    return s.replace(pattern, (match) => {
      const value = lookup.get(match) ?? match;
      length += value.length - match.length;
      if (length > limit) throw new LengthLimitError();
      return value;
    });
  };
}

const identity: Replace = (s) => s;

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Header-bound text must stay on one line: fold each CR/LF run into a space. */
const oneLine = (s: string): string => s.replace(/[\r\n]+/g, " ");

function mapValues<T, U>(record: Record<string, T>, fn: (v: T) => U): Record<string, U> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, fn(v)]));
}
