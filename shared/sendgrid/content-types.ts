/**
 * Content blocks of POST /v3/mail/send beyond text/plain and text/html (docs/api/sendgrid.md#other-content-types):
 * SendGrid takes any `type` without ';' or CR/LF (text/calendar, text/x-amp-html, …), ordered text/plain,
 * then text/html, then the rest (mail-send.ts checks both). Each becomes one more part of the
 * message's multipart/alternative at the origin (origin/src/compose/build-mime.ts): text/plain,
 * text/x-amp-html, text/html, then the others in request order (RFC 2046 §5.1.4: the last part is the
 * one preferred; AMP sits before the HTML, as Gmail's AMP for Email documentation asks, so clients
 * without AMP show the HTML).
 *
 * What this module refuses, each with a 400 at `content.<i>.type` (never accepted and dropped):
 *  - a type that is not `type/subtype` of RFC 2045 tokens: it could not be a part's Content-Type;
 *  - multipart/* and message/*: composite types need a structure of their own, not one body;
 *  - the same type twice (case-insensitively): one part per kind, which clients can tell apart;
 *  - more than MAX_OTHER_CONTENT blocks besides text/plain and text/html.
 * Imports only mail-send.ts's error helpers and the link's limit: it runs in the Worker and in Node.
 */
import { MAX_JOB_ALTERNATIVES } from "../link/protocol.ts";
import { fieldError, type SendGridFieldError } from "./mail-send.ts";

/** The types text and HTML travel as in their own job fields; the rest are `alternatives`. */
export const BODY_TYPES = new Set(["text/plain", "text/html"]);
/** AMP for Email's part type, placed between the text and the HTML. */
export const AMP_TYPE = "text/x-amp-html";
/** Content blocks besides text/plain and text/html one request may have (what one job carries). */
export const MAX_OTHER_CONTENT = MAX_JOB_ALTERNATIVES;

/** RFC 2045 §5.1: type "/" subtype, each a token (no tspecials, no space, no controls). */
const MIME_TYPE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export const CONTENT_TYPE_MESSAGES = {
  notMimeType: (type: string) =>
    `The content type ${JSON.stringify(type)} is not a MIME type of the form type/subtype (RFC 2045).`,
  composite: (type: string) =>
    `The content type ${JSON.stringify(type)} cannot be sent as a content block: multipart and message types need a structure of their own; send it as an attachment.`,
  duplicate: (type: string) =>
    `The content type ${JSON.stringify(type)} appears more than once; each content type may be sent once.`,
  tooMany: `At most ${MAX_OTHER_CONTENT} content blocks besides text/plain and text/html can be sent.`,
} as const;

/** Errors for a validated body's `content` (run after mail-send.ts's own checks). */
export function contentTypeErrors(content: readonly { type: string }[] | undefined): SendGridFieldError[] {
  const errors: SendGridFieldError[] = [];
  const seen = new Set<string>();
  let others = 0;
  (content ?? []).forEach((c, i) => {
    const path = ["content", i, "type"];
    const type = c.type.toLowerCase();
    if (!MIME_TYPE.test(c.type)) errors.push(fieldError(path, CONTENT_TYPE_MESSAGES.notMimeType(c.type)));
    else if (type.startsWith("multipart/") || type.startsWith("message/"))
      errors.push(fieldError(path, CONTENT_TYPE_MESSAGES.composite(c.type)));
    else if (seen.has(type)) errors.push(fieldError(path, CONTENT_TYPE_MESSAGES.duplicate(c.type)));
    else if (!BODY_TYPES.has(type) && ++others > MAX_OTHER_CONTENT)
      errors.push(fieldError(path, CONTENT_TYPE_MESSAGES.tooMany));
    seen.add(type);
  });
  return errors;
}

/**
 * The Content-Type of an alternative part: text types in UTF-8 (what the API's JSON strings are);
 * text/calendar with the `method` its iCalendar object names, as RFC 6047 §2.4 requires (Outlook
 * shows an invitation's buttons only then).
 */
export function alternativeContentType(type: string, value: string): string {
  const t = type.toLowerCase();
  if (!t.startsWith("text/")) return t;
  if (t === "text/calendar") {
    const method = /^METHOD:([A-Za-z-]{1,32})\r?$/m.exec(value)?.[1];
    if (method) return `${t}; charset=utf-8; method=${method.toUpperCase()}`;
  }
  return `${t}; charset=utf-8`;
}
