/**
 * buildMime for many personalizations of one message: a send with N personalizations of the same
 * content differs from message to message only in its To, Message-ID and Date header fields (when
 * nothing is substituted or tracked per recipient). The first message of such a content is built by
 * buildMime (MailComposer); later ones reuse its bytes with those three top-level fields written
 * anew, instead of compiling and serializing the MIME tree again per message (docs/architecture.md,
 * "Composing and signing").
 *
 * Proven equal (test/origin/mime-template.perf-equal.test.ts): over a corpus of jobs and
 * personalizations, a reused message is byte for byte what buildMime writes for that job (single
 * part), or the same apart from the multipart boundary, which is the first message's: a boundary
 * only has to be absent from the content (RFC 2046 §5.1.1), and the content is the same. The
 * signed results verify with mailauth and python3-dkim there.
 *
 * A fourth field differs per message in most live mail: the `List-Unsubscribe` that tracking.ts adds
 * with each recipient's own unsubscribe URL (RFC 8058). When its value is plain printable ASCII without
 * white space, MailComposer writes it as nodemailer's own `foldLines("List-Unsubscribe: " + value, 76)`
 * (one line, or the value alone on a continuation line), so it is written per message the same way
 * and left out of the content's key; any other value stays in the key, and such messages are built
 * one by one as before.
 *
 * Only where the three fields can be written exactly as MailComposer writes them: every To address
 * plain ASCII (`local@domain`, no quoting needed, the domain in lower case) with no display name or one of letters, digits
 * and single spaces, and each field shorter than MailComposer's folding width (76), so it stays one
 * line. Everything else, and any job with attachments, goes to buildMime as before. A cache of
 * TEMPLATE_MAX_ENTRIES contents per compose thread, the oldest dropped first.
 */
import { foldLines } from "nodemailer/lib/mime-funcs/index.js";
import type { LinkAddress } from "../../../shared/link/protocol.ts";
import { buildMime, type BuildMimeOptions, type ComposableJob } from "./build-mime.ts";

interface Template {
  /** The message up to the first field to replace, the pieces between, and the rest. */
  pieces: Buffer[];
  /** For each gap between pieces, which field goes there. */
  fields: Array<"to" | "id" | "date" | "unsubscribe">;
}

const templates = new Map<string, Template>();
const TEMPLATE_MAX_ENTRIES = 32;
/** Messages larger than this are not kept (the cache stays small). */
const TEMPLATE_MAX_BYTES = 512 * 1024;
/** MailComposer folds a header line at 76 characters (mime-funcs foldLines); shorter lines stay as they are. */
const FOLD_WIDTH = 76;
let hits = 0;

