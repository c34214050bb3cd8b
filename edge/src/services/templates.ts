/**
 * Templates and versions (docs/api/sendgrid.md#templates, docs/templates.md): the rules between the
 * HTTP surface and the queries.
 *
 * Invariants:
 *  - At most one active version per template, enforced by D1 (a partial unique index) and kept by
 *    making every activation one batch: deactivate the others, activate this one.
 *  - The first version of a template is active unless the body says `active: 0` (SendGrid: "The
 *    first version created for a template will automatically be set to Active"); later ones are
 *    inactive unless `active: 1`.
 *  - The active version cannot be deleted (activate another, or deactivate it, first), so a
 *    template that sends keeps sending until someone decides otherwise.
 *  - A dynamic version's subject, HTML, text and preheader compile with the shared renderer before
 *    anything is stored; an error names the field, line and column.
 *  - `generate_plain_content: true` means plain_content is derived from html_content on every save
 *    that changes html_content (and the derived text compiles too).
 *  - Every change clears this isolate's cached answer for the template at once (templates-cache.ts).
 *  - Bounded: MAX_TEMPLATES per tenant and MAX_VERSIONS per template (SendGrid's 300), each
 *    version's stored row under MAX_VERSION_ROW_BYTES (D1 refuses a row over 2,000,000 bytes), and a
 *    template's versions under MAX_TEMPLATE_BYTES together.
 */
import { AppError, type FieldError } from "../../../shared/errors.ts";
import { randomHex } from "../../../shared/ids.ts";
import { compileVersion, type VersionPart } from "../../../shared/render/index.ts";
import type { Db } from "../db/client.ts";
import { type TemplateRow, type VersionRow, tenantTemplates } from "../db/templates.ts";
import type { TemplateGeneration } from "../db/schema.ts";
import { storeSnapshot } from "./template-snapshots.ts";
import { templateCache } from "./templates-cache.ts";
import type { VersionInput } from "./templates-input.ts";
import { htmlToPlainText } from "./templates-plain-text.ts";

export const MAX_TEMPLATES = 300;
export const MAX_VERSIONS = 300;
export const MAX_VERSION_ROW_BYTES = 1_900_000;
export const MAX_TEMPLATE_BYTES = 20 * 1_048_576;

const fieldError = (field: string | null, message: string): FieldError => ({ field, message, help: null });
const badRequest = (...errors: FieldError[]) =>
  new AppError("invalid_request", "Bad Request", { fields: errors });
/** SendGrid's answer for an id it does not know (or that belongs to someone else). */
export const notFound = () =>
  new AppError("not_found", "resource not found", { fields: [fieldError(null, "resource not found")] });

const bytes = (s: string | null | undefined) => (s ? new TextEncoder().encode(s).byteLength : 0);

/** `d-` + 32 lowercase hex for dynamic templates, a UUID for legacy ones, as SendGrid makes them. */
export function newTemplateId(generation: TemplateGeneration): string {
  return generation === "dynamic" ? `d-${randomHex(16)}` : crypto.randomUUID();
}

function isUniqueViolation(e: unknown): boolean {
  const text =
    e instanceof Error ? `${e.message} ${e.cause instanceof Error ? e.cause.message : ""}` : String(e);
  return /UNIQUE constraint failed/i.test(text);
}

async function requireTemplate(db: Db, tenantId: string, id: string): Promise<TemplateRow> {
  const t = await tenantTemplates(db, tenantId).getTemplate(id);
  if (!t) throw notFound();
  return t;
}

const nameTakenError = () => badRequest(fieldError("name", "A template with this name already exists."));

