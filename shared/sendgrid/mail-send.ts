/**
 * `POST /v3/mail/send` request body: zod schema + SendGrid-style validation errors.
 *
 * Two layers, so that one response can report every problem at once (docs/api/sendgrid.md#errors):
 *   1. `MailSendSchema` checks each field on its own (type, length, format, header-injection guard).
 *      Every rule carries SendGrid's exact message where the catalogue has one.
 *   2. `CROSS_FIELD_RULES` check what spans fields (subject/content/template_id, duplicate recipients,
 *      recipient totals, merged custom_args size, send_at horizon, …). They read the *raw* body
 *      defensively, because zod skips object-level refinements as soon as any child fails, and we
 *      want "bad email" and "missing subject" reported together.
 * `validateMailSend` runs both and keeps the first error per field (SendGrid reports one per field).
 * Every field that is stored has a size limit of ScaiSend's own (see "Size limits" below).
 *
 * What SendGrid accepts but this deployment does not honour yet is a third step, `notSupportedErrors`,
 * which the send use case runs on a validated body: validation keeps SendGrid's contract, and
 * SendGrid's own message still comes first for a malformed value.
 *
 * Wire conventions (docs/api/sendgrid.md#errors):
 *   - `field` is a dotted path with zero-based indices: `personalizations.1.to.0.email`; record keys
 *     (headers, custom_args, …) appear as-is: `headers.X-Foo`.
 *   - `help` points at ScaiSend's docs: `${MAIL_SEND_DOCS_URL}#<field without indices>`, underscores
 *     as hyphens (`template_id` → `#template-id`); record paths stop at the record.
 *
 * Strictness, rule by rule (SendGrid's live answers and its official clients decide, not its OAS):
 *   - Unknown keys are refused at every level of the schema, one error per key at the key's own
 *     path (`personalizations.0.dynamicTemplateData`), at most MAX_UNKNOWN_KEYS_REPORTED per object.
 *     Here ScaiSend is stricter than SendGrid, which ignores them (an attachment's `contentId` was
 *     skipped, then "content_id … required": github.com/sendgrid/sendgrid-nodejs/issues/1080): an
 *     ignored key is a field not honoured, refused rather than dropped (pull/1364 of the same repo:
 *     a Content-ID silently lost), as /v3/templates refuses unknown keys. The official clients' own
 *     shapes still pass (below); `contentId` is read as `content_id` (contentIdAlias). Keys *inside*
 *     headers, custom_args, substitutions, sections and dynamic_template_data are the caller's
 *     data, never checked against a list.
 *   - JSON `null` is a type error wherever a field has a type, with SendGrid's own words at the
 *     field: `{"message":"Invalid type. Expected: array, given: null.","field":"attachments",…}`
 *     (the bodies SendGrid returned in github.com/alexgaribay/sendgrid_elixir/issues/17 for
 *     attachments, content, send_at and reply_to). `null` is data only inside
 *     dynamic_template_data, which takes any JSON.
 *   - What the official clients send is accepted: @sendgrid/helpers sends no `null` of its own
 *     (it drops undefined and empty members) and no unknown key but `contentId` (test/shared/
 *     mail-send.validation.test.ts runs every helper input shape through the real @sendgrid/mail).
 *     A `null` an application hands the helpers (an attachment's `type: null`) passes through them
 *     and is refused here as SendGrid refuses it. Fields no SendGrid spec has that old sendgrid-go
 *     structs can carry (`attachments[].name`, `personalizations[].categories`,
 *     `tracking_settings.sandbox_mode`, …) are unknown keys.
 *   - Empty containers are accepted where SendGrid's schema has no minimum (`cc: []`,
 *     `categories: []` — @sendgrid/helpers sends that after dropping `''` — `headers: {}`,
 *     `mail_settings: {}`, …); `custom_args: {}` is SendGrid's "`custom_args` cannot be empty.".
 *     `content: []` with a `template_id` counts as no content: it carries nothing, so nothing is lost.
 *   - Attachment base64 may be line-wrapped (RFC 2045) and may omit `=` padding: it decodes to the
 *     same bytes, so refusing it would only break senders that wrap (PHP's chunk_split).
 *   - `mail_settings.bcc` and `spam_check` (older spec, still sent by the Python and Go clients) are
 *     validated like the other settings. `bcc` is honoured (personalize.ts adds its address to every
 *     message's bcc); `spam_check` with `enable: true` is refused (notSupportedErrors), since SendGrid
 *     retired it and nothing here would check.
 *
 * Imports only zod and shared/mail/headers.ts: this module runs in the Worker and in Node.
 */
import { z } from "zod";
import { utf8ByteLength } from "../utf8.ts";
import { isHeaderFieldName, isReservedHeader } from "../mail/headers.ts";
import { contentTypeErrors } from "./content-types.ts";

// ---------------------------------------------------------------------------------------------
// Public constants and error type

/** Base of every `help` URL; the anchor is the field path without indices. */
export const MAIL_SEND_DOCS_URL = "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send";

/** The body is capped at 20 MB in all (docs/api/sendgrid.md#size-limits); the route checks raw bytes. */
export const MAX_MAIL_SEND_BYTES = 20 * 1024 * 1024;

/** Message for the route's 413 (SendGrid's "payload too large" in its docs' wording). */
export const PAYLOAD_TOO_LARGE_MESSAGE =
  "The JSON payload you have included in your request is too large. The request body, including base64-encoded attachments, may be at most 20 MB.";

export const MAX_PERSONALIZATIONS = 1000;
export const MAX_TOTAL_RECIPIENTS = 1000;
export const MAX_ATTACHMENTS = 10;
export const MAX_CATEGORIES = 10;
export const MAX_SCHEDULE_AHEAD_SECONDS = 72 * 3600;

// Size limits of ScaiSend's own (docs/api/sendgrid.md, size limits). D1 refuses any string or row
// over 2,000,000 bytes (SQLITE_TOOBIG), and each message is one row holding its subject, headers,
// addresses, custom_args, categories and bodies, so every field that lands there is bounded here,
// in the unit D1 counts: UTF-8 bytes. Header-bound limits also keep each header within what large
// receivers take (Gmail: 32 KB per header, 500 KB in all) once RFC 2047 encoding has grown it.
// The service checks the same limits again after substitutions, which can make a field longer.

/**
 * Subject, at either level: far above any real subject, ≈ 22 KB once encoded-words wrap it. (Gmail
 * refuses a Subject over 998 characters; other receivers take longer ones, so that is not our cap.)
 */
export const MAX_SUBJECT_BYTES = 16_384;
/** Display name of any address. Keeps `"name" <320-char address>` within one 998-octet line (RFC 5322 §2.1.1). */
export const MAX_NAME_BYTES = 256;
/** Custom header name (ASCII, so characters = bytes); a field name cannot be folded. */
export const MAX_HEADER_NAME_LENGTH = 256;
/** One custom header value. */
export const MAX_HEADER_VALUE_BYTES = 16_384;
/** All custom headers of one level (names + values); the merged headers of a message have the same cap. */
export const MAX_HEADERS_BYTES = 65_536;
/** Content (and attachment) type: RFC 6838 §4.2 allows 127 characters each for type and subtype. */
export const MAX_CONTENT_TYPE_LENGTH = 255;
/**
 * Text + HTML of one message, after substitutions (the service enforces it, 413). Bodies too large
 * for a link frame travel to the origin by reference (R2), so only the request's own cap bounds them.
 */
