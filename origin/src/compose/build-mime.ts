/**
 * DeliveryJob → raw RFC 5322 message, built by nodemailer's MailComposer (the tree, its headers and
 * encodings) and serialized by render-mime.ts (the same bytes as the library's stream build, without
 * its stream machinery; anything that needs the streams still goes through `build()`).
 *
 * Besides the job's own fields it writes a Feedback-ID (see `feedbackId`), which dkim.ts signs.
 *
 * The edge validated everything already (no CR/LF, no reserved header names); this module checks
 * again and throws rather than repairing: a CR/LF that reached a header here would let API input
 * inject headers or a second message, and quietly stripping it would hide the edge bug. The
 * reserved names are the edge's own list (shared/mail/headers.ts), so a header the edge accepted is
 * never refused here.
 *
 * Line length (RFC 5322 §2.1.1: at most 998 octets per line): MailComposer folds header values at
 * whitespace and encodes non-ASCII text as RFC 2047 encoded-words split across lines, and it
 * writes long body lines as quoted-printable or base64. What it leaves alone is a long run of ASCII
 * without whitespace (a subject or custom header value with no spaces), which cannot be folded: such
 * a value is encoded here as encoded-words, which may be split anywhere. Whatever still comes out
 * with a longer line is refused (MimeBuildError), never sent as it is.
 *
 * Attachments (docs/api/sendgrid.md#attachments) arrive as references; the job runner's blob step
 * (origin/src/blobs/resolve-job.ts) fetches them and hands their bytes in `attachmentBytes`, in the
 * order of `message.attachments`, and puts bodies that travelled by reference back into
 * `text` / `html`. The tree is MailComposer's, the one clients expect:
 *   multipart/mixed ⊃ [ multipart/alternative ⊃ [ text, AMP, multipart/related ⊃ [ html, inline parts ],
 *                       other content types… ], attachments… ]
 * (each level only when needed). Inline parts are the attachments with `disposition: inline`; each
 * gets its Content-ID, which the HTML names as `cid:<content_id>`. Without HTML they are attached
 * like the rest. Filenames outside ASCII are encoded by MailComposer: RFC 2231 parameters in
 * Content-Disposition and an RFC 2047 `name` in Content-Type.
 */
import MailComposer from "nodemailer/lib/mail-composer/index.js";
import { encodeWord } from "nodemailer/lib/mime-funcs/index.js";
import type MimeNode from "nodemailer/lib/mime-node/index.js";
import type { DeliveryJob, LinkAddress } from "../../../shared/link/protocol.ts";
import { isHeaderFieldName, isReservedHeader } from "../../../shared/mail/headers.ts";
import { renderMimeTree } from "./render-mime.ts";
import { alternativeContentType, AMP_TYPE } from "../../../shared/sendgrid/content-types.ts";

export class MimeBuildError extends Error {
  override name = "MimeBuildError";
}

/** RFC 5322 §2.1.1: a line is at most 998 octets, CRLF excluded. */
export const MAX_LINE_OCTETS = 998;
/** Encoded-word length MailComposer itself uses when it splits encoded text (RFC 2047 §2 allows 75). */
const ENCODED_WORD_LENGTH = 52;
const CR_OR_LF = /[\r\n]/;

function assertNoLineBreak(value: string, what: string): void {
  if (CR_OR_LF.test(value)) throw new MimeBuildError(`${what} contains CR or LF`);
}

function toComposerAddress(address: LinkAddress, what: string): { name: string; address: string } {
  assertNoLineBreak(address.email, `${what} address`);
  if (address.name !== undefined) assertNoLineBreak(address.name, `${what} name`);
  return { name: address.name ?? "", address: address.email };
}

function customHeaders(headers: Record<string, string>): Record<string, string> {
  for (const [name, value] of Object.entries(headers)) {
    if (!isHeaderFieldName(name)) throw new MimeBuildError(`header name "${name}" is not a valid field name`);
    if (isReservedHeader(name)) throw new MimeBuildError(`header "${name}" is reserved`);
    assertNoLineBreak(value, `header "${name}"`);
  }
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, foldable(name, value)]));
}

