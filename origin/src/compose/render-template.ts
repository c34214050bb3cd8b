/**
 * Renders a job's stored template into its message, in the compose worker, just before the MIME is
 * built (docs/templates.md#where-rendering-happens). The job names the template version's snapshot
 * (shared/templates/snapshot.ts), which the blob step fetched and verified (origin/src/blobs/resolve-job.ts);
 * this module turns it and the personalization's data into the message's subject, HTML and text.
 *
 *  - dynamic: the version's subject, HTML, text and preheader rendered with shared/render against
 *    `dynamic_template_data`. An empty rendered subject falls back to the message's own subject
 *    (the request's or the personalization's). The preheader is written as hidden text at the top
 *    of the HTML body, where mail clients take their preview from.
 *  - legacy: `<%subject%>` and `<%body%>` in the version's parts are replaced by the message's own
 *    subject and body (already substituted at the edge), and the personalization's substitutions
 *    and sections fill the version's own text around them, in one pass, so neither the body nor a
 *    substituted value is scanned again. A part the version leaves empty is the message's own.
 *
 * Errors are values: a render that fails on this personalization's data (formatDate given a word,
 * greaterThan given a list, a limit reached) returns `{ ok: false, error }`, and the compose step
 * turns that into the message's `failed` outcome with the error as its error_message.
 *
 * Compiled versions are cached per thread by snapshot hash (content-addressed, so never stale): a
 * request's 1,000 personalizations parse the template once per worker.
 */
import type { DeliveryJob } from "../../../shared/link/protocol.ts";
import {
  applySubstitutions,
  compileVersion,
  renderVersion,
  type CompiledVersion,
} from "../../../shared/render/index.ts";
import { parseSnapshot, type TemplateSnapshot } from "../../../shared/templates/snapshot.ts";

type Message = DeliveryJob["message"];
export type RenderedMessage = { ok: true; message: Message } | { ok: false; error: string };

/** Compiled versions kept per thread. */
export const MAX_COMPILED_TEMPLATES = 64;
const compiled = new Map<string, { snapshot: TemplateSnapshot; version: CompiledVersion | null }>();

const PART_NAMES = { subject: "subject", html: "HTML", text: "plain text", preheader: "preheader" } as const;

function load(
  sha256: string,
  bytes: Uint8Array,
): { ok: true; snapshot: TemplateSnapshot; version: CompiledVersion | null } | { ok: false; error: string } {
  const hit = compiled.get(sha256);
  if (hit) {
    compiled.delete(sha256);
    compiled.set(sha256, hit);
    return { ok: true, ...hit };
  }
  const parsed = parseSnapshot(bytes);
  if (!parsed.ok) return parsed;
  const { snapshot } = parsed;
  let version: CompiledVersion | null = null;
  if (snapshot.generation === "dynamic") {
    const c = compileVersion({
      subject: snapshot.subject,
      html: snapshot.html,
      text: snapshot.text,
      preheader: snapshot.preheader,
    });
    // The edge compiled the version when it was saved; this only fails if the renderer changed since.
    if (!c.ok) {
      const e = c.error;
      return {
        ok: false,
        error: `the template's ${PART_NAMES[e.part]} does not compile (line ${e.line}, column ${e.column}): ${e.message}`,
      };
    }
    version = c.version;
  }
  compiled.set(sha256, { snapshot, version });
  if (compiled.size > MAX_COMPILED_TEMPLATES) compiled.delete(compiled.keys().next().value!);
  return { ok: true, snapshot, version };
}

/** Hidden preview text, first in the body (the common form; clients show it in the inbox list only). */
function withPreheader(html: string, preheader: string): string {
  const block = `<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all">${preheader}</div>`;
  const body = /<body\b[^>]*>/i.exec(html);
  if (!body) return block + html;
  const at = body.index + body[0].length;
  return html.slice(0, at) + block + html.slice(at);
}

const oneLine = (s: string) => s.replace(/[\r\n]+/g, " ");

/** A legacy part: tags replaced by the message's own values, substitutions on the template's text only. */
function fillLegacy(
  part: string,
  values: { body: string; subject: string },
  t: NonNullable<Message["template"]>,
): { ok: true; output: string } | { ok: false; error: string } {
  const out: string[] = [];
  for (const piece of part.split(/(<%body%>|<%subject%>)/)) {
    if (piece === "<%body%>") out.push(values.body);
    else if (piece === "<%subject%>") out.push(values.subject);
    else {
      const r = applySubstitutions(piece, t.substitutions, t.sections);
      if (!r.ok) return { ok: false, error: r.error.message };
      out.push(r.output);
    }
  }
  return { ok: true, output: out.join("") };
}

/**
 * The job's message with its template rendered in (and the template reference gone), or why it
 * cannot be. `snapshot` is the fetched, verified snapshot object.
 */
export function renderJobTemplate(message: Message, snapshotBytes: Uint8Array): RenderedMessage {
  const { template: t, ...rest } = message;
  if (!t) return { ok: true, message };
  const fail = (why: string): RenderedMessage => ({
    ok: false,
    error: `Could not render template ${t.templateId} (version ${t.versionId}): ${why}`,
  });
  const loaded = load(t.snapshot.sha256, snapshotBytes);
  if (!loaded.ok) return fail(loaded.error);
  const { snapshot, version } = loaded;
  if (snapshot.generation !== t.generation) return fail("the stored template is of another generation");

  const out: Message = { ...rest };
  delete out.text;
  delete out.html;
  if (version) {
    const r = renderVersion(version, t.data ?? {});
    if (!r.ok) {
      const e = r.error;
      return fail(`${e.message} (in the ${PART_NAMES[e.part]}, line ${e.line}, column ${e.column})`);
    }
    const { subject, html, text, preheader } = r.rendered;
    out.subject = subject ? subject : message.subject;
    if (html) out.html = preheader ? withPreheader(html, preheader) : html;
    if (text) out.text = text;
    return { ok: true, message: out };
  }

  const own = { subject: message.subject, text: message.text ?? "", html: message.html ?? "" };
  const subject = snapshot.subject
    ? fillLegacy(snapshot.subject, { body: "", subject: own.subject }, t)
    : null;
  if (subject && !subject.ok) return fail(subject.error);
  const html = snapshot.html ? fillLegacy(snapshot.html, { body: own.html, subject: own.subject }, t) : null;
  if (html && !html.ok) return fail(html.error);
  const text = snapshot.text ? fillLegacy(snapshot.text, { body: own.text, subject: own.subject }, t) : null;
  if (text && !text.ok) return fail(text.error);
  out.subject = subject ? oneLine(subject.output) : message.subject;
  const htmlOut = html ? html.output : message.html;
  const textOut = text ? text.output : message.text;
  if (htmlOut) out.html = htmlOut;
  if (textOut) out.text = textOut;
  return { ok: true, message: out };
}