export const MAX_BODY_BYTES = MAX_MAIL_SEND_BYTES;
/** `sections` (as JSON): section text only ever ends up in a body; 700 KiB is far above real use. */
export const MAX_SECTIONS_BYTES = 700 * 1024;
/** SendGrid's documented cap on custom_args, global merged with each personalization's (as JSON). */
export const MAX_CUSTOM_ARGS_BYTES = 10_000;

export type SendGridFieldError = { message: string; field: string | null; help: string | null };

export type MailSendValidation = { ok: true; value: MailSend } | { ok: false; errors: SendGridFieldError[] };

/** Body for malformed JSON: SendGrid answers exactly this (docs/api/sendgrid.md#errors). */
export function malformedJsonError(): SendGridFieldError {
  return { message: "Bad Request", field: null, help: null };
}

/** Body entry for the route's 413 when the raw body exceeds MAX_MAIL_SEND_BYTES. */
export function payloadTooLargeError(): SendGridFieldError {
  return { message: PAYLOAD_TOO_LARGE_MESSAGE, field: null, help: `${MAIL_SEND_DOCS_URL}#attachments` };
}

// ---------------------------------------------------------------------------------------------
// Message catalogue. Quoted strings are SendGrid's (its live answers and its Mail Send errors page,
// where live responses render placeholders as `[value]`); entries marked "ours" have no SendGrid text.