/**
 * The value as MailComposer can fold it into lines of at most 998 octets: unchanged when every run
 * of non-whitespace fits on a line after `Name: `, otherwise all of it as encoded-words (Q for ASCII,
 * B otherwise), which receivers decode back to the same text (RFC 2047 §6.2).
 */
export function foldable(name: string, value: string): string {
  let longestRun = 0;
  for (const run of value.split(/[ \t]+/)) longestRun = Math.max(longestRun, run.length);
  // Lengths in UTF-16 units; a non-ASCII run is encoded by MailComposer anyway, so only ASCII runs matter.
  if (name.length + ": ".length + longestRun + 1 <= MAX_LINE_OCTETS) return value;
  return encodeWord(value, /^[\x00-\x7f]*$/.test(value) ? "Q" : "B", ENCODED_WORD_LENGTH);
}

/** Throws unless every line of the built message is at most MAX_LINE_OCTETS octets. */
function assertLineLengths(raw: Buffer): void {
  let start = 0;
  while (start < raw.length) {
    let end = raw.indexOf(0x0a, start);
    if (end === -1) end = raw.length;
    const length = end - start - (end > start && raw[end - 1] === 0x0d ? 1 : 0);
    if (length > MAX_LINE_OCTETS) {
      const line = raw.subarray(start, start + 40).toString("latin1");
      throw new MimeBuildError(`line of ${length} octets (over ${MAX_LINE_OCTETS}) starting "${line}"`);
    }
    start = end + 1;
  }
}

/**
 * A job whose attachments were fetched: `attachmentBytes[i]` is `message.attachments[i]`'s content;
 * `templateSnapshot` is the stored template `message.template` names (compose.ts renders it first).
 */
export type ComposableJob = DeliveryJob & { attachmentBytes?: Uint8Array[]; templateSnapshot?: Uint8Array };

function composerAttachments(job: ComposableJob) {
  const refs = job.message.attachments ?? [];
  if (refs.length === 0) return [];
  const bytes = job.attachmentBytes;
  if (!bytes || bytes.length !== refs.length)
    throw new MimeBuildError("the job's attachments were not fetched");
  return refs.map((a, i) => {
    assertNoLineBreak(a.filename, "attachment filename");
    assertNoLineBreak(a.type, "attachment type");
    if (a.contentId !== undefined) assertNoLineBreak(a.contentId, "attachment content_id");
    const content = bytes[i]!;
    return {
      filename: a.filename,
      content: Buffer.from(content.buffer, content.byteOffset, content.byteLength),
      contentType: a.type,
      contentDisposition: a.disposition,
      // A Content-ID only for inline parts: MailComposer puts every part with one into multipart/related.
      ...(a.disposition === "inline" && a.contentId !== undefined ? { cid: a.contentId } : {}),
    };
  });
}

export interface BuildMimeOptions {
  /** Date header value; tests pin it, production uses the time of the attempt. */
  date?: Date;
}

/** The last Feedback-ID field: the same for all mail of this software, as Gmail asks of a SenderId. */
export const FEEDBACK_ID_SENDER = "scaisend";
/** The third field: the kind of mail. Everything sent through the Mail Send API is transactional here. */
export const FEEDBACK_ID_MAIL_TYPE = "transactional";

/** A field as Feedback-ID carries it: no colon (the separator), no space, nothing outside printable ASCII. */
const feedbackField = (value: string) => value.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64) || "-";

