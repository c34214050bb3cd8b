/**
 * The template renderer shared by the edge (syntax check at accept, the render endpoint) and the
 * origin (rendering each message as it builds the MIME): docs/templates.md.
 *
 * - compileTemplate(source) → {ok, template} | {ok:false, error:{message, line, column}}: every
 *   check that needs no data (syntax, helpers and their arguments, size and nesting limits).
 * - render(template, data, {escape}) → {ok, output, missing} | {ok:false, error, missing}: never
 *   throws; `missing` lists the variable paths the template read that the data does not have.
 * - compileVersion / renderVersion: a template version's subject, html, text and preheader at once,
 *   each with the escaping SendGrid compatibility calls for (ESCAPE_BY_PART).
 * - applySubstitutions(text, substitutions, sections): legacy substitution and section tags.
 *
 * SendGrid dynamic templates are Handlebars: https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars
 * Workers forbid eval/new Function, so this is an interpreter over @handlebars/parser's AST, never
 * handlebars.js's compiler.
 */
import { substituter } from "../sendgrid/personalize.ts";
import { render, type Escape, type RenderResult } from "./interpret.ts";
import { compileTemplate, type RenderError, type RenderLimits, type Template } from "./template.ts";

export { render, MAX_MISSING, type Escape, type RenderOptions, type RenderResult } from "./interpret.ts";
export {
  compileTemplate,
  DEFAULT_LIMITS,
  HELPERS,
  type CompileResult,
  type RenderError,
  type RenderLimits,
  type Template,
} from "./template.ts";
export { escapeHtml } from "./values.ts";

/** The renderable parts of a template version. */
export type VersionPart = "subject" | "html" | "text" | "preheader";
export const VERSION_PARTS: readonly VersionPart[] = ["subject", "html", "text", "preheader"];

/**
 * How `{{x}}` is escaped in each part (docs/templates.md#escaping). The HTML body and the
 * preheader (hidden text inside the HTML) are HTML-escaped, as in SendGrid. The plain-text body
 * and the subject are not: an entity there is shown to the reader as "&amp;". SendGrid does escape
 * the subject (its docs tell you to use {{{ }}} there), but a template that shows a correct subject
 * at SendGrid renders the same here, since {{{x}}} is raw in both modes.
 */
export const ESCAPE_BY_PART: Readonly<Record<VersionPart, Escape>> = Object.freeze({
  subject: "none",
  html: "html",
  text: "none",
  preheader: "html",
});

export type VersionSource = Partial<Record<VersionPart, string | null>>;

export interface CompiledVersion {
  readonly parts: Readonly<Partial<Record<VersionPart, Template>>>;
}

export type VersionError = RenderError & { part: VersionPart };

export type CompileVersionResult =
  { ok: true; version: CompiledVersion } | { ok: false; error: VersionError };

/** Compile each present part (null, undefined and "" are absent); the first bad part is reported. */
export function compileVersion(
  source: VersionSource,
  limits: Partial<RenderLimits> = {},
): CompileVersionResult {
  const parts: Partial<Record<VersionPart, Template>> = {};
  for (const part of VERSION_PARTS) {
    const text = source[part];
    if (text === undefined || text === null || text === "") continue;
    const r = compileTemplate(text, limits);
    if (!r.ok) return { ok: false, error: { ...r.error, part } };
    parts[part] = r.template;
  }
  return { ok: true, version: { parts: Object.freeze(parts) } };
}

export type RenderVersionResult =
  | { ok: true; rendered: Partial<Record<VersionPart, string>>; missing: string[] }
  | { ok: false; error: VersionError; missing: string[] };

/**
 * Render every compiled part against one personalization's `dynamic_template_data`. The subject is
 * header-bound, so each CR/LF run in it becomes one space (no header injection through data).
 * `missing` is the union over the parts, in first-seen order.
 */
export function renderVersion(version: CompiledVersion, data: unknown): RenderVersionResult {
  const rendered: Partial<Record<VersionPart, string>> = {};
  const missing = new Set<string>();
  for (const part of VERSION_PARTS) {
    const template = version.parts[part];
    if (!template) continue;
    const r: RenderResult = render(template, data, { escape: ESCAPE_BY_PART[part] });
    for (const m of r.missing) missing.add(m);
    if (!r.ok) return { ok: false, error: { ...r.error, part }, missing: [...missing] };
    rendered[part] = part === "subject" ? r.output.replace(/[\r\n]+/g, " ") : r.output;
  }
  return { ok: true, rendered, missing: [...missing] };
}

export type SubstitutionResult = { ok: true; output: string } | { ok: false; error: { message: string } };

/**
 * SendGrid's legacy substitution and section tags
 * (https://www.twilio.com/docs/sendgrid/for-developers/sending-email/substitution-tags,
 * https://www.twilio.com/docs/sendgrid/for-developers/sending-email/section-tags): every key of
 * `substitutions` is replaced verbatim, exactly as sent ("-name-", ":name", "%name%", "{{name}}"),
 * in one left-to-right pass, longest key first; a substitution value that is the key of a section
 * becomes that section's text, whose own tags are filled in first (one level). A replaced value is
 * never scanned again, so values cannot inject tags. This is the same code the send path uses for
 * non-template mail (shared/sendgrid/personalize.ts), not a second copy.
 *
 * `maxLength` (UTF-16 code units) bounds the result and the expanded sections and values, so a
 * short text of many tags with long values fails instead of growing without end.
 */
export function applySubstitutions(
  text: string,
  substitutions: Record<string, string> | null | undefined,
  sections: Record<string, string> | null | undefined,
  maxLength: number = DEFAULT_SUBSTITUTION_MAX_LENGTH,
): SubstitutionResult {
  try {
    const replace = substituter(substitutions ?? {}, sections ?? {}, maxLength);
    return { ok: true, output: replace ? replace(text, maxLength) : text };
  } catch {
    return {
      ok: false,
      error: { message: `substitutions make the text longer than ${maxLength} characters` },
    };
  }
}

/** 4 Mi UTF-16 code units, the same order as a rendered part's byte limit. */
export const DEFAULT_SUBSTITUTION_MAX_LENGTH = 4 * 1_048_576;