/** 16384 → "16,384" (without Intl, identical in every runtime). */
function fmt(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

const addressExample = `e.g. {"email": "example@example.com"} or {"email": "example@example.com", "name": "Example Recipient"}`;

export const MESSAGES = {
  notAnObject: (given: string) => `Invalid type. Expected: object, given: ${given}.`,
  invalidType: (expected: string, given: string) => `Invalid type. Expected: ${expected}, given: ${given}.`,

  personalizationsRequired:
    "The personalizations field is required and must have at least one personalization.",
  personalizationsEmpty: "You must have at least one personalization.",
  personalizationsTooMany: (n: number) =>
    `The personalization block is limited to 1000 personalizations per API request. You have provided ${n} personalizations. Please consider splitting this into multiple requests and resending your request.`,
  totalRecipients: "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
  toRequired: "The to parameter is required for all personalization objects.",
  duplicateRecipient: (email: string, path: string) =>
    `Each email address in the personalization block should be unique between to, cc, and bcc. We found the first duplicate instance of [${email}] in the ${path} field.`,

  // Addresses. The from-message is the one SendGrid's live API returns (two spaces and all), as do the
  // mocks that replay it.
  fromRequired:
    'The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.  e.g. {"email" : "example@example.com"}  or {"email" : "example@example.com", "name" : "Example Recipient"}.',
  fromInvalid: "The from email does not contain a valid address.",
  recipientRequired: (list: "to" | "cc" | "bcc") =>
    list === "to"
      ? `The to array must at least have an \`email\` parameter with a valid email address and it may also contain a \`name\` parameter. ${addressExample}`
      : `The ${list} array, when used, must at least have an \`email\` parameter with a valid email address and it may also contain a \`name\` parameter. ${addressExample}`,
  recipientInvalid: "Does not contain a valid address.",
  replyToRequired: `The \`reply_to\` object, when used, must at least have an \`email\` parameter with a valid email address and it may also contain a \`name\` parameter. ${addressExample}`,
  replyToInvalid: "The reply_to email does not contain a valid address.", // ours, by analogy with from
  replyToListInvalid: "The `reply_to_list` email does not contain a valid address.",
  replyToListUnique: "Each email address in the `reply_to_list` should be unique.",
  replyToListTooMany: "The `reply_to_list` may contain at most 1000 addresses.", // ours (limit: SendGrid's limitations page)
  replyToExclusive: "`reply_to` is mutually exclusive with `reply_to_list`.",
  emailTooLong: (label: "From" | "To" | "CC" | "BCC" | "Reply-To") =>
    `The ${label} email exceeds the maximum total length of 320 characters`,
  nameSeparators: (list: "to" | "cc" | "bcc") => `The ${list} name cannot contain ';' or ',' characters.`, // ours
  nameCrlf: (what: string) => `The ${what} name cannot contain CRLF characters.`, // ours: header-injection guard
  nameTooLong: (what: string) => `The ${what} name may be at most ${fmt(MAX_NAME_BYTES)} bytes long (UTF-8).`, // ours: size limit

  subjectInvalid: "The subject of your email must be a string at least one character in length.",
  subjectCrlf: "The subject cannot contain CRLF characters.", // ours: header-injection guard
  subjectTooLong: `The subject may be at most ${fmt(MAX_SUBJECT_BYTES)} bytes long (UTF-8).`, // ours: size limit
  subjectRequired:
    "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",

  contentRequired:
    "The content param is required unless you are using a transactional template and have defined a template_ID.",
  contentEmpty:
    "There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.",
  contentWithTemplate:
    "The content param cannot be combined with template_id: the dynamic template supplies the content. Remove one of them.", // ours: docs/api/sendgrid.md#fields
  contentTypeRequired: "A content type is required, this tells email clients how to display the email.",
  contentTypeInvalid: "Your content type must be a string with length of at least one character.",
  contentTypeChars: "Cannot contain ';', or CRLF characters.",
  contentTypeTooLong: `The content type may be at most ${MAX_CONTENT_TYPE_LENGTH} characters long.`, // ours
  contentValueRequired: "A content value is required, this is the content of the email you are sending.",
  contentValueInvalid: "The content value must be a string at least one character in length.",
  contentOrder:
    "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain needs to be first, followed by text/html, followed by any other content.",

  templateIdType: (given: string) => `The template ID must be a string, you provided [${given}].`,
  templateIdPrefix: "The template_id must start with 'd-'", // ScaiSend's published wording, verbatim

  headerValuesPersonalization: "All values of the headers object must be strings.",
  headerValues: "The header values must be strings.",
  headerKeyChars: "Header keys cannot contain non-ASCII characters or empty spaces.",
  headerReserved: "Header cannot be one of the reserved keys.",
  headerDuplicate: "The headers cannot contain duplicate keys.",
  headerNameTooLong: `Header keys may be at most ${MAX_HEADER_NAME_LENGTH} characters long.`, // ours: size limit
  headerValueTooLong: (key: string) =>
    `The value of the header ${JSON.stringify(key)} may be at most ${fmt(MAX_HEADER_VALUE_BYTES)} bytes long (UTF-8).`, // ours
  headersTooLarge: `The headers may total at most ${fmt(MAX_HEADERS_BYTES)} bytes (names and values, UTF-8).`, // ours
  headerCrlf: (key: string) =>
    `The header ${JSON.stringify(key)} cannot contain CR or LF characters in its name or value.`, // ours

  customArgsValues: "All values of custom arguments object must be strings",
  customArgsEmpty: "`custom_args` cannot be empty.",
  customArgsSize:
    "The combined size of both global and personalization custom arguments may not exceed 10,000 bytes per personalization.",

  substitutionsValues:
    "The substitution values must be an object of key/value pairs, where the values are all strings.",
  substitutionsCount: "You are limited to 10,000 substitutions.",
  substitutionsSize: "The substitutions may not exceed 10,000 bytes per personalization.", // ours (limit: SendGrid's reference)
  sectionsValues: "The section values must be strings.",
  sectionsSize: `The sections may total at most ${fmt(MAX_SECTIONS_BYTES)} bytes (as JSON).`, // ours: size limit

  sendAtType:
    "The `send_at` parameter is expecting a Unix timestamp as an integer. We will send immediately if you include a `send_at` timestamp that is in the past.",
  sendAtTooFar: "Scheduling more than 72 hours in advance is forbidden.",

  categoriesType: "Categories must be an array of strings.",
  categoriesTooMany: (n: number) =>
    `There is a limit of 10 categories for each email that is sent. You provided ${n} categories.`,
  categoryTooLong: (c: string) =>
    `Each category must not be longer than 255 characters. [${c}] exceeds this limit`,
  categoryDuplicate: (c: string) =>
    `The categories must be a unique list, and you have included [${c}] more than once.`,
  categoryAscii: "Categories can not contain non-ASCII characters.",
  categoryCrlf: "Categories cannot contain CRLF characters.", // ours: categories can end up in headers

  attachmentsTooMany: (n: number) =>
    `There is a limit of 10 attachments per message. You provided ${n} attachments.`, // ours
  attachmentContentInvalid: "The attachment content must be a string at least one character in length.",
  attachmentContentBase64: "The attachment content must be base64 encoded.",
  attachmentFilenameRequired: "filename is required.",
  attachmentFilenameType: "The filename of your attachment must be a string.",
  attachmentFilenameCrlf: "The filename of your attachment cannot contain CRLF characters.",
  attachmentFilenameLength: "The filename of your attachment must be between 1 and 255 characters.", // ours
  attachmentTypeInvalid: "The attachment type must be a string and at least one character in length.",
  attachmentTypeChars: "The type cannot contain ';', or CRLF characters.",
  attachmentTypeTooLong: `The attachment type may be at most ${MAX_CONTENT_TYPE_LENGTH} characters long.`, // ours
  attachmentDisposition: (given: string) =>
    `The disposition of your attachment can be either "inline" or "attachment". You provided [${given}].`,
  attachmentContentIdType: (given: string) =>
    `The content ID of your attachment must be a string. You provided [${given}].`,
  attachmentContentIdCrlf: "The content ID of your attachment cannot contain CRLF characters.",
  attachmentContentIdRequired: "The content_id parameter is required if disposition = 'inline'.", // live (sendgrid-nodejs#1080)

  batchIdType: "The batch_id must be a string.",
  ipPoolType: "The name of your IP pool must be a string.",
  ipPoolLength: (given: string) =>
    `The IP Pool name must be between 2 and 64 characters. You provided [${given}].`, // ours (limit: SendGrid's reference)
  ipPoolNotFound: (given: string) =>
    `The IP Pool name must be a valid pool name for your account. You provided [${given}].`, // SendGrid's

  asmGroupId: "The ASM group ID must be an integer.",
  asmGroupsToDisplay: "The ASM Group IDs to display must be an array of integers.",
  asmGroupsToDisplayTooMany:
    "There is a limit of 25 unsubscribe groups that can be displayed to a user at a time.",

  enableBoolean: (label: string) => `The ${label} enable param should be a boolean value.`,
  bypassCombination:
    "bypass_list_management cannot be combined with bypass_spam_management, bypass_bounce_management or bypass_unsubscribe_management.", // ours; the rule is SendGrid's (Mail Send reference)
  footerText: "The text/plain version of your footer should be a string.",
  footerHtml: "The text/html version of your footer should be a string.",
  bccSettingEmail: `The bcc email recipient object must at least have an email address and may also contain a name. ${addressExample}`,
  bccSettingRequired: "You must include a recipient object when using the bcc mail setting.",
  // ours: SendGrid retired the setting; ScaiSend has no spam scoring of outgoing mail (notSupportedErrors)
  spamCheckRetired:
    "The spam check mail setting is retired (as at SendGrid) and this deployment does not score outgoing mail for spam; remove mail_settings.spam_check or set its enable to false.",
  spamCheckThreshold:
    "The spam check threshold is between 1 and 10, with the lower numbers being the most strict filtering.",
  spamCheckUrlType: "The spam check url must be a string.",
  spamCheckUrlScheme: "The `post_to_url` parameter must start with `http://` or `https://`.",
  clickTrackingEnableText: "The click tracking enable text must be a boolean value.",
  openTrackingTag: "The open tracking substitution tag must be a string.",
  subscriptionTrackingText:
    "The subscription tracking unsubscribe content for text/plain messages must be a string.",
  subscriptionTrackingHtml:
    "The subscription tracking unsubscribe content for text/html messages must be a string.",
  subscriptionTrackingTag: "The subscription tracking substitution tag must be a string value.",
  ganalyticsEnable: "The Google Analytics enable param must be a boolean value.",
  ganalyticsUtm: (key: string) => `The Google Analytics ${key} must be a string value.`,

  // ours: a key that is no field of the body at its level (see the header for why it is refused)
  unknownField: (key: string) =>
    `Unknown field [${key}]: the mail/send body has no such parameter here. Remove it, or check its spelling (field names are snake_case, e.g. template_id).`,
  unknownFieldsMore: (n: number) => `…and ${fmt(n)} more unknown fields in this object.`,

  // ours: fields SendGrid defines that this deployment does not honour yet (see notSupportedErrors)
  notSupported: (what: string, fix: string) => `${what} not supported yet by this deployment; ${fix}.`,
  templateNotFound: (id: string) =>
    `The Template ID must be a valid template id for your account. You provided ${id}.`, // SendGrid's
  substitutionsWithDynamic: "Substitutions may not be used with dynamic templating", // SendGrid's
  sectionsWithDynamic: "Sections may not be used with dynamic templating", // ours, after SendGrid's
  dynamicDataWithoutDynamic:
    "Dynamic template data is used only with a dynamic template (a template_id starting with d-); remove dynamic_template_data or send with a dynamic template.", // ours: SendGrid ignores it
} as const;

// ---------------------------------------------------------------------------------------------
// Primitive predicates

/**
 * Practical RFC 5322 addr-spec: dot-atom local part, dotted domain of LDH labels (IDNs as punycode).
 * No quoted local parts, IP literals or SMTPUTF8: we deliver over plain SMTP to real MX hosts.
 */
const EMAIL_RE =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const MAX_EMAIL_LENGTH = 320;

export const isValidEmail = (s: string): boolean => s.length <= MAX_EMAIL_LENGTH && EMAIL_RE.test(s);
const hasCrLf = (s: string): boolean => /[\r\n]/.test(s);
const isAscii = (s: string): boolean => /^[\x00-\x7F]*$/.test(s);

/** Standard base64; whitespace (line wrapping) ignored, padding optional. */
export function isBase64(s: string): boolean {
  const compact = s.replace(/[\r\n\t ]/g, "");
  if (compact.length === 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) return false;
  const withoutPadding = compact.replace(/=+$/, "");
  if (compact.length !== withoutPadding.length && compact.length % 4 !== 0) return false;
  return withoutPadding.length % 4 !== 1;
}

/** JSON-schema type names, as in SendGrid's "Invalid type. Expected: array, given: object." */
export function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  if (v === undefined) return "undefined";
  return typeof v;
}

