/**
 * Managing SenderKit templates (docs/api/admin.md#senderkit-templates; SenderKit keeps this in its
 * dashboard): create, save a new immutable version, publish, roll back, archive and unarchive.
 * Routes throw these AppErrors; the admin surface renders them as `{detail}`.
 *
 * Rules (docs/api/senderkit.md#templates):
 *  - a slug is unique in the tenant, stored lowercase; the channel is fixed at creation;
 *  - every save is a new version numbered latest + 1, never changed afterwards;
 *  - publish points the template at a version (default: the latest); rollback points it back at
 *    an earlier version that was published before (default: the newest such one below the
 *    current), creating no version; both take effect at once;
 *  - archived: no new versions, no publish or rollback, every send 422; unarchive returns the
 *    template to draft (nothing published) with its versions kept.
 */
import { AppError } from "../../../../shared/errors.ts";
import type { Db } from "../../db/client.ts";
import { type SkTemplateRow, type SkVersionRow, tenantSkTemplates } from "../../db/sk-templates.ts";
import { parseContent, VariablesSchema, type SkChannel, type SkVariable } from "./template-content.ts";
import { normalizeSlug, SLUG_PATTERN } from "./template-render.ts";

export const MAX_SK_TEMPLATES = 300;
export const MAX_SK_VERSIONS = 300;

const notFound = (slug: string) => new AppError("not_found", `SenderKit template not found: ${slug}`);

/** A slug from a path or body: lowercased; one that could never be stored is simply not found. */
export async function requireSkTemplate(db: Db, tenantId: string, rawSlug: string): Promise<SkTemplateRow> {
  const slug = normalizeSlug(rawSlug);
  const t = SLUG_PATTERN.test(slug) ? await tenantSkTemplates(db, tenantId).getSkTemplate(slug) : undefined;
  if (!t) throw notFound(rawSlug);
  return t;
}

/** Content checked for the channel and compiled; problems become 422s naming body.content.<field>. */
function checkedContent(channel: SkChannel, raw: unknown): Record<string, unknown> {
  const r = parseContent(channel, raw);
  if (!r.ok) {
    throw new AppError("invalid_request", "Invalid template content", {
      fields: r.issues.map((i) => ({ message: i.message, field: ["body", "content", ...i.path].join(".") })),
    });
  }
  return r.compiled.content as Record<string, unknown>;
}

function checkedVariables(raw: unknown): SkVariable[] {
  const r = VariablesSchema.safeParse(raw);
  if (!r.success) {
    throw new AppError("invalid_request", "Invalid variables", {
      fields: r.error.issues.map((i) => ({
        message: i.message,
        field: ["body", "variables", ...i.path.map(String)].join("."),
      })),
    });
  }
  return r.data;
}

export interface CreateInput {
  slug: string;
  channel: SkChannel;
  description?: string | null;
  content?: unknown;
  variables?: unknown;
  publish?: boolean;
}

export async function createSkTemplate(
  db: Db,
  tenantId: string,
  input: CreateInput,
  now: number,
): Promise<SkTemplateRow> {
  const slug = normalizeSlug(input.slug);
  if (!SLUG_PATTERN.test(slug)) {
    throw new AppError("invalid_request", "Invalid slug", {
      fields: [
        {
          field: "body.slug",
          message:
            "must be 1-128 characters of a-z, 0-9, '.', '_' and '-', starting and ending with a letter or digit",
        },
      ],
    });
  }
  if (input.publish && input.content === undefined) {
    throw new AppError("invalid_request", "publish needs content", {
      fields: [{ field: "body.publish", message: "a template without content has no version to publish" }],
    });
  }
  const first =
    input.content !== undefined
      ? {
          id: crypto.randomUUID(),
          content: checkedContent(input.channel, input.content),
          variables: checkedVariables(input.variables) as Record<string, unknown>[],
        }
      : null;
  if (input.content === undefined && input.variables !== undefined) {
    throw new AppError("invalid_request", "variables need content", {
      fields: [{ field: "body.variables", message: "variables belong to a version: send content with them" }],
    });
  }
  if ((await tenantSkTemplates(db, tenantId).countSkTemplates()) >= MAX_SK_TEMPLATES) {
    throw new AppError("invalid_request", `A tenant has at most ${MAX_SK_TEMPLATES} SenderKit templates`);
  }
  const row: SkTemplateRow = {
    id: crypto.randomUUID(),
    tenantId,
    slug,
    channel: input.channel,
    description: input.description ?? null,
    currentVersionId: null,
    providerConnectionId: null,
    publishedAt: null,
    latestVersion: 0,
    archivedAt: null,
    createdAt: now,
    updatedAt: now,
  };
  if (!(await tenantSkTemplates(db, tenantId).insertSkTemplate(row, first))) {
    throw new AppError("conflict", `A SenderKit template with slug "${slug}" already exists`);
  }
  if (first && input.publish)
    await tenantSkTemplates(db, tenantId).setCurrentSkVersion(row.id, first.id, now);
  return (await tenantSkTemplates(db, tenantId).getSkTemplate(slug))!;
}

