/**
 * SendGrid's `X-SMTPAPI` header (SendGrid's "Building an X-SMTPAPI Header" and "SMTP Filters"
 * docs): a JSON object an SMTP client adds to ask for what the v3 API takes as body fields. This
 * turns it into those mail/send fields, so the edge validates them exactly as it validates an API
 * call (docs/smtp-submission.md#x-smtpapi).
 *
 * What has no mail/send equivalent here is refused with 550 and the reason, never dropped: `to`,
 * `sub`, `section` and `send_each_at` (one SMTP message per recipient list; send several messages
 * instead), filters outside the table below, and settings a filter has no field for.
 */
import { SmtpReply } from "./reply.ts";

/** The mail/send fields an X-SMTPAPI header may set (shapes as in docs/api/sendgrid.md#fields). */
export interface SmtpApiFields {
  categories?: string[];
  custom_args?: Record<string, string>;
  send_at?: number;
  asm?: { group_id: number; groups_to_display?: number[] };
  ip_pool_name?: string;
  template_id?: string;
  mail_settings?: Record<string, Record<string, unknown>>;
  tracking_settings?: Record<string, Record<string, unknown>>;
}

const refuse = (why: string) => new SmtpReply(550, `5.6.0 X-SMTPAPI: ${why}`);

const UNSUPPORTED_KEYS: Record<string, string> = {
  to: "the recipient list `to` is not supported: put the recipients in the envelope (RCPT TO), one message per list",
  sub: "substitutions (`sub`) are not supported over SMTP here: they need the `to` list; use POST /v3/mail/send",
  section: "sections (`section`) are not supported over SMTP here; use POST /v3/mail/send",
  send_each_at: "`send_each_at` is not supported: it needs the `to` list; use `send_at`",
};

/** A filter's `enable`: SendGrid takes 1/0, "1"/"0" and true/false. */
function flag(value: unknown, where: string): boolean {
  if (value === 1 || value === "1" || value === true) return true;
  if (value === 0 || value === "0" || value === false) return false;
  throw refuse(`${where} must be 0 or 1`);
}

function text(value: unknown, where: string): string {
  if (typeof value !== "string") throw refuse(`${where} must be a string`);
  return value;
}