/** How a bad value is echoed inside `[...]`: strings raw, everything else as JSON. */
const MAX_ECHO_LENGTH = 1000;
function echo(v: unknown): string {
  let text: string;
  try {
    text = typeof v === "string" ? v : (JSON.stringify(v) ?? String(v));
  } catch {
    // JSON.stringify throws RangeError on very deep nesting; the type is echo enough.
    text = jsonType(v);
  }
  // A value echoed in an error should not make the error as large as the request.
  return text.length > MAX_ECHO_LENGTH ? `${text.slice(0, MAX_ECHO_LENGTH)}…` : text;
}

// ---------------------------------------------------------------------------------------------
// Schema building blocks

/** The JSON type a schema expects, as SendGrid names it in "Invalid type. Expected: …". */
function expectedJsonType(schema: z.ZodType): string {
  const def = schema._zod.def as { type: string; format?: string; in?: z.ZodType };
  switch (def.type) {
    case "object":
    case "record":
      return "object";
    case "array":
      return "array";
    case "string":
    case "enum":
      return "string";
    case "boolean":
      return "boolean";
    case "number":
      return def.format?.includes("int") ? "integer" : "number";
    case "pipe":
      if (def.in) return expectedJsonType(def.in);
  }
  // Thrown at module load, so a new kind of field fails every test instead of naming no type.
  throw new Error(`mail-send: no JSON type for a ${def.type} schema`);
}

/**
 * Optional field. Absent is fine; JSON `null` is SendGrid's type error ("Invalid type. Expected:
 * array, given: null."), not "absent" (see the header).
 */
function opt<T extends z.ZodType>(schema: T) {
  const nullMessage = MESSAGES.invalidType(expectedJsonType(schema), "null");
  return z.preprocess((v, ctx) => {
    if (v !== null) return v;
    ctx.issues.push({ code: "custom", message: nullMessage, input: v });
    return undefined;
  }, schema.optional());
}

/** A string with one message for "missing" and one for "wrong type". */
function str(required: string, wrongType: string = required) {
  return z.string({ error: (iss) => (iss.input === undefined ? required : wrongType) });
}

/** A string that must not contain CR or LF (it ends up in a header: subject, names, filenames…). */
function headerSafe(schema: z.ZodString, message: string) {
  return schema.refine((s) => !hasCrLf(s), { error: message });
}

type AddressKind = {
  /** Used in the name-CRLF message, e.g. "from", "to". */
  what: string;
  required: string;
  invalid: string;
  tooLong: string;
  /** to/cc/bcc names may not contain ';' or ',' (SendGrid's Mail Send limitations page). */
  separators?: string;
};

function addressSchema(kind: AddressKind) {
  const email = str(kind.required)
    .max(MAX_EMAIL_LENGTH, { error: kind.tooLong })
    .refine((s) => EMAIL_RE.test(s), { error: kind.invalid });
  let name = headerSafe(
    z.string({ error: (iss) => MESSAGES.invalidType("string", jsonType(iss.input)) }),
    MESSAGES.nameCrlf(kind.what),
  ).refine((s) => utf8ByteLength(s) <= MAX_NAME_BYTES, { error: MESSAGES.nameTooLong(kind.what) });
  const separators = kind.separators;
  if (separators !== undefined) name = name.refine((s) => !/[;,]/.test(s), { error: separators });
  return z.strictObject(
    { email, name: opt(name) },
    { error: (iss) => MESSAGES.invalidType("object", jsonType(iss.input)) },
  );
}

const fromKind: AddressKind = {
  what: "from",
  required: MESSAGES.fromRequired,
  invalid: MESSAGES.fromInvalid,
  tooLong: MESSAGES.emailTooLong("From"),
};
const recipientKind = (list: "to" | "cc" | "bcc"): AddressKind => ({
  what: list,
  required: MESSAGES.recipientRequired(list),
  invalid: MESSAGES.recipientInvalid,
  tooLong: MESSAGES.emailTooLong(list === "to" ? "To" : list === "cc" ? "CC" : "BCC"),
  separators: MESSAGES.nameSeparators(list),
});
const replyToKind: AddressKind = {
  what: "reply_to",
  required: MESSAGES.replyToRequired,
  invalid: MESSAGES.replyToInvalid,
  tooLong: MESSAGES.emailTooLong("Reply-To"),
};
const replyToListKind: AddressKind = {
  what: "reply_to_list",
  required: MESSAGES.replyToListInvalid,
  invalid: MESSAGES.replyToListInvalid,
  tooLong: MESSAGES.emailTooLong("Reply-To"),
};

export const EmailAddressSchema = addressSchema(fromKind);

/**
 * A missing `from` is reported at `from.email` (that is what SendGrid's live API returns), so an
 * absent `from` is parsed as `{}` and fails on its email; `null` is a type error like any other.
 */
const FromSchema = z.preprocess((v) => (v === undefined ? {} : v), addressSchema(fromKind));

function recipientList(list: "to" | "cc" | "bcc") {
  return z.array(addressSchema(recipientKind(list)), {
    error: (iss) => MESSAGES.invalidType("array", jsonType(iss.input)),
  });
}

/** `to` is required and non-empty in every personalization (SendGrid's Mail Send errors page). */
const ToSchema = z
  .array(addressSchema(recipientKind("to")), { error: MESSAGES.toRequired })
  .min(1, { error: MESSAGES.toRequired });

const subjectSchema = headerSafe(
  str(MESSAGES.subjectInvalid).min(1, { error: MESSAGES.subjectInvalid }),
  MESSAGES.subjectCrlf,
).refine((s) => utf8ByteLength(s) <= MAX_SUBJECT_BYTES, { error: MESSAGES.subjectTooLong });

const sendAtSchema = z.int({ error: MESSAGES.sendAtType });

/**
 * Custom email headers; `valuesMessage` differs between the two levels in SendGrid's catalogue.
 * Values are typed `unknown` at first so that one non-string value does not hide an injection attempt in
 * another header (zod skips record-level checks once a value fails).
 */
function headersSchema(valuesMessage: string) {
  return z
    .record(z.string(), z.unknown(), { error: (iss) => MESSAGES.invalidType("object", jsonType(iss.input)) })
    .check((ctx) => {
      const seen = new Set<string>();
      let bytes = 0;
      let anyProblem = false;
      for (const [key, value] of Object.entries(ctx.value)) {
        const problem = typeof value === "string" ? headerProblem(key, value) : valuesMessage;
        if (problem) ctx.issues.push({ code: "custom", message: problem, input: value, path: [key] });
        anyProblem ||= problem !== null;
        const lower = key.toLowerCase();
        if (seen.has(lower))
          ctx.issues.push({ code: "custom", message: MESSAGES.headerDuplicate, input: key, path: [] });
        seen.add(lower);
        bytes += utf8ByteLength(key) + (typeof value === "string" ? utf8ByteLength(value) : 0);
      }
      // A header too long on its own already explains the total.
      if (bytes > MAX_HEADERS_BYTES && !anyProblem)
        ctx.issues.push({ code: "custom", message: MESSAGES.headersTooLarge, input: ctx.value, path: [] });
    })
    .transform((headers) => headers as Record<string, string>);
}

/** First problem with one header, injection first because it is the dangerous one. */
function headerProblem(key: string, value: string): string | null {
  if (hasCrLf(key) || hasCrLf(value)) return MESSAGES.headerCrlf(key);
  if (!isHeaderFieldName(key)) return MESSAGES.headerKeyChars;
  if (key.length > MAX_HEADER_NAME_LENGTH) return MESSAGES.headerNameTooLong;
  if (isReservedHeader(key)) return MESSAGES.headerReserved;
  if (utf8ByteLength(value) > MAX_HEADER_VALUE_BYTES) return MESSAGES.headerValueTooLong(key);
  return null;
}

