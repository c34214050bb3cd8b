/**
 * Request bodies of the templates API, checked field by field the way SendGrid documents them
 * (docs/api/sendgrid.md#templates). Every problem of a body is reported at once, each as a
 * SendGrid-style field error; a key this API does not know is refused, never ignored.
 */
import type { FieldError } from "../../../shared/errors.ts";
import { TEMPLATE_GENERATIONS, type TemplateGeneration } from "../db/schema.ts";

/** SendGrid's limits (its Templates API reference), plus ScaiSend's preheader and test_data bounds. */
export const LIMITS = {
  templateName: 100,
  versionName: 100,
  subject: 255,
  /** Bytes (UTF-8), as SendGrid counts html_content and plain_content. */
  content: 1_048_576,
  preheader: 500,
  testData: 1_048_576,
} as const;

export interface TemplateInput {
  name?: string;
  generation?: TemplateGeneration;
}

export interface VersionInput {
  name?: string;
  subject?: string;
  html_content?: string;
  plain_content?: string;
  generate_plain_content?: boolean;
  preheader?: string | null;
  editor?: "code" | "design";
  test_data?: string | null;
  active?: 0 | 1;
}

const bytes = (s: string) => new TextEncoder().encode(s).byteLength;
const err = (field: string | null, message: string): FieldError => ({ field, message, help: null });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function unknownKeys(body: Record<string, unknown>, known: readonly string[], errors: FieldError[]): void {
  for (const key of Object.keys(body)) {
    if (!known.includes(key)) errors.push(err(key, `${key} is not a field of this request.`));
  }
}

function text(
  body: Record<string, unknown>,
  key: string,
  errors: FieldError[],
  opts: {
    max: number;
    unit: "characters" | "bytes";
    required: boolean;
    nonEmpty?: boolean;
    nullable?: boolean;
  },
): string | null | undefined {
  const v = body[key];
  if (v === undefined) {
    if (opts.required) errors.push(err(key, `${key} is required.`));
    return undefined;
  }
  if (v === null && opts.nullable) return null;
  if (typeof v !== "string") {
    errors.push(err(key, `${key} must be a string.`));
    return undefined;
  }
  if (opts.nonEmpty && v.trim() === "") {
    errors.push(err(key, `${key} may not be empty.`));
    return undefined;
  }
  const size = opts.unit === "bytes" ? bytes(v) : [...v].length;
  if (size > opts.max) {
    errors.push(err(key, `${key} must be at most ${opts.max.toLocaleString("en-US")} ${opts.unit}.`));
    return undefined;
  }
  return v;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

/** POST /v3/templates: `name` required; `generation` legacy (SendGrid's default) or dynamic. */
export function parseTemplateCreate(body: unknown): Parsed<Required<TemplateInput>> {
  if (!isObject(body)) return { ok: false, errors: [err(null, "The request body must be a JSON object.")] };
  const errors: FieldError[] = [];
  unknownKeys(body, ["name", "generation"], errors);
  const name = text(body, "name", errors, {
    max: LIMITS.templateName,
    unit: "characters",
    required: true,
    nonEmpty: true,
  });
  let generation: TemplateGeneration = "legacy";
  if (body.generation !== undefined) {
    if (
      typeof body.generation === "string" &&
      (TEMPLATE_GENERATIONS as readonly string[]).includes(body.generation)
    ) {
      generation = body.generation as TemplateGeneration;
    } else errors.push(err("generation", "generation must be one of: legacy, dynamic."));
  }
  if (errors.length > 0 || typeof name !== "string") return { ok: false, errors };
  return { ok: true, value: { name, generation } };
}

/** PATCH /v3/templates/{id} (`name` required: it is the only thing to change) and the duplicate (optional). */
export function parseTemplateName(body: unknown, required: boolean): Parsed<{ name?: string }> {
  if (!isObject(body)) return { ok: false, errors: [err(null, "The request body must be a JSON object.")] };
  const errors: FieldError[] = [];
  unknownKeys(body, ["name"], errors);
  const name = text(body, "name", errors, {
    max: LIMITS.templateName,
    unit: "characters",
    required,
    nonEmpty: true,
  });
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, value: typeof name === "string" ? { name } : {} };
}