/** MailComposer lower-cases (and punycodes) the domain: only an already lower-case ASCII one is written as is. */
const PLAIN_EMAIL = /^[A-Za-z0-9._+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+$/;
const PLAIN_NAME = /^[A-Za-z0-9]+(?: [A-Za-z0-9]+)*$/;

function toField(to: readonly LinkAddress[]): string | null {
  if (to.length === 0) return null;
  const parts: string[] = [];
  for (const a of to) {
    if (!PLAIN_EMAIL.test(a.email)) return null;
    if (a.name === undefined || a.name === "") parts.push(a.email);
    else if (PLAIN_NAME.test(a.name)) parts.push(`${a.name} <${a.email}>`);
    else return null;
  }
  const line = `To: ${parts.join(", ")}`;
  return line.length < FOLD_WIDTH ? line : null;
}

/** The Date field as MimeNode.buildHeaders writes it. */
const dateField = (date: Date) => `Date: ${date.toUTCString().replace(/GMT/, "+0000")}`;

const UNSUBSCRIBE = "List-Unsubscribe";
/** Printable ASCII, no white space: MimeNode keeps such a value as it is and can only fold before it. */
const PLAIN_HEADER_VALUE = /^[\x21-\x7e]+$/;
/** Stands in the key for a per-message List-Unsubscribe; a header value can never be this (it has a NUL). */
const UNSUBSCRIBE_IN_KEY = "\u0000per message";

/** The job's List-Unsubscribe when it can be written per message (see the header), else null. */
function unsubscribeOf(job: ComposableJob): string | null {
  const value = job.message.headers?.[UNSUBSCRIBE];
  return typeof value === "string" && PLAIN_HEADER_VALUE.test(value) ? value : null;
}

/** The field as MimeNode.buildHeaders writes it: `foldLines(key + ": " + value, 76)`. */
const unsubscribeField = (value: string) => foldLines(`${UNSUBSCRIBE}: ${value}`, FOLD_WIDTH);

/** Everything in the job that shapes the message, except the fields written per message (`unsubscribe`: unsubscribeOf(job)). */
function templateKey(job: ComposableJob, unsubscribe: string | null): string {
  const { to: _to, messageIdHeader: _id, ...rest } = job.message;
  const keyed =
    unsubscribe === null
      ? rest
      : { ...rest, headers: { ...rest.headers, [UNSUBSCRIBE]: UNSUBSCRIBE_IN_KEY } };
  return `${job.tenantId}\n${JSON.stringify(keyed)}`;
}

/**
 * Where `name:` and its value (with its continuation lines) sit in the top-level header block, or
 * null. The value may start on the same line or, folded, on the next one.
 */
function fieldRange(raw: Buffer, headerEnd: number, name: string): [number, number] | null {
  const prefix = `\r\n${name}:`;
  let start = raw.subarray(0, name.length + 1).toString("latin1") === `${name}:` ? 0 : -1;
  if (start === -1) {
    const at = raw.indexOf(prefix, 0, "latin1");
    if (at === -1 || at >= headerEnd) return null;
    start = at + 2;
  }
  // The field ends at the CRLF not followed by a continuation line (SP or HT).
  let end = raw.indexOf("\r\n", start, "latin1");
  while (end !== -1 && end < headerEnd && (raw[end + 2] === 0x20 || raw[end + 2] === 0x09))
    end = raw.indexOf("\r\n", end + 2, "latin1");
  if (end === -1 || end > headerEnd) return null;
  return [start, end];
}

/** `unsubscribe`: the message's List-Unsubscribe field as written (unsubscribeField), when it has one per message. */
function makeTemplate(raw: Buffer, unsubscribe: string | null): Template | null {
  if (raw.length > TEMPLATE_MAX_BYTES) return null;
  const headerEnd = raw.indexOf("\r\n\r\n", 0, "latin1");
  if (headerEnd === -1) return null;
  const found: Array<{ field: Template["fields"][number]; range: [number, number] }> = [];
  for (const [field, name] of [
    ["to", "To"],
    ["id", "Message-ID"],
    ["date", "Date"],
  ] as const) {
    const range = fieldRange(raw, headerEnd, name);
    if (!range) return null;
    found.push({ field, range });
  }
  if (unsubscribe !== null) {
    // Found like the others, and only when MailComposer wrote exactly this field, and only once.
    const range = fieldRange(raw, headerEnd, UNSUBSCRIBE);
    if (!range || raw.toString("latin1", range[0], range[1]) !== unsubscribe) return null;
    const again = raw.indexOf(`\r\n${UNSUBSCRIBE}:`, range[1], "latin1");
    if (again !== -1 && again < headerEnd) return null;
    found.push({ field: "unsubscribe", range });
  }
  found.sort((a, b) => a.range[0] - b.range[0]);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const { range } of found) {
    pieces.push(Buffer.from(raw.subarray(from, range[0])));
    from = range[1];
  }
  pieces.push(Buffer.from(raw.subarray(from)));
  return { pieces, fields: found.map((f) => f.field) };
}

/** buildMime, reusing an earlier message of the same content where that gives the same bytes (see the header). */
export async function buildMimeReusing(job: ComposableJob, options: BuildMimeOptions = {}): Promise<Buffer> {
  const to = job.message.attachments?.length ? null : toField(job.message.to);
  const idLine = `Message-ID: <${job.message.messageIdHeader}>`;
  if (
    to === null ||
    idLine.length >= FOLD_WIDTH ||
    !/^[^<>\s@]+@[^<>\s@]+$/.test(job.message.messageIdHeader)
  )
    return buildMime(job, options);
  const unsubscribe = unsubscribeOf(job);
  const key = templateKey(job, unsubscribe);
  const template = templates.get(key);
  const unsubscribeLine = unsubscribe === null ? null : unsubscribeField(unsubscribe);
  if (!template) {
    const raw = await buildMime(job, options);
    const made = makeTemplate(raw, unsubscribeLine);
    if (made) {
      templates.set(key, made);
      if (templates.size > TEMPLATE_MAX_ENTRIES) templates.delete(templates.keys().next().value as string);
    }
    return raw;
  }
  hits++;
  const values = {
    to,
    id: idLine,
    date: dateField(options.date ?? new Date()),
    // The key holds the placeholder only for jobs that have one (templateKey), so this is set here.
    unsubscribe: unsubscribeLine ?? "",
  };
  const parts: Buffer[] = [template.pieces[0]!];
  template.fields.forEach((field, i) => {
    parts.push(Buffer.from(values[field], "latin1"), template.pieces[i + 1]!);
  });
  return Buffer.concat(parts);
}

/** Tests only: contents kept, and messages built from one. */
export function templateStats(): { entries: number; hits: number } {
  return { entries: templates.size, hits };
}