const CustomArgsSchema = z
  .record(z.string(), z.string({ error: MESSAGES.customArgsValues }), { error: MESSAGES.customArgsValues })
  .refine((r) => Object.keys(r).length > 0, { error: MESSAGES.customArgsEmpty });

const MAX_SUBSTITUTIONS = 10_000;
const MAX_SUBSTITUTION_BYTES = 10_000;
const SubstitutionsSchema = z
  .record(z.string(), z.string({ error: MESSAGES.substitutionsValues }), {
    error: MESSAGES.substitutionsValues,
  })
  .refine((r) => Object.keys(r).length <= MAX_SUBSTITUTIONS, {
    error: MESSAGES.substitutionsCount,
    abort: true,
  })
  .refine((r) => utf8ByteLength(JSON.stringify(r)) <= MAX_SUBSTITUTION_BYTES, {
    error: MESSAGES.substitutionsSize,
  });

const SectionsSchema = z
  .record(z.string(), z.string({ error: MESSAGES.sectionsValues }), {
    error: MESSAGES.sectionsValues,
  })
  .refine((r) => utf8ByteLength(JSON.stringify(r)) <= MAX_SECTIONS_BYTES, { error: MESSAGES.sectionsSize });

/** Any JSON object; only used to render d- templates (SendGrid's dynamic templates, Handlebars). */
const DynamicTemplateDataSchema = z.record(z.string(), z.unknown(), {
  error: (iss) => MESSAGES.invalidType("object", jsonType(iss.input)),
});

export const PersonalizationSchema = z.strictObject(
  {
    to: ToSchema,
    cc: opt(recipientList("cc")),
    bcc: opt(recipientList("bcc")),
    from: opt(addressSchema(fromKind)),
    subject: opt(subjectSchema),
    headers: opt(headersSchema(MESSAGES.headerValuesPersonalization)),
    substitutions: opt(SubstitutionsSchema),
    dynamic_template_data: opt(DynamicTemplateDataSchema),
    custom_args: opt(CustomArgsSchema),
    send_at: opt(sendAtSchema),
  },
  { error: (iss) => MESSAGES.invalidType("object", jsonType(iss.input)) },
);

export const ContentSchema = z.strictObject(
  {
    type: headerSafe(
      str(MESSAGES.contentTypeRequired, MESSAGES.contentTypeInvalid).min(1, {
        error: MESSAGES.contentTypeRequired,
      }),
      MESSAGES.contentTypeChars,
    )
      .refine((s) => !s.includes(";"), { error: MESSAGES.contentTypeChars })
      .refine((s) => s.length <= MAX_CONTENT_TYPE_LENGTH, { error: MESSAGES.contentTypeTooLong }),
    value: str(MESSAGES.contentValueRequired, MESSAGES.contentValueInvalid).min(1, {
      error: MESSAGES.contentValueInvalid,
    }),
  },
  { error: (iss) => MESSAGES.invalidType("object", jsonType(iss.input)) },
);

/**
 * @sendgrid/mail's own types name an attachment's content id `contentId` (AttachmentData), and the
 * client sends a plain attachment object as given, camelCase and all. SendGrid ignores that key (its
 * answer is then "content_id … required" for an inline one, or a part without Content-ID:
 * github.com/sendgrid/sendgrid-nodejs/issues/1080 and pull/1364); ScaiSend reads it as `content_id`,
 * so an official client's inline image works. Sent beside `content_id`, it is an unknown key.
 */
function contentIdAlias(v: unknown): unknown {
  if (!isRecord(v) || !("contentId" in v) || "content_id" in v) return v;
  const { contentId, ...rest } = v;
  return { ...rest, content_id: contentId };
}

export const AttachmentSchema = z.preprocess(
  contentIdAlias,
  z.strictObject(
    {
      content: str(MESSAGES.attachmentContentInvalid)
        .min(1, { error: MESSAGES.attachmentContentInvalid })
        .refine(isBase64, { error: MESSAGES.attachmentContentBase64 }),
      filename: headerSafe(
        str(MESSAGES.attachmentFilenameRequired, MESSAGES.attachmentFilenameType),
        MESSAGES.attachmentFilenameCrlf,
      ).refine((s) => s.length >= 1 && s.length <= 255, { error: MESSAGES.attachmentFilenameLength }),
      type: opt(
        headerSafe(
          z
            .string({ error: MESSAGES.attachmentTypeInvalid })
            .min(1, { error: MESSAGES.attachmentTypeInvalid }),
          MESSAGES.attachmentTypeChars,
        )
          .refine((s) => !s.includes(";"), { error: MESSAGES.attachmentTypeChars })
          .refine((s) => s.length <= MAX_CONTENT_TYPE_LENGTH, { error: MESSAGES.attachmentTypeTooLong }),
      ),
      disposition: opt(
        z.enum(["inline", "attachment"], { error: (iss) => MESSAGES.attachmentDisposition(echo(iss.input)) }),
      ),
      content_id: opt(
        headerSafe(
          z.string({ error: (iss) => MESSAGES.attachmentContentIdType(echo(iss.input)) }),
          MESSAGES.attachmentContentIdCrlf,
        ),
      ),
    },
    { error: (iss) => MESSAGES.invalidType("object", jsonType(iss.input)) },
  ),
);

const CategoriesSchema = z
  .array(
    z
      .string({ error: MESSAGES.categoriesType })
      .refine((c) => c.length <= 255, { error: (iss) => MESSAGES.categoryTooLong(echo(iss.input)) })
      .refine(isAscii, { error: MESSAGES.categoryAscii })
      .refine((c) => !hasCrLf(c), { error: MESSAGES.categoryCrlf }),
    { error: MESSAGES.categoriesType },
  )
  .max(MAX_CATEGORIES, { error: (iss) => MESSAGES.categoriesTooMany((iss.input as unknown[]).length) })
  .check((ctx) => {
    const seen = new Set<string>();
    for (const c of ctx.value) {
      if (seen.has(c)) {
        ctx.issues.push({ code: "custom", message: MESSAGES.categoryDuplicate(c), input: ctx.value });
        return;
      }
      seen.add(c);
    }
  });

const AsmSchema = z.strictObject(
  {
    group_id: z.int({ error: MESSAGES.asmGroupId }),
    groups_to_display: opt(
      z
        .array(z.int({ error: MESSAGES.asmGroupsToDisplay }), { error: MESSAGES.asmGroupsToDisplay })
        .max(25, { error: MESSAGES.asmGroupsToDisplayTooMany }),
    ),
  },
  { error: (iss) => MESSAGES.invalidType("object", jsonType(iss.input)) },
);

const objectError = {
  error: (iss: { input?: unknown }) => MESSAGES.invalidType("object", jsonType(iss.input)),
};

/** `{enable}` objects; `label` is SendGrid's spelling in "The <label> enable param should be a boolean value." */
const enableFlag = (label: string) => opt(z.boolean({ error: MESSAGES.enableBoolean(label) }));
const optString = (message: string) => opt(z.string({ error: message }));
const toggle = (label: string) => z.strictObject({ enable: enableFlag(label) }, objectError);