/**
 * `Feedback-ID: <tenant id>:<From domain>:transactional:scaisend`, in Gmail's `a:b:c:SenderId` form
 * (Gmail's Feedback Loop reports complaint rates per value of each field; docs/architecture.md,
 * "Composing and signing"). The fields are what every job knows: the tenant (the customer an
 * operator acts on), its From domain (one tenant may send for several brands), the mail type, and
 * the sender id. None names a recipient or a single message, which would defeat the aggregation.
 * Built from job data the edge produced, never from API input, and reduced to [A-Za-z0-9._-] per
 * field, so it cannot carry a line break or a colon of its own.
 */
export function feedbackId(job: Pick<DeliveryJob, "tenantId" | "message">): string {
  const from = job.message.from.email;
  return [
    feedbackField(job.tenantId),
    feedbackField(from.slice(from.lastIndexOf("@") + 1).toLowerCase()),
    FEEDBACK_ID_MAIL_TYPE,
    FEEDBACK_ID_SENDER,
  ].join(":");
}

/** Builds the message once per job; every recipient domain gets the same bytes (and signature). */
export async function buildMime(job: ComposableJob, options: BuildMimeOptions = {}): Promise<Buffer> {
  const root = composeMimeTree(job, options);
  // The same bytes as the library's stream build, in one synchronous pass (render-mime.ts).
  const raw = renderMimeTree(root) ?? (await root.build());
  assertLineLengths(raw);
  return raw;
}

/**
 * The job's checked fields as MailComposer's compiled MIME tree (boundaries drawn, headers set);
 * buildMime serializes it. Exported for the test that compares the two serializers on one tree.
 */
export function composeMimeTree(job: ComposableJob, options: BuildMimeOptions = {}): MimeNode {
  const { message } = job;
  if (message.textRef || message.htmlRef)
    throw new MimeBuildError("the job's bodies by reference were not fetched");
  if (message.template) throw new MimeBuildError("the job's template was not rendered");
  const attachments = composerAttachments(job);
  const alternatives = message.alternatives ?? [];
  for (const a of alternatives) {
    assertNoLineBreak(a.type, "content type");
    if (a.type.includes(";")) throw new MimeBuildError(`content type "${a.type}" has parameters`);
  }
  const amp = alternatives.find((a) => a.type.toLowerCase() === AMP_TYPE);
  const others = alternatives.filter((a) => a !== amp);
  assertNoLineBreak(message.subject, "subject");
  assertNoLineBreak(message.messageIdHeader, "Message-ID");
  if (!/^[^<>\s@]+@[^<>\s@]+$/.test(message.messageIdHeader)) {
    throw new MimeBuildError(`Message-ID "${message.messageIdHeader}" is not id-left@id-right`);
  }
  const composer = new MailComposer({
    from: toComposerAddress(message.from, "from"),
    to: message.to.map((a) => toComposerAddress(a, "to")),
    ...(message.cc?.length ? { cc: message.cc.map((a) => toComposerAddress(a, "cc")) } : {}),
    ...(message.replyTo?.length
      ? { replyTo: message.replyTo.map((a) => toComposerAddress(a, "reply-to")) }
      : {}),
    subject: foldable("Subject", message.subject),
    messageId: `<${message.messageIdHeader}>`,
    date: options.date ?? new Date(),
    // With several parts MailComposer builds multipart/alternative in the order text, AMP, HTML, then
    // the other alternatives (RFC 2046 §5.1.4; shared/sendgrid/content-types.ts).
    ...(message.text !== undefined ? { text: message.text } : {}),
    ...(amp !== undefined ? { amp: amp.value } : {}),
    ...(message.html !== undefined ? { html: message.html } : {}),
    ...(others.length > 0
      ? {
          alternatives: others.map((a) => ({
            contentType: alternativeContentType(a.type, a.value),
            content: a.value,
          })),
        }
      : {}),
    headers: { ...customHeaders(message.headers), "Feedback-ID": feedbackId(job) },
    ...(attachments.length > 0 ? { attachments } : {}),
    // API input must never make the origin read local files or fetch URLs (nodemailer's own advice).
    disableFileAccess: true,
    disableUrlAccess: true,
    xMailer: false,
  });
  return composer.compile();
}