export async function createTemplate(
  db: Db,
  tenantId: string,
  input: { name: string; generation: TemplateGeneration },
  now: number,
): Promise<TemplateRow> {
  if ((await tenantTemplates(db, tenantId).countTemplates()) >= MAX_TEMPLATES) {
    throw badRequest(
      fieldError(null, `A tenant may have at most ${MAX_TEMPLATES} templates; delete one first.`),
    );
  }
  if (await tenantTemplates(db, tenantId).templateNameTaken(input.name)) throw nameTakenError();
  const row: TemplateRow = {
    id: newTemplateId(input.generation),
    tenantId,
    name: input.name,
    generation: input.generation,
    createdAt: now,
    updatedAt: now,
  };
  try {
    await tenantTemplates(db, tenantId).insertTemplate(row);
  } catch (e) {
    if (isUniqueViolation(e)) throw nameTakenError(); // a concurrent create took the name
    throw e;
  }
  return row;
}

export async function renameTemplateTo(
  db: Db,
  tenantId: string,
  id: string,
  name: string,
  now: number,
): Promise<TemplateRow> {
  await requireTemplate(db, tenantId, id);
  if (await tenantTemplates(db, tenantId).templateNameTaken(name, id)) throw nameTakenError();
  try {
    const row = await tenantTemplates(db, tenantId).renameTemplate(id, name, now);
    if (!row) throw notFound();
    return row;
  } catch (e) {
    if (isUniqueViolation(e)) throw nameTakenError();
    throw e;
  }
}

export async function removeTemplate(db: Db, tenantId: string, id: string): Promise<void> {
  const deleted = await tenantTemplates(db, tenantId).deleteTemplate(id);
  templateCache.forget(tenantId, id);
  if (!deleted) throw notFound();
}

/** A free name for a duplicate: "<name> (copy)", then "(copy 2)", … within SendGrid's 100 characters. */
async function duplicateName(db: Db, tenantId: string, name: string): Promise<string> {
  const stem = [...name].slice(0, 90).join("");
  const taken = await tenantTemplates(db, tenantId).templateNamesStartingWith(`${stem} (copy`);
  for (let n = 1; n <= MAX_TEMPLATES + 1; n++) {
    const candidate = n === 1 ? `${stem} (copy)` : `${stem} (copy ${n})`;
    if (!taken.has(candidate)) return candidate;
  }
  throw nameTakenError();
}

/** POST /v3/templates/{id}: a new template (new id, same generation) with copies of every version. */
export async function duplicateTemplate(
  db: Db,
  tenantId: string,
  id: string,
  name: string | undefined,
  now: number,
): Promise<{ template: TemplateRow; versions: VersionRow[] }> {
  const source = await requireTemplate(db, tenantId, id);
  if ((await tenantTemplates(db, tenantId).countTemplates()) >= MAX_TEMPLATES) {
    throw badRequest(
      fieldError(null, `A tenant may have at most ${MAX_TEMPLATES} templates; delete one first.`),
    );
  }
  const newName = name ?? (await duplicateName(db, tenantId, source.name));
  if (name !== undefined && (await tenantTemplates(db, tenantId).templateNameTaken(name)))
    throw nameTakenError();
  const template: TemplateRow = {
    id: newTemplateId(source.generation),
    tenantId,
    name: newName,
    generation: source.generation,
    createdAt: now,
    updatedAt: now,
  };
  const versions = (await tenantTemplates(db, tenantId).versionsOf(id)).map((v) => ({
    ...v,
    id: crypto.randomUUID(),
    templateId: template.id,
    createdAt: now,
    updatedAt: now,
  }));
  try {
    await tenantTemplates(db, tenantId).insertTemplateWithVersions(template, versions);
  } catch (e) {
    if (isUniqueViolation(e)) throw nameTakenError();
    throw e;
  }
  return { template, versions };
}

const PART_FIELDS: Record<VersionPart, string> = {
  subject: "subject",
  html: "html_content",
  text: "plain_content",
  preheader: "preheader",
};

/**
 * The stored content of a version after `input` is applied to `current` (absent for a new one):
 * plain text derived when asked for, then every part of a dynamic version compiled. Throws the 400.
 */
