/**
 * A SenderKit template version's content (docs/api/senderkit.md#templates): its fields per channel,
 * how they are checked when the version is saved, and how they render with a send's `vars`.
 *
 * One renderer: every field is compiled and rendered by shared/render (the renderer of /v3
 * templates and the origin), in its Mustache lookup mode, which is SenderKit's syntax:
 * `{{name}}`, `{{a.b}}`, sections `{{#x}}…{{/x}}` (a list repeats, a truthy value shows the block),
 * inverted sections `{{^x}}…{{/x}}`, raw `{{{x}}}` / `{{&x}}`, and a name not found in a section's
 * item is looked up in the enclosing contexts out to the root.
 *
 * Escaping as SenderKit documents it: values are HTML-escaped in the email HTML body only; the
 * subject, preheader, plain text, SMS and push fields are written as given. The subject is
 * header-bound, so each CR/LF run in it becomes one space. An email version without `text` gets
 * its plain text generated from the rendered HTML (the same converter as /v3 templates).
 */
import { z } from "zod";
import { compileTemplate, render, type Escape, type Template } from "../../../../shared/render/index.ts";
import { utf8ByteLength } from "../../../../shared/utf8.ts";
import { htmlToPlainText } from "../templates-plain-text.ts";

/** SenderKit's channels, spelled as its OpenAPI spells them. */
export const SK_CHANNELS = ["email", "sms", "push", "web-push"] as const;
export type SkChannel = (typeof SK_CHANNELS)[number];

/** The stored content JSON of one version may not exceed this (a D1 row is at most 2 MB). */
export const MAX_CONTENT_BYTES = 1_900_000;
const MAX_DATA_KEYS = 64;

const field = z.string().min(1, "must not be empty");
const optionalField = z.string().optional();
const dataMap = z
  .record(z.string().min(1).max(256), z.string())
  .refine((d) => Object.keys(d).length <= MAX_DATA_KEYS, `at most ${MAX_DATA_KEYS} keys`)
  .optional();
const badge = z.number().int().min(0).max(1_000_000).optional();

export const EmailContentSchema = z.strictObject({
  subject: field,
  preheader: optionalField,
  html: field,
  text: optionalField,
});
export const SmsContentSchema = z.strictObject({ body: field });
export const PushContentSchema = z.strictObject({
  title: field,
  body: field,
  data: dataMap,
  badge,
  sound: optionalField,
});
export const WebPushContentSchema = z.strictObject({
  title: field,
  body: field,
  icon: optionalField,
  clickUrl: optionalField,
  data: dataMap,
  badge,
});

export const CONTENT_SCHEMAS = {
  email: EmailContentSchema,
  sms: SmsContentSchema,
  push: PushContentSchema,
  "web-push": WebPushContentSchema,
} as const;

export type EmailContent = z.infer<typeof EmailContentSchema>;
export type SmsContent = z.infer<typeof SmsContentSchema>;
export type PushContent = z.infer<typeof PushContentSchema>;
export type WebPushContent = z.infer<typeof WebPushContentSchema>;
export type SkContent = EmailContent | SmsContent | PushContent | WebPushContent;

/** A declared variable (previews and documentation only; `required` is not enforced at send). */
export const VariableSchema = z.strictObject({
  name: z.string().min(1).max(200),
  type: z.enum(["string", "array", "object", "boolean"]),
  description: z.string().max(2000).nullable().optional(),
  example: z.unknown().optional(),
  required: z.boolean().optional(),
});
export const VariablesSchema = z.array(VariableSchema).max(200).default([]);
export type SkVariable = z.infer<typeof VariableSchema>;

/** Rendered output per channel: the fields of SenderKit's RenderResult.output, absent ones null. */
export interface EmailOutput {
  subject: string;
  preheader: string | null;
  html: string;
  text: string;
}
export interface SmsOutput {
  body: string;
}
export interface PushOutput {
  title: string;
  body: string;
  data: Record<string, string> | null;
  badge: number | null;
  sound: string | null;
}
export interface WebPushOutput {
  title: string;
  body: string;
  icon: string | null;
  clickUrl: string | null;
  data: Record<string, string> | null;
  badge: number | null;
}
export type SkRenderedOutput = EmailOutput | SmsOutput | PushOutput | WebPushOutput;

/** A problem with saved content, as a zod-like issue (`path` into the content object). */
export interface ContentIssue {
  path: (string | number)[];
  message: string;
}

interface CompiledField {
  path: (string | number)[];
  template: Template;
  escape: Escape;
}

export interface CompiledContent {
  readonly channel: SkChannel;
  readonly content: SkContent;
  readonly fields: readonly CompiledField[];
}

/** The templated string fields of a content object, in output order, with their escaping. */
function templatedFields(
  channel: SkChannel,
  content: SkContent,
): { path: (string | number)[]; source: string; escape: Escape }[] {
  const out: { path: (string | number)[]; source: string; escape: Escape }[] = [];
  const add = (path: (string | number)[], source: string | undefined, escape: Escape = "none") => {
    if (source !== undefined) out.push({ path, source, escape });
  };
  const c = content as Record<string, unknown>;
  const str = (k: string) => (typeof c[k] === "string" ? (c[k] as string) : undefined);
  switch (channel) {
    case "email":
      add(["subject"], str("subject"));
      add(["preheader"], str("preheader"));
      add(["html"], str("html"), "html");
      add(["text"], str("text"));
      break;
    case "sms":
      add(["body"], str("body"));
      break;
    case "push":
    case "web-push":
      add(["title"], str("title"));
      add(["body"], str("body"));
      if (channel === "web-push") {
        add(["icon"], str("icon"));
        add(["clickUrl"], str("clickUrl"));
      } else add(["sound"], str("sound"));
      for (const [k, v] of Object.entries((c.data as Record<string, string> | undefined) ?? {})) {
        add(["data", k], v);
      }
      break;
  }
  return out;
}