const MailSettingsSchema = z.strictObject(
  {
    bypass_list_management: opt(toggle("bypass list management")),
    bypass_spam_management: opt(toggle("bypass spam management")),
    bypass_bounce_management: opt(toggle("bypass bounce management")),
    bypass_unsubscribe_management: opt(toggle("bypass unsubscribe management")),
    footer: opt(
      z.strictObject(
        {
          enable: enableFlag("footer"),
          text: optString(MESSAGES.footerText),
          html: optString(MESSAGES.footerHtml),
        },
        objectError,
      ),
    ),
    sandbox_mode: opt(toggle("sandbox mode")),
    // Only in SendGrid's older Swagger spec (github.com/sendgrid/sendgrid-oai); accepted for compatibility.
    bcc: opt(
      z
        .strictObject(
          {
            enable: enableFlag("bcc"),
            email: opt(
              z
                .string({ error: MESSAGES.bccSettingEmail })
                .refine(isValidEmail, { error: MESSAGES.bccSettingEmail }),
            ),
          },
          objectError,
        )
        .check((ctx) => {
          if (ctx.value.enable === true && ctx.value.email === undefined) {
            ctx.issues.push({
              code: "custom",
              message: MESSAGES.bccSettingRequired,
              input: ctx.value,
              path: ["email"],
            });
          }
        }),
    ),
    spam_check: opt(
      z.strictObject(
        {
          enable: enableFlag("spam check"),
          threshold: opt(
            z
              .int({ error: MESSAGES.spamCheckThreshold })
              .min(1, { error: MESSAGES.spamCheckThreshold })
              .max(10, { error: MESSAGES.spamCheckThreshold }),
          ),
          post_to_url: opt(
            z.string({ error: MESSAGES.spamCheckUrlType }).refine((u) => /^https?:\/\//.test(u), {
              error: MESSAGES.spamCheckUrlScheme,
            }),
          ),
        },
        objectError,
      ),
    ),
  },
  objectError,
);

const TrackingSettingsSchema = z.strictObject(
  {
    click_tracking: opt(
      z.strictObject(
        {
          enable: enableFlag("click tracking"),
          enable_text: opt(z.boolean({ error: MESSAGES.clickTrackingEnableText })),
        },
        objectError,
      ),
    ),
    open_tracking: opt(
      z.strictObject(
        { enable: enableFlag("open tracking"), substitution_tag: optString(MESSAGES.openTrackingTag) },
        objectError,
      ),
    ),
    subscription_tracking: opt(
      z.strictObject(
        {
          enable: enableFlag("subscription tracking"),
          text: optString(MESSAGES.subscriptionTrackingText),
          html: optString(MESSAGES.subscriptionTrackingHtml),
          substitution_tag: optString(MESSAGES.subscriptionTrackingTag),
        },
        objectError,
      ),
    ),
    ganalytics: opt(
      z.strictObject(
        {
          enable: opt(z.boolean({ error: MESSAGES.ganalyticsEnable })),
          utm_source: optString(MESSAGES.ganalyticsUtm("utm_source")),
          utm_medium: optString(MESSAGES.ganalyticsUtm("utm_medium")),
          utm_term: optString(MESSAGES.ganalyticsUtm("utm_term")),
          utm_content: optString(MESSAGES.ganalyticsUtm("utm_content")),
          utm_campaign: optString(MESSAGES.ganalyticsUtm("utm_campaign")),
        },
        objectError,
      ),
    ),
  },
  objectError,
);

/** A legacy template's id: a UUID, as SendGrid (and /v3/templates here) makes them. */
const LEGACY_TEMPLATE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isDynamicTemplateId = (id: string) => id.startsWith("d-");

const TemplateIdSchema = z
  .string({ error: (iss) => MESSAGES.templateIdType(echo(iss.input)) })
  // Dynamic ids start with d-, legacy ones are UUIDs (docs/api/sendgrid.md#fields); anything else
  // cannot name a template, and gets ScaiSend's published wording.
  .refine((s) => isDynamicTemplateId(s) || LEGACY_TEMPLATE_ID.test(s), { error: MESSAGES.templateIdPrefix });

const ReplyToListSchema = z
  .array(addressSchema(replyToListKind), {
    error: (iss) => MESSAGES.invalidType("array", jsonType(iss.input)),
  })
  .max(1000, { error: MESSAGES.replyToListTooMany })
  .check((ctx) => {
    const emails = ctx.value.map((a) => a.email.toLowerCase());
    if (new Set(emails).size !== emails.length) {
      ctx.issues.push({ code: "custom", message: MESSAGES.replyToListUnique, input: ctx.value });
    }
  });

/**
 * Field-by-field shape of the body. Cross-field rules live in `validateMailSend`; use that, not
 * this schema, to accept a request.
 */
export const MailSendSchema = z.strictObject(
  {
    personalizations: z
      .array(PersonalizationSchema, {
        error: (iss) =>
          iss.input === undefined
            ? MESSAGES.personalizationsRequired
            : MESSAGES.invalidType("array", jsonType(iss.input)),
      })
      .min(1, { error: MESSAGES.personalizationsEmpty })
      .max(MAX_PERSONALIZATIONS, {
        error: (iss) => MESSAGES.personalizationsTooMany((iss.input as unknown[]).length),
      }),
    from: FromSchema,
    reply_to: opt(addressSchema(replyToKind)),
    reply_to_list: opt(ReplyToListSchema),
    subject: opt(subjectSchema),
    content: opt(
      z.array(ContentSchema, { error: (iss) => MESSAGES.invalidType("array", jsonType(iss.input)) }),
    ),
    attachments: opt(
      z
        .array(AttachmentSchema, { error: (iss) => MESSAGES.invalidType("array", jsonType(iss.input)) })
        .max(MAX_ATTACHMENTS, {
          error: (iss) => MESSAGES.attachmentsTooMany((iss.input as unknown[]).length),
        }),
    ),
    template_id: opt(TemplateIdSchema),
    sections: opt(SectionsSchema),
    headers: opt(headersSchema(MESSAGES.headerValues)),
    categories: opt(CategoriesSchema),
    custom_args: opt(CustomArgsSchema),
    send_at: opt(sendAtSchema),
    batch_id: opt(z.string({ error: MESSAGES.batchIdType })),
    asm: opt(AsmSchema),
    ip_pool_name: opt(
      z.string({ error: MESSAGES.ipPoolType }).refine((s) => s.length >= 2 && s.length <= 64, {
        error: (iss) => MESSAGES.ipPoolLength(echo(iss.input)),
      }),
    ),
    mail_settings: opt(MailSettingsSchema),
    tracking_settings: opt(TrackingSettingsSchema),
  },
  { error: (iss) => MESSAGES.notAnObject(jsonType(iss.input)) },
);

export type MailSend = z.infer<typeof MailSendSchema>;
export type EmailAddress = z.infer<typeof EmailAddressSchema>;
export type Personalization = z.infer<typeof PersonalizationSchema>;
export type Content = z.infer<typeof ContentSchema>;
export type Attachment = z.infer<typeof AttachmentSchema>;
export type MailSettings = z.infer<typeof MailSettingsSchema>;
export type TrackingSettings = z.infer<typeof TrackingSettingsSchema>;

// ---------------------------------------------------------------------------------------------
// Cross-field rules over the raw body (SendGrid's Mail Send reference and limitations; docs/api/sendgrid.md)

type Raw = Record<string, unknown>;
type Path = readonly (string | number)[];
type RuleError = { path: Path; message: string };
type Rule = (body: Raw, nowSeconds: number) => RuleError[];