function resolveContent(
  generation: TemplateGeneration,
  current: VersionRow | undefined,
  input: VersionInput,
): Pick<VersionRow, "subject" | "htmlContent" | "plainContent" | "generatePlainContent" | "preheader"> {
  const html = input.html_content ?? current?.htmlContent ?? "";
  // A plain_content sent without the flag says "keep my text": it turns generation off rather
  // than being overwritten (and so silently dropped) by SendGrid's default of true.
  const generate =
    input.generate_plain_content ??
    (input.plain_content !== undefined ? false : (current?.generatePlainContent ?? true));
  const plain = generate ? htmlToPlainText(html) : (input.plain_content ?? current?.plainContent ?? "");
  const subject = input.subject ?? current?.subject ?? "";
  const preheader = input.preheader !== undefined ? input.preheader : (current?.preheader ?? null);

  if (generation === "dynamic") {
    const compiled = compileVersion({ subject, html, text: plain, preheader });
    if (!compiled.ok) {
      const { part, line, column, message } = compiled.error;
      const field = PART_FIELDS[part];
      const derived = part === "text" && generate;
      throw badRequest(
        fieldError(
          derived ? "html_content" : field,
          derived
            ? `The plain text generated from html_content is not a valid template (line ${line}, column ${column}): ${message}. Send plain_content with generate_plain_content false.`
            : `Invalid template syntax in ${field} at line ${line}, column ${column}: ${message}`,
        ),
      );
    }
  }
  return { subject, htmlContent: html, plainContent: plain, generatePlainContent: generate, preheader };
}

function checkRowSize(
  row: Pick<VersionRow, "htmlContent" | "plainContent" | "testData" | "subject" | "preheader">,
) {
  const size =
    bytes(row.htmlContent) +
    bytes(row.plainContent) +
    bytes(row.testData) +
    bytes(row.subject) +
    bytes(row.preheader);
  if (size > MAX_VERSION_ROW_BYTES) {
    throw new AppError("payload_too_large", "content too large", {
      fields: [
        fieldError(
          null,
          `html_content, plain_content and test_data together are ${size.toLocaleString("en-US")} bytes; one version may store at most ${MAX_VERSION_ROW_BYTES.toLocaleString("en-US")}.`,
        ),
      ],
    });
  }
  return size;
}

async function checkTemplateBudget(
  db: Db,
  tenantId: string,
  templateId: string,
  size: number,
  exceptVersionId?: string,
): Promise<number> {
  const usage = await tenantTemplates(db, tenantId).versionUsage(templateId, exceptVersionId);
  if (exceptVersionId === undefined && usage.count >= MAX_VERSIONS) {
    throw badRequest(
      fieldError(null, `A template may have at most ${MAX_VERSIONS} versions; delete one first.`),
    );
  }
  if (usage.bytes + size > MAX_TEMPLATE_BYTES) {
    throw new AppError("payload_too_large", "content too large", {
      fields: [
        fieldError(
          null,
          `The versions of one template may store at most ${MAX_TEMPLATE_BYTES.toLocaleString("en-US")} bytes together; delete a version first.`,
        ),
      ],
    });
  }
  return usage.count;
}

const versionNameError = () =>
  badRequest(fieldError("name", "A version with this name already exists in this template."));