export type ParseContentResult =
  { ok: true; compiled: CompiledContent } | { ok: false; issues: ContentIssue[] };

/**
 * Check content for a channel (the version write path): the channel's fields and nothing else,
 * then every templated field compiled, so a template that cannot render is refused when it is
 * saved (issue path = the field, message with the line and column in it).
 */
export function parseContent(channel: SkChannel, raw: unknown): ParseContentResult {
  const parsed = CONTENT_SCHEMAS[channel].safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      issues: parsed.error.issues.map((i) => ({
        path: i.path.map((p) => (typeof p === "number" ? p : String(p))),
        message: i.message,
      })),
    };
  }
  const content = parsed.data as SkContent;
  if (utf8ByteLength(JSON.stringify(content)) > MAX_CONTENT_BYTES) {
    return {
      ok: false,
      issues: [{ path: [], message: `the content is larger than ${MAX_CONTENT_BYTES} bytes` }],
    };
  }
  const r = compileFields(channel, content);
  return r.ok ? { ok: true, compiled: r.compiled } : r;
}

function compileFields(channel: SkChannel, content: SkContent): ParseContentResult {
  const fields: CompiledField[] = [];
  const issues: ContentIssue[] = [];
  for (const f of templatedFields(channel, content)) {
    const r = compileTemplate(f.source);
    if (!r.ok) {
      const at = r.error.line > 0 ? ` (line ${r.error.line}, column ${r.error.column})` : "";
      issues.push({ path: f.path, message: `${r.error.message}${at}` });
    } else fields.push({ path: f.path, template: r.template, escape: f.escape });
  }
  if (issues.length > 0) return { ok: false, issues };
  return { ok: true, compiled: Object.freeze({ channel, content, fields: Object.freeze(fields) }) };
}

/** Compiled content of stored versions, by version id: versions are immutable, so never stale. */
const compiledByVersion = new Map<string, CompiledContent>();
const MAX_COMPILED = 128;

/** The compiled form of a stored version's content (it compiled when it was saved). */
export function compiledVersion(versionId: string, channel: SkChannel, content: SkContent): CompiledContent {
  const hit = compiledByVersion.get(versionId);
  if (hit && hit.channel === channel) {
    compiledByVersion.delete(versionId); // LRU: move to the newest end
    compiledByVersion.set(versionId, hit);
    return hit;
  }
  const r = compileFields(channel, content);
  if (!r.ok) {
    // Only content that bypassed parseContent could land here.
    throw new Error(`stored template version ${versionId} does not compile: ${r.issues[0]?.message}`);
  }
  compiledByVersion.set(versionId, r.compiled);
  if (compiledByVersion.size > MAX_COMPILED) compiledByVersion.delete(compiledByVersion.keys().next().value!);
  return r.compiled;
}

export type RenderContentResult =
  | { ok: true; output: SkRenderedOutput; missing: string[] }
  | { ok: false; message: string; missing: string[] };

/** Render every field with `vars`; `missing` is the union over the fields, in first-seen order. */
export function renderContent(compiled: CompiledContent, vars: Record<string, unknown>): RenderContentResult {
  const missing = new Set<string>();
  const values = new Map<string, string>();
  const data: Record<string, string> = {};
  for (const f of compiled.fields) {
    const r = render(f.template, vars, { escape: f.escape, lookup: "mustache" });
    for (const m of r.missing) missing.add(m);
    if (!r.ok) {
      const at = r.error.line > 0 ? ` (line ${r.error.line}, column ${r.error.column})` : "";
      return { ok: false, message: `${f.path.join(".")}: ${r.error.message}${at}`, missing: [...missing] };
    }
    if (f.path[0] === "data") data[String(f.path[1])] = r.output;
    else values.set(String(f.path[0]), r.output);
  }
  const c = compiled.content as Record<string, unknown>;
  const get = (k: string) => values.get(k) ?? null;
  const hasData = c.data !== undefined;
  const num = (k: string) => (typeof c[k] === "number" ? (c[k] as number) : null);
  let output: SkRenderedOutput;
  switch (compiled.channel) {
    case "email": {
      const html = get("html") ?? "";
      output = {
        subject: (get("subject") ?? "").replace(/[\r\n]+/g, " "),
        preheader: get("preheader"),
        html,
        text: get("text") ?? htmlToPlainText(html),
      };
      break;
    }
    case "sms":
      output = { body: get("body") ?? "" };
      break;
    case "push":
      output = {
        title: get("title") ?? "",
        body: get("body") ?? "",
        data: hasData ? data : null,
        badge: num("badge"),
        sound: get("sound"),
      };
      break;
    case "web-push":
      output = {
        title: get("title") ?? "",
        body: get("body") ?? "",
        icon: get("icon"),
        clickUrl: get("clickUrl"),
        data: hasData ? data : null,
        badge: num("badge"),
      };
      break;
  }
  return { ok: true, output, missing: [...missing] };
}