const isRecord = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);
const present = (v: unknown): boolean => v !== undefined && v !== null;
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const records = (v: unknown): Raw[] => list(v).filter(isRecord);
/** Personalizations with their original index (a non-object entry keeps its slot). */
const personalizations = (body: Raw): [Raw, number][] =>
  list(body.personalizations).flatMap((p, i): [Raw, number][] => (isRecord(p) ? [[p, i]] : []));

const templateSet = (body: Raw): boolean => present(body.template_id);
/** A legacy template takes the request's content as its <%body%>; a dynamic one supplies its own. */
const dynamicTemplateSet = (body: Raw): boolean =>
  typeof body.template_id === "string" ? isDynamicTemplateId(body.template_id) : templateSet(body);

const subjectRequired: Rule = (body) => {
  if (templateSet(body) || present(body.subject)) return [];
  const ps = list(body.personalizations);
  const everyHasSubject = ps.length > 0 && ps.every((p) => isRecord(p) && present(p.subject));
  return everyHasSubject ? [] : [{ path: ["subject"], message: MESSAGES.subjectRequired }];
};

const contentPresence: Rule = (body) => {
  const content = body.content;
  const empty = Array.isArray(content) && content.length === 0;
  if (dynamicTemplateSet(body)) {
    return present(content) && !empty ? [{ path: ["content"], message: MESSAGES.contentWithTemplate }] : [];
  }
  if (templateSet(body)) return [];
  if (!present(content)) return [{ path: ["content"], message: MESSAGES.contentRequired }];
  return empty ? [{ path: ["content"], message: MESSAGES.contentEmpty }] : [];
};

/** RFC 1341 §7.2 ordering as SendGrid enforces it: text/plain first, then text/html, then the rest. */
const contentOrder: Rule = (body) => {
  const types = records(body.content).map((c) => (typeof c.type === "string" ? c.type.toLowerCase() : ""));
  const plain = types.indexOf("text/plain");
  const html = types.indexOf("text/html");
  const misplaced = plain > 0 || (html >= 0 && html !== (plain === 0 ? 1 : 0));
  return misplaced ? [{ path: ["content"], message: MESSAGES.contentOrder }] : [];
};

const emailsOf = (v: unknown): string[] =>
  records(v).flatMap((a) => (typeof a.email === "string" ? [a.email] : []));

/** Within one personalization an address may appear once across to, cc and bcc (case-insensitive). */
const uniqueRecipients: Rule = (body) =>
  personalizations(body).flatMap(([p, i]) => {
    const seen = new Set<string>();
    for (const listName of ["to", "cc", "bcc"] as const) {
      for (const email of emailsOf(p[listName])) {
        const key = email.toLowerCase();
        if (seen.has(key)) {
          const where = `personalizations.${i}.${listName}`;
          return [{ path: ["personalizations", i], message: MESSAGES.duplicateRecipient(email, where) }];
        }
        seen.add(key);
      }
    }
    return [];
  });

const totalRecipients: Rule = (body) => {
  const total = personalizations(body).reduce(
    (n, [p]) => n + list(p.to).length + list(p.cc).length + list(p.bcc).length,
    0,
  );
  return total > MAX_TOTAL_RECIPIENTS
    ? [{ path: ["personalizations"], message: MESSAGES.totalRecipients }]
    : [];
};

const stringRecord = (v: unknown): Record<string, string> | null =>
  isRecord(v) && Object.values(v).every((x) => typeof x === "string") ? (v as Record<string, string>) : null;
const jsonBytes = (v: unknown): number => utf8ByteLength(JSON.stringify(v));

/** Global custom_args merged with each personalization's must stay ≤ 10,000 bytes (as JSON). */
const customArgsSize: Rule = (body) => {
  const global = stringRecord(body.custom_args) ?? {};
  if (jsonBytes(global) > MAX_CUSTOM_ARGS_BYTES)
    return [{ path: ["custom_args"], message: MESSAGES.customArgsSize }];
  return personalizations(body).flatMap(([p, i]) => {
    const own = stringRecord(p.custom_args);
    if (own === null) return [];
    const merged = { ...global, ...own };
    return jsonBytes(merged) > MAX_CUSTOM_ARGS_BYTES
      ? [{ path: ["personalizations", i, "custom_args"], message: MESSAGES.customArgsSize }]
      : [];
  });
};

const replyToExclusive: Rule = (body) =>
  present(body.reply_to) && present(body.reply_to_list)
    ? [{ path: ["reply_to"], message: MESSAGES.replyToExclusive }]
    : [];

const enabled = (settings: unknown, key: string): boolean =>
  isRecord(settings) && isRecord(settings[key]) && settings[key].enable === true;

const bypassCombination: Rule = (body) => {
  const s = body.mail_settings;
  const others = ["bypass_spam_management", "bypass_bounce_management", "bypass_unsubscribe_management"];
  return enabled(s, "bypass_list_management") && others.some((k) => enabled(s, k))
    ? [{ path: ["mail_settings", "bypass_list_management"], message: MESSAGES.bypassCombination }]
    : [];
};

/** send_at may be in the past (= now) but at most 72 h ahead, at both levels. */
const sendAtHorizon: Rule = (body, now) => {
  const tooFar = (v: unknown) => Number.isInteger(v) && (v as number) > now + MAX_SCHEDULE_AHEAD_SECONDS;
  const errors: RuleError[] = tooFar(body.send_at)
    ? [{ path: ["send_at"], message: MESSAGES.sendAtTooFar }]
    : [];
  for (const [p, i] of personalizations(body)) {
    if (tooFar(p.send_at))
      errors.push({ path: ["personalizations", i, "send_at"], message: MESSAGES.sendAtTooFar });
  }
  return errors;
};

/** An inline attachment is referenced from HTML as cid:<content_id> (RFC 2392), so it needs one. */
/** An attachment's content id as the schema reads it (`contentId` standing in: contentIdAlias). */
const contentIdOf = (a: Raw): unknown => ("content_id" in a ? a.content_id : a.contentId);

const inlineNeedsContentId: Rule = (body) =>
  list(body.attachments).flatMap((a, i) => {
    if (!isRecord(a) || a.disposition !== "inline") return [];
    const id = contentIdOf(a);
    return present(id) && id !== ""
      ? []
      : [{ path: ["attachments", i, "content_id"], message: MESSAGES.attachmentContentIdRequired }];
  });

const CROSS_FIELD_RULES: readonly Rule[] = [
  subjectRequired,
  contentPresence,
  contentOrder,
  uniqueRecipients,
  totalRecipients,
  customArgsSize,
  replyToExclusive,
  bypassCombination,
  sendAtHorizon,
  inlineNeedsContentId,
];

// ---------------------------------------------------------------------------------------------
// Error shaping

/** Record-valued fields: keys below them are user data, not schema, so help anchors stop there. */
const RECORD_FIELDS = new Set([
  "headers",
  "custom_args",
  "substitutions",
  "sections",
  "dynamic_template_data",
]);

/** `personalizations.0.headers.X-A` → `${MAIL_SEND_DOCS_URL}#personalizations.headers`. */
export function helpUrl(path: Path): string {
  const anchor: string[] = [];
  for (const segment of path) {
    if (typeof segment === "number") continue;
    anchor.push(segment);
    if (RECORD_FIELDS.has(segment)) break;
  }
  return `${MAIL_SEND_DOCS_URL}#${anchor.join(".").replaceAll("_", "-")}`;
}