export async function createVersion(
  db: Db,
  tenantId: string,
  templateId: string,
  input: VersionInput,
  now: number,
  /** R2: the version's content snapshot is written here before the row (services/template-snapshots.ts). */
  blobs?: Pick<R2Bucket, "put">,
): Promise<VersionRow> {
  const template = await requireTemplate(db, tenantId, templateId);
  const content = resolveContent(template.generation, undefined, input);
  const testData = input.test_data ?? null;
  const size = checkRowSize({ ...content, testData });
  const existing = await checkTemplateBudget(db, tenantId, templateId, size);
  if (await tenantTemplates(db, tenantId).versionNameTaken(templateId, input.name!)) throw versionNameError();
  const snapshotSha256 = blobs ? await storeSnapshot(blobs, tenantId, template.generation, content) : null;
  const row: VersionRow = {
    id: crypto.randomUUID(),
    tenantId,
    templateId,
    name: input.name!,
    ...content,
    editor: input.editor ?? "code",
    testData,
    snapshotSha256,
    active: input.active ?? (existing === 0 ? 1 : 0),
    createdAt: now,
    updatedAt: now,
  };
  try {
    await tenantTemplates(db, tenantId).insertVersion(row);
  } catch (e) {
    if (isUniqueViolation(e)) throw versionNameError();
    throw e;
  } finally {
    templateCache.forget(tenantId, templateId);
  }
  return row;
}

export async function updateVersion(
  db: Db,
  tenantId: string,
  templateId: string,
  versionId: string,
  input: VersionInput,
  now: number,
  blobs?: Pick<R2Bucket, "put">,
): Promise<VersionRow> {
  const template = await requireTemplate(db, tenantId, templateId);
  const current = await tenantTemplates(db, tenantId).getVersion(templateId, versionId);
  if (!current) throw notFound();
  const content = resolveContent(template.generation, current, input);
  const testData = input.test_data !== undefined ? input.test_data : current.testData;
  const size = checkRowSize({ ...content, testData });
  await checkTemplateBudget(db, tenantId, templateId, size, versionId);
  if (
    input.name !== undefined &&
    (await tenantTemplates(db, tenantId).versionNameTaken(templateId, input.name, versionId))
  ) {
    throw versionNameError();
  }
  // A new snapshot for the new content; the old one stays until the cron sees no version name it.
  const snapshotSha256 = blobs ? await storeSnapshot(blobs, tenantId, template.generation, content) : null;
  try {
    const row = await tenantTemplates(db, tenantId).updateVersion(
      templateId,
      versionId,
      {
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...content,
        snapshotSha256,
        ...(input.editor !== undefined ? { editor: input.editor } : {}),
        testData,
        ...(input.active !== undefined ? { active: input.active } : {}),
      },
      now,
    );
    if (!row) throw notFound();
    return row;
  } catch (e) {
    if (isUniqueViolation(e)) throw versionNameError();
    throw e;
  } finally {
    templateCache.forget(tenantId, templateId);
  }
}

/** POST …/versions/{id}/activate: this version active, every other one of the template inactive. */
export async function activateVersion(
  db: Db,
  tenantId: string,
  templateId: string,
  versionId: string,
  now: number,
): Promise<VersionRow> {
  await requireTemplate(db, tenantId, templateId);
  if (!(await tenantTemplates(db, tenantId).getVersion(templateId, versionId))) throw notFound();
  try {
    const row = await tenantTemplates(db, tenantId).updateVersion(templateId, versionId, { active: 1 }, now);
    if (!row) throw notFound();
    return row;
  } finally {
    templateCache.forget(tenantId, templateId);
  }
}

export async function removeVersion(
  db: Db,
  tenantId: string,
  templateId: string,
  versionId: string,
  now: number,
): Promise<void> {
  await requireTemplate(db, tenantId, templateId);
  const current = await tenantTemplates(db, tenantId).getVersion(templateId, versionId);
  if (!current) throw notFound();
  if (current.active === 1) {
    throw badRequest(
      fieldError(
        "version_id",
        "The active version of a template cannot be deleted; activate another version (or set active to 0) first, or delete the template.",
      ),
    );
  }
  const deleted = await tenantTemplates(db, tenantId).deleteVersion(templateId, versionId, now);
  templateCache.forget(tenantId, templateId);
  // Activated between the check and the delete: the guarded DELETE left it in place.
  if (!deleted) {
    const still = await tenantTemplates(db, tenantId).getVersion(templateId, versionId);
    if (!still) throw notFound();
    throw badRequest(fieldError("version_id", "The active version of a template cannot be deleted."));
  }
}