export async function addSkVersion(
  db: Db,
  tenantId: string,
  rawSlug: string,
  input: { content: unknown; variables?: unknown; publish?: boolean },
  now: number,
): Promise<{ template: SkTemplateRow; version: SkVersionRow }> {
  const t = await requireSkTemplate(db, tenantId, rawSlug);
  if (t.archivedAt !== null) throw archivedConflict(t);
  const content = checkedContent(t.channel, input.content);
  const variables = checkedVariables(input.variables) as Record<string, unknown>[];
  const id = crypto.randomUUID();
  const n = await tenantSkTemplates(db, tenantId).appendSkVersion(
    t.id,
    { id, content, variables },
    now,
    MAX_SK_VERSIONS,
  );
  if (n === null) {
    const fresh = await requireSkTemplate(db, tenantId, t.slug);
    if (fresh.archivedAt !== null) throw archivedConflict(fresh);
    throw new AppError("invalid_request", `A SenderKit template has at most ${MAX_SK_VERSIONS} versions`);
  }
  if (input.publish && !(await tenantSkTemplates(db, tenantId).setCurrentSkVersion(t.id, id, now)))
    throw archivedConflict(t);
  return {
    template: await requireSkTemplate(db, tenantId, t.slug),
    version: (await tenantSkTemplates(db, tenantId).getSkVersionById(id))!,
  };
}

const archivedConflict = (t: SkTemplateRow) =>
  new AppError("conflict", `SenderKit template "${t.slug}" is archived: unarchive it first`);

export async function requireSkVersion(db: Db, t: SkTemplateRow, n: number): Promise<SkVersionRow> {
  const v =
    Number.isSafeInteger(n) && n >= 1
      ? await tenantSkTemplates(db, t.tenantId).getSkVersion(t.id, n)
      : undefined;
  if (!v) throw new AppError("not_found", `SenderKit template "${t.slug}" has no version ${n}`);
  return v;
}

/** Publish version `n` (default: the latest). Publishing the current version again changes nothing. */
export async function publishSkVersion(
  db: Db,
  tenantId: string,
  rawSlug: string,
  n: number | undefined,
  now: number,
): Promise<SkTemplateRow> {
  const t = await requireSkTemplate(db, tenantId, rawSlug);
  if (t.archivedAt !== null) throw archivedConflict(t);
  if (t.latestVersion === 0)
    throw new AppError("conflict", `SenderKit template "${t.slug}" has no versions to publish`);
  const v = await requireSkVersion(db, t, n ?? t.latestVersion);
  if (t.currentVersionId === v.id) return t;
  if (!(await tenantSkTemplates(db, tenantId).setCurrentSkVersion(t.id, v.id, now)))
    throw archivedConflict(t);
  return requireSkTemplate(db, tenantId, t.slug);
}

/**
 * Roll back to version `n`, or by default to the newest version below the current one that was
 * published before. The target must be older than the current version and have been published.
 */
export async function rollbackSkVersion(
  db: Db,
  tenantId: string,
  rawSlug: string,
  n: number | undefined,
  now: number,
): Promise<SkTemplateRow> {
  const t = await requireSkTemplate(db, tenantId, rawSlug);
  if (t.archivedAt !== null) throw archivedConflict(t);
  const current = t.currentVersionId
    ? await tenantSkTemplates(db, tenantId).getSkVersionById(t.currentVersionId)
    : undefined;
  if (!current)
    throw new AppError(
      "conflict",
      `SenderKit template "${t.slug}" has no published version to roll back from`,
    );
  let target: SkVersionRow | undefined;
  if (n === undefined) {
    target = await tenantSkTemplates(db, tenantId).previousPublishedVersion(t.id, current.versionNumber);
    if (!target) {
      throw new AppError(
        "conflict",
        `SenderKit template "${t.slug}" has no earlier published version than ${current.versionNumber}`,
      );
    }
  } else {
    target = await requireSkVersion(db, t, n);
    if (target.versionNumber >= current.versionNumber || target.firstPublishedAt === null) {
      throw new AppError(
        "conflict",
        `A rollback goes to an earlier version that was published before; version ${n} is not one (current: ${current.versionNumber})`,
      );
    }
  }
  if (!(await tenantSkTemplates(db, tenantId).setCurrentSkVersion(t.id, target.id, now)))
    throw archivedConflict(t);
  return requireSkTemplate(db, tenantId, t.slug);
}

export async function archiveSkTemplate(
  db: Db,
  tenantId: string,
  rawSlug: string,
  archived: boolean,
  now: number,
): Promise<SkTemplateRow> {
  const t = await requireSkTemplate(db, tenantId, rawSlug);
  if ((t.archivedAt !== null) !== archived)
    await tenantSkTemplates(db, tenantId).setSkArchived(t.id, archived, now);
  return requireSkTemplate(db, tenantId, t.slug);
}

export async function describeSkTemplate(
  db: Db,
  tenantId: string,
  rawSlug: string,
  description: string | null,
  now: number,
): Promise<SkTemplateRow> {
  const t = await requireSkTemplate(db, tenantId, rawSlug);
  await tenantSkTemplates(db, tenantId).setSkDescription(t.id, description, now);
  return requireSkTemplate(db, tenantId, t.slug);
}

/** SenderKit's template status: archived, else active once a version is published, else draft. */
export function skStatusOf(
  t: Pick<SkTemplateRow, "archivedAt" | "currentVersionId">,
): "active" | "draft" | "archived" {
  if (t.archivedAt !== null) return "archived";
  return t.currentVersionId !== null ? "active" : "draft";
}