export function fieldError(path: Path, message: string): SendGridFieldError {
  return { message, field: path.join("."), help: helpUrl(path) };
}

/**
 * `ip_pool_name` names a pool no origin of this deployment announced (the hub decides it at accept:
 * edge/src/services/ip-pools.ts): SendGrid's 400 for a pool the account does not have.
 */
export function unknownIpPoolError(name: string): SendGridFieldError {
  return fieldError(["ip_pool_name"], MESSAGES.ipPoolNotFound(echo(name)));
}

/**
 * `template_id` names no template of this tenant, or one without an active version (the send path
 * decides it: edge/src/services/send-mail.ts): SendGrid's 400 for an id the account does not have.
 */
export function unknownTemplateError(id: string): SendGridFieldError {
  return fieldError(["template_id"], MESSAGES.templateNotFound(echo(id)));
}

/** Message for any issue whose schema gave none (should not happen; keeps the body well-formed). */
function fallbackMessage(iss: z.core.$ZodRawIssue): string {
  if (iss.code === "invalid_type") return MESSAGES.invalidType(String(iss.expected), jsonType(iss.input));
  return "Invalid value.";
}

function toPath(path: readonly PropertyKey[]): Path {
  return path.map((s) => (typeof s === "number" ? s : String(s)));
}

/** Unknown keys of one object reported one by one; past this, one error says how many more. */
const MAX_UNKNOWN_KEYS_REPORTED = 10;

/** `help` for a field of the object at `parent` (the body itself: the field list). */
const objectHelp = (parent: Path): string =>
  parent.length === 0 ? `${MAIL_SEND_DOCS_URL}#fields` : helpUrl(parent);

/** Errors for one zod issue: unknown keys get one error each, at the key's own path. */
function issueErrors(iss: z.core.$ZodIssue): SendGridFieldError[] {
  const path = toPath(iss.path);
  if (iss.code !== "unrecognized_keys") return [fieldError(path, iss.message)];
  const shown = iss.keys.slice(0, MAX_UNKNOWN_KEYS_REPORTED);
  const errors = shown.map((key): SendGridFieldError => ({
    message: MESSAGES.unknownField(echo(key)),
    field: [...path, key].join("."),
    help: objectHelp(path),
  }));
  if (iss.keys.length > shown.length)
    errors.push({
      message: MESSAGES.unknownFieldsMore(iss.keys.length - shown.length),
      field: path.length === 0 ? null : path.join("."),
      help: objectHelp(path),
    });
  return errors;
}

/** Keep the first error per field, in order: SendGrid reports one error per field. */
function onePerField(errors: SendGridFieldError[]): SendGridFieldError[] {
  const seen = new Set<string | null>();
  return errors.filter((e) => {
    if (seen.has(e.field)) return false;
    seen.add(e.field);
    return true;
  });
}

/**
 * Validate a parsed JSON body of `POST /v3/mail/send`.
 * `now` (default: the current time) anchors the 72-hour `send_at` horizon; a number is epoch milliseconds.
 */
export function validateMailSend(body: unknown, now: Date | number = Date.now()): MailSendValidation {
  if (!isRecord(body))
    return {
      ok: false,
      errors: [{ message: MESSAGES.notAnObject(jsonType(body)), field: null, help: null }],
    };
  const nowSeconds = Math.floor((typeof now === "number" ? now : now.getTime()) / 1000);

  const parsed = MailSendSchema.safeParse(body, { error: fallbackMessage });
  const fieldErrors = parsed.success ? [] : parsed.error.issues.flatMap(issueErrors);
  const crossErrors = CROSS_FIELD_RULES.flatMap((rule) => rule(body, nowSeconds)).map((e) =>
    fieldError(e.path, e.message),
  );

  const errors = onePerField([...fieldErrors, ...crossErrors]);
  if (errors.length > 0 || !parsed.success) return { ok: false, errors };
  return { ok: true, value: parsed.data };
}

// ---------------------------------------------------------------------------------------------
// Fields this deployment does not honour yet

// mail_settings.footer and every tracking_settings.* are honoured: the origin applies them
// (docs/api/tracking.md), with the tenant's defaults merged in by the send path.

/**
 * Fields SendGrid defines that this deployment does not honour yet (docs/api/sendgrid.md, fields):
 * each is refused with a 400 in SendGrid's shape instead of being accepted and dropped. Run it on a
 * body that passed `validateMailSend`, so a malformed value still gets SendGrid's own message first.
 *
 * Refused only when the request asks for something that would not happen: a non-empty
 * `dynamic_template_data` without a dynamic template, substitutions or sections with one, any
 * content blocks that cannot be a MIME part (content-types.ts), `spam_check` enabled, and
 * settings with `enable: true` (`enable: false` asks for what
 * happens anyway). Honoured, so accepted: addresses (per-personalization `from` too), subject,
 * content, attachments (stored in R2 once per request, docs/api/sendgrid.md#attachments),
 * `template_id` (the send path checks the template exists and is active: services/send-mail.ts),
 * `send_at` (the hub holds the message until then; a past one means "now") and `batch_id` (a batch
 * of the tenant's, paused or cancelled through /v3/user/scheduled_sends: edge/src/services/scheduling.ts),
 * headers, substitutions and sections, `custom_args` and `categories` (kept with the
 * message, returned and filterable by /v3/messages), `ip_pool_name` (checked against the pools the
 * origins announced when the hub accepts the send), `mail_settings.sandbox_mode`, and the
 * `bypass_*` settings and `asm` (the hub checks the suppression lists before dispatch:
 * edge/src/services/suppression-check.ts).
 *
 * `_now` (epoch milliseconds) is unused since send_at is honoured; callers still pass it.
 */
export function notSupportedErrors(mail: MailSend, _now: number = Date.now()): SendGridFieldError[] {
  const errors: SendGridFieldError[] = [];
  const refuse = (path: Path, what: string, fix: string) =>
    errors.push(fieldError(path, MESSAGES.notSupported(what, fix)));
  const dynamic = mail.template_id !== undefined && isDynamicTemplateId(mail.template_id);
  mail.personalizations.forEach((p, i) => {
    // Data a send would not use is refused, never dropped: dynamic data needs a dynamic template,
    // and a dynamic template takes no substitutions (SendGrid refuses those too).
    if (!dynamic && p.dynamic_template_data !== undefined && Object.keys(p.dynamic_template_data).length > 0)
      errors.push(
        fieldError(["personalizations", i, "dynamic_template_data"], MESSAGES.dynamicDataWithoutDynamic),
      );
    if (dynamic && p.substitutions !== undefined && Object.keys(p.substitutions).length > 0)
      errors.push(fieldError(["personalizations", i, "substitutions"], MESSAGES.substitutionsWithDynamic));
  });
  if (dynamic && mail.sections !== undefined && Object.keys(mail.sections).length > 0)
    errors.push(fieldError(["sections"], MESSAGES.sectionsWithDynamic));
  // Other content types are built as parts of their own; what cannot be one is refused (content-types.ts).
  errors.push(...contentTypeErrors(mail.content));
  // `asm` is honoured: the send path checks its groups are the tenant's (edge/src/services/suppression-policy.ts).
  // SendGrid retired spam checking of outgoing mail; asking for it is refused, not ignored.
  if (mail.mail_settings?.spam_check?.enable === true)
    errors.push(fieldError(["mail_settings", "spam_check"], MESSAGES.spamCheckRetired));
  return errors;
}