function int(value: unknown, where: string): number {
  const n = typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw refuse(`${where} must be an integer`);
  return n;
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw refuse(`${where} must be an object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Each filter: the settings it takes → a function that writes the mail/send setting. A setting
 * not listed is refused (SendGrid's `subscriptiontrack.url`/`landing`, `spamcheck.maxscore`, …).
 */
type Target = {
  mail: Record<string, Record<string, unknown>>;
  tracking: Record<string, Record<string, unknown>>;
};
type FilterMap = Record<
  string,
  (settings: Record<string, unknown>, into: Target, fields: SmtpApiFields) => void
>;

/** Copies the listed settings (SendGrid name → mail/send name) after `enable`. */
function settings(
  name: string,
  s: Record<string, unknown>,
  names: Record<string, string>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(s)) {
    const where = `filters.${name}.settings.${key}`;
    if (key === "enable") out.enable = flag(value, where);
    else if (key in names) out[names[key]!] = key === "enable_text" ? flag(value, where) : text(value, where);
    else throw refuse(`${where} is not supported here`);
  }
  return out;
}

const FILTERS: FilterMap = {
  clicktrack: (s, into) => {
    into.tracking.click_tracking = settings("clicktrack", s, { enable_text: "enable_text" });
  },
  opentrack: (s, into) => {
    into.tracking.open_tracking = settings("opentrack", s, { replace: "substitution_tag" });
  },
  subscriptiontrack: (s, into) => {
    into.tracking.subscription_tracking = settings("subscriptiontrack", s, {
      "text/plain": "text",
      "text/html": "html",
      replace: "substitution_tag",
    });
  },
  ganalytics: (s, into) => {
    into.tracking.ganalytics = settings("ganalytics", s, {
      utm_source: "utm_source",
      utm_medium: "utm_medium",
      utm_term: "utm_term",
      utm_content: "utm_content",
      utm_campaign: "utm_campaign",
    });
  },
  bypass_list_management: (s, into) => {
    into.mail.bypass_list_management = settings("bypass_list_management", s, {});
  },
  footer: (s, into) => {
    into.mail.footer = settings("footer", s, { "text/plain": "text", "text/html": "html" });
  },
  bcc: (s, into) => {
    const bcc = settings("bcc", s, { email: "email" });
    into.mail.bcc = bcc;
  },
  spamcheck: (s, into) => {
    // mail/send refuses enable: true with its own message (the setting is retired), so pass it on.
    into.mail.spam_check = settings("spamcheck", s, {});
  },
  templates: (s, _into, fields) => {
    const t = settings("templates", s, { template_id: "template_id" });
    if (t.enable === true) {
      if (typeof t.template_id !== "string")
        throw refuse("filters.templates.settings.template_id is required");
      fields.template_id = t.template_id;
    }
  },
};

/**
 * RFC 2047 encoded words → text. Clients encode a long or non-ASCII X-SMTPAPI value this way
 * (nodemailer does for any value over its line length); whitespace between two encoded words is
 * not part of the text (RFC 2047 §6.2). A value without encoded words is returned as it is.
 */
export function decodeEncodedWords(value: string): string {
  const word = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;
  return value
    .replace(/(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?)/g, "$1")
    .replace(word, (_m, charset: string, enc: string, text: string) => {
      const bytes =
        enc.toLowerCase() === "b"
          ? Buffer.from(text, "base64")
          : Buffer.from(
              text
                .replace(/_/g, " ")
                .replace(/=([0-9a-fA-F]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16))),
              "latin1",
            );
      try {
        // RFC 2231 §5: a language may follow the charset after "*".
        return new TextDecoder(charset.split("*")[0]!).decode(bytes);
      } catch {
        throw refuse(`unknown charset ${charset} in an encoded word`);
      }
    });
}

/** Parses the header's (unfolded) value. Throws SmtpReply 550 for what cannot be honoured. */
export function parseSmtpApi(value: string): SmtpApiFields {
  let json: unknown;
  try {
    json = JSON.parse(decodeEncodedWords(value));
  } catch {
    throw refuse("the header is not valid JSON");
  }
  const top = object(json, "the header");
  const fields: SmtpApiFields = {};
  const into: Target = { mail: {}, tracking: {} };
  let asmGroup: number | undefined;
  let asmDisplay: number[] | undefined;
  for (const [key, raw] of Object.entries(top)) {
    if (key in UNSUPPORTED_KEYS) throw refuse(UNSUPPORTED_KEYS[key]!);
    switch (key) {
      case "category": {
        const list = typeof raw === "string" ? [raw] : raw;
        if (!Array.isArray(list) || !list.every((c) => typeof c === "string")) {
          throw refuse("category must be a string or an array of strings");
        }
        fields.categories = list as string[];
        break;
      }
      case "unique_args": {
        // mail/send's custom_args take string values; SendGrid stringifies numbers in unique_args too.
        const args = object(raw, "unique_args");
        fields.custom_args = Object.fromEntries(
          Object.entries(args).map(([k, v]) => {
            if (typeof v === "string") return [k, v];
            if (typeof v === "number" || typeof v === "boolean") return [k, String(v)];
            throw refuse(`unique_args.${k} must be a string or a number`);
          }),
        );
        break;
      }
      case "send_at":
        fields.send_at = int(raw, "send_at");
        break;
      case "asm_group_id":
        asmGroup = int(raw, "asm_group_id");
        break;
      case "asm_groups_to_display":
        if (!Array.isArray(raw)) throw refuse("asm_groups_to_display must be an array of integers");
        asmDisplay = raw.map((v, i) => int(v, `asm_groups_to_display.${i}`));
        break;
      case "ip_pool":
        fields.ip_pool_name = text(raw, "ip_pool");
        break;
      case "filters":
        for (const [name, filter] of Object.entries(object(raw, "filters"))) {
          const apply = FILTERS[name];
          if (!apply) throw refuse(`the filter ${name} is not supported here`);
          const f = object(filter, `filters.${name}`);
          for (const k of Object.keys(f)) {
            if (k !== "settings") throw refuse(`filters.${name}.${k} is not supported (only settings)`);
          }
          apply(object(f.settings ?? {}, `filters.${name}.settings`), into, fields);
        }
        break;
      default:
        throw refuse(`the key ${key} is not supported`);
    }
  }
  if (asmDisplay && asmGroup === undefined) throw refuse("asm_groups_to_display needs asm_group_id");
  if (asmGroup !== undefined) {
    fields.asm = { group_id: asmGroup, ...(asmDisplay ? { groups_to_display: asmDisplay } : {}) };
  }
  if (Object.keys(into.mail).length) fields.mail_settings = into.mail;
  if (Object.keys(into.tracking).length) fields.tracking_settings = into.tracking;
  return fields;
}