const VERSION_KEYS = [
  "name",
  "subject",
  "html_content",
  "plain_content",
  "generate_plain_content",
  "preheader",
  "editor",
  "test_data",
  "active",
] as const;
/** Read-only keys a client may send back as it read them (SendGrid's own example body carries template_id). */
const ECHO_KEYS = ["id", "template_id"] as const;

/**
 * A version body: for POST, `name` and `subject` are required (SendGrid); for PATCH every field is
 * optional and only those given change. `template_id` and `id` may be sent back as read, but must
 * name the version in the path.
 */
export function parseVersion(
  body: unknown,
  mode: "create" | "update",
  path: { templateId: string; versionId?: string },
): Parsed<VersionInput> {
  if (!isObject(body)) return { ok: false, errors: [err(null, "The request body must be a JSON object.")] };
  const errors: FieldError[] = [];
  unknownKeys(body, [...VERSION_KEYS, ...ECHO_KEYS], errors);
  if (body.template_id !== undefined && body.template_id !== path.templateId) {
    errors.push(err("template_id", "template_id must be the template of the path, or left out."));
  }
  if (body.id !== undefined && (mode === "create" || body.id !== path.versionId)) {
    errors.push(
      err(
        "id",
        mode === "create"
          ? "id is chosen by the server; leave it out."
          : "id must be the version of the path, or left out.",
      ),
    );
  }
  const required = mode === "create";
  const out: VersionInput = {};
  const name = text(body, "name", errors, {
    max: LIMITS.versionName,
    unit: "characters",
    required,
    nonEmpty: true,
  });
  if (typeof name === "string") out.name = name;
  const subject = text(body, "subject", errors, {
    max: LIMITS.subject,
    unit: "characters",
    required,
    nonEmpty: true,
  });
  if (typeof subject === "string") {
    if (/[\r\n]/.test(subject)) errors.push(err("subject", "subject may not contain CR or LF."));
    else out.subject = subject;
  }
  const html = text(body, "html_content", errors, { max: LIMITS.content, unit: "bytes", required: false });
  if (typeof html === "string") out.html_content = html;
  const plain = text(body, "plain_content", errors, { max: LIMITS.content, unit: "bytes", required: false });
  if (typeof plain === "string") out.plain_content = plain;
  const preheader = text(body, "preheader", errors, {
    max: LIMITS.preheader,
    unit: "characters",
    required: false,
    nullable: true,
  });
  if (preheader !== undefined) out.preheader = preheader;
  const testData = text(body, "test_data", errors, {
    max: LIMITS.testData,
    unit: "bytes",
    required: false,
    nullable: true,
  });
  if (testData !== undefined) out.test_data = testData;
  if (body.generate_plain_content !== undefined) {
    if (typeof body.generate_plain_content === "boolean")
      out.generate_plain_content = body.generate_plain_content;
    else errors.push(err("generate_plain_content", "generate_plain_content must be true or false."));
  }
  if (body.editor !== undefined) {
    if (body.editor === "code" || body.editor === "design") out.editor = body.editor;
    else errors.push(err("editor", "editor must be one of: code, design."));
  }
  if (body.active !== undefined) {
    if (body.active === 0 || body.active === 1) out.active = body.active;
    else errors.push(err("active", "active must be 0 or 1."));
  }
  if (out.generate_plain_content === true && out.plain_content !== undefined && out.plain_content !== "") {
    errors.push(
      err(
        "plain_content",
        "plain_content is generated from html_content when generate_plain_content is true; send plain_content with generate_plain_content false, or leave it out.",
      ),
    );
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, value: out };
}
