/**
 * D1 queries for templates and their versions (docs/api/sendgrid.md#templates). Every query is
 * built from the tenant `tenantTemplates` was opened for: a template id of another tenant finds nothing. Changes that touch more than one
 * row (activation, a version created active, a duplicate, a delete) are one D1 batch, which D1 runs
 * as one transaction, so no reader ever sees two active versions or a half-copied template.
 */
import { and, asc, desc, eq, gt, inArray, lt, ne, or, sql, type SQL } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "./client.ts";
import { templates, templateVersions, type TemplateGeneration } from "./schema.ts";

export type TemplateRow = typeof templates.$inferSelect;
export type VersionRow = typeof templateVersions.$inferSelect;
/** A version without its content (the list's lean versions). */
export type VersionSummary = Omit<
  VersionRow,
  "htmlContent" | "plainContent" | "testData" | "preheader" | "snapshotSha256"
>;

const summaryColumns = {
  id: templateVersions.id,
  tenantId: templateVersions.tenantId,
  templateId: templateVersions.templateId,
  name: templateVersions.name,
  subject: templateVersions.subject,
  generatePlainContent: templateVersions.generatePlainContent,
  editor: templateVersions.editor,
  active: templateVersions.active,
  createdAt: templateVersions.createdAt,
  updatedAt: templateVersions.updatedAt,
};

/** The list's order: newest first, ties by id. A cursor is the (createdAt, id) of a row. */
export interface Cursor {
  createdAt: number;
  id: string;
}

/** Versions created in the same millisecond (a duplicate's copies) keep the order they were written in. */
const insertionOrder = sql`${templateVersions}.rowid`;

type Stmt = BatchItem<"sqlite">;

const touchTemplate = (db: Db, tenantId: string, templateId: string, now: number): Stmt =>
  db
    .update(templates)
    .set({ updatedAt: now })
    .where(and(eq(templates.tenantId, tenantId), eq(templates.id, templateId)));

/** Deactivates every version of the template but `keepId`: the first step of an activation. */
const deactivateOthers = (db: Db, tenantId: string, templateId: string, keepId: string, now: number): Stmt =>
  db
    .update(templateVersions)
    .set({ active: 0, updatedAt: now })
    .where(
      and(
        eq(templateVersions.tenantId, tenantId),
        eq(templateVersions.templateId, templateId),
        ne(templateVersions.id, keepId),
        eq(templateVersions.active, 1),
      ),
    );

async function runBatch(db: Db, statements: Stmt[]): Promise<void> {
  await db.batch(statements as [Stmt, ...Stmt[]]);
}

/**
 * One tenant's templates: every query below is built from the tenant this was opened for, so another
 * tenant's rows are simply not there (a 404 upstream, like a made-up id).
 */
export function tenantTemplates(db: Db, tenantId: string) {
  async function getTemplate(id: string): Promise<TemplateRow | undefined> {
    return db
      .select()
      .from(templates)
      .where(and(eq(templates.tenantId, tenantId), eq(templates.id, id)))
      .get();
  }

  async function countTemplates(): Promise<number> {
    const row = await db
      .select({ n: sql<number>`count(*)` })
      .from(templates)
      .where(eq(templates.tenantId, tenantId))
      .get();
    return row?.n ?? 0;
  }

  /** Whether another template of the tenant already has this name. */
  async function templateNameTaken(name: string, exceptId?: string): Promise<boolean> {
    const row = await db
      .select({ id: templates.id })
      .from(templates)
      .where(
        and(
          eq(templates.tenantId, tenantId),
          eq(templates.name, name),
          exceptId === undefined ? undefined : ne(templates.id, exceptId),
        ),
      )
      .get();
    return row !== undefined;
  }

  /** The tenant's template names that start with `prefix` (to pick a free name for a duplicate). */
  async function templateNamesStartingWith(prefix: string): Promise<Set<string>> {
    const rows = await db
      .select({ name: templates.name })
      .from(templates)
      .where(
        and(
          eq(templates.tenantId, tenantId),
          sql`substr(${templates.name}, 1, ${prefix.length}) = ${prefix}`,
        ),
      );
    return new Set(rows.map((r) => r.name));
  }

  /**
   * One page of the tenant's templates of these generations: `direction` "after" the cursor (the
   * next page) or "before" it (the previous page), `limit` rows at most, always newest first.
   */
  async function listTemplates(
    generations: readonly TemplateGeneration[],
    limit: number,
    cursor: { direction: "after" | "before"; at: Cursor } | null,
  ): Promise<TemplateRow[]> {
    let where: SQL | undefined = and(
      eq(templates.tenantId, tenantId),
      inArray(templates.generation, [...generations]),
    );
    if (cursor) {
      const { createdAt, id } = cursor.at;
      const older = or(
        lt(templates.createdAt, createdAt),
        and(eq(templates.createdAt, createdAt), lt(templates.id, id)),
      );
      const newer = or(
        gt(templates.createdAt, createdAt),
        and(eq(templates.createdAt, createdAt), gt(templates.id, id)),
      );
      where = and(where, cursor.direction === "after" ? older : newer);
    }
    const newestFirst = !cursor || cursor.direction === "after";
    const rows = await db
      .select()
      .from(templates)
      .where(where)
      .orderBy(
        ...(newestFirst
          ? [desc(templates.createdAt), desc(templates.id)]
          : [asc(templates.createdAt), asc(templates.id)]),
      )
      .limit(limit);
    return newestFirst ? rows : rows.reverse();
  }

  async function countTemplatesOf(generations: readonly TemplateGeneration[]): Promise<number> {
    const row = await db
      .select({ n: sql<number>`count(*)` })
      .from(templates)
      .where(and(eq(templates.tenantId, tenantId), inArray(templates.generation, [...generations])))
      .get();
    return row?.n ?? 0;
  }

  /** The versions of these templates without their content, oldest first per template. */
  async function versionSummaries(templateIds: string[]): Promise<VersionSummary[]> {
    if (templateIds.length === 0) return [];
    const out: VersionSummary[] = [];
    // D1 binds at most 100 parameters per statement (one is the tenant).
    for (let i = 0; i < templateIds.length; i += 90) {
      out.push(
        ...(await db
          .select(summaryColumns)
          .from(templateVersions)
          .where(
            and(
              eq(templateVersions.tenantId, tenantId),
              inArray(templateVersions.templateId, templateIds.slice(i, i + 90)),
            ),
          )
          .orderBy(asc(templateVersions.createdAt), insertionOrder)),
      );
    }
    return out;
  }

  /** Every version of one template, with content, oldest first. */
  async function versionsOf(templateId: string): Promise<VersionRow[]> {
    return db
      .select()
      .from(templateVersions)
      .where(and(eq(templateVersions.tenantId, tenantId), eq(templateVersions.templateId, templateId)))
      .orderBy(asc(templateVersions.createdAt), insertionOrder);
  }

  async function getVersion(templateId: string, versionId: string): Promise<VersionRow | undefined> {
    return db
      .select()
      .from(templateVersions)
      .where(
        and(
          eq(templateVersions.tenantId, tenantId),
          eq(templateVersions.templateId, templateId),
          eq(templateVersions.id, versionId),
        ),
      )
      .get();
  }

  /** The active version of a template, with its template's generation; undefined if none is active. */
  async function getActiveVersion(
    templateId: string,
  ): Promise<{ version: VersionRow; generation: TemplateGeneration } | undefined> {
    const row = await db
      .select({ version: templateVersions, generation: templates.generation })
      .from(templateVersions)
      .innerJoin(templates, eq(templates.id, templateVersions.templateId))
      .where(
        and(
          eq(templateVersions.tenantId, tenantId),
          eq(templates.tenantId, tenantId),
          eq(templateVersions.templateId, templateId),
          eq(templateVersions.active, 1),
        ),
      )
      .get();
    return row;
  }

  /** Number of versions and their stored size in bytes (the per-template storage bound). */
  async function versionUsage(
    templateId: string,
    exceptVersionId?: string,
  ): Promise<{ count: number; bytes: number }> {
    const row = await db
      .select({
        count: sql<number>`count(*)`,
        bytes: sql<number>`coalesce(sum(length(cast(${templateVersions.htmlContent} as blob)) + length(cast(${templateVersions.plainContent} as blob)) + length(cast(coalesce(${templateVersions.testData}, '') as blob))), 0)`,
      })
      .from(templateVersions)
      .where(
        and(
          eq(templateVersions.tenantId, tenantId),
          eq(templateVersions.templateId, templateId),
          exceptVersionId === undefined ? undefined : ne(templateVersions.id, exceptVersionId),
        ),
      )
      .get();
    return { count: row?.count ?? 0, bytes: row?.bytes ?? 0 };
  }

  async function versionNameTaken(templateId: string, name: string, exceptId?: string): Promise<boolean> {
    const row = await db
      .select({ id: templateVersions.id })
      .from(templateVersions)
      .where(
        and(
          eq(templateVersions.tenantId, tenantId),
          eq(templateVersions.templateId, templateId),
          eq(templateVersions.name, name),
          exceptId === undefined ? undefined : ne(templateVersions.id, exceptId),
        ),
      )
      .get();
    return row !== undefined;
  }

  async function renameTemplate(id: string, name: string, now: number): Promise<TemplateRow | undefined> {
    const [row] = await db
      .update(templates)
      .set({ name, updatedAt: now })
      .where(and(eq(templates.tenantId, tenantId), eq(templates.id, id)))
      .returning();
    return row;
  }

  /** Deletes the template and its versions in one transaction; false if the tenant has no such template. */
  async function deleteTemplate(id: string): Promise<boolean> {
    const [, deleted] = await db.batch([
      db
        .delete(templateVersions)
        .where(and(eq(templateVersions.tenantId, tenantId), eq(templateVersions.templateId, id))),
      db
        .delete(templates)
        .where(and(eq(templates.tenantId, tenantId), eq(templates.id, id)))
        .returning({ id: templates.id }),
    ]);
    return deleted.length > 0;
  }

  /**
   * Writes a version's new fields; when it becomes active, the others are deactivated first, in the
   * same transaction. Returns the row as stored, or undefined if it no longer exists.
   */
  async function updateVersion(
    templateId: string,
    versionId: string,
    patch: Partial<Omit<VersionRow, "id" | "tenantId" | "templateId" | "createdAt">>,
    now: number,
  ): Promise<VersionRow | undefined> {
    const statements: Stmt[] = [];
    if (patch.active === 1) statements.push(deactivateOthers(db, tenantId, templateId, versionId, now));
    statements.push(
      db
        .update(templateVersions)
        .set({ ...patch, updatedAt: now })
        .where(
          and(
            eq(templateVersions.tenantId, tenantId),
            eq(templateVersions.templateId, templateId),
            eq(templateVersions.id, versionId),
          ),
        ),
    );
    statements.push(touchTemplate(db, tenantId, templateId, now));
    await runBatch(db, statements);
    return getVersion(templateId, versionId);
  }

  /** Deletes one version (the caller has checked it is not the active one); false if it does not exist. */
  async function deleteVersion(templateId: string, versionId: string, now: number): Promise<boolean> {
    const [deleted] = await db.batch([
      db
        .delete(templateVersions)
        .where(
          and(
            eq(templateVersions.tenantId, tenantId),
            eq(templateVersions.templateId, templateId),
            eq(templateVersions.id, versionId),
            eq(templateVersions.active, 0),
          ),
        )
        .returning({ id: templateVersions.id }),
      touchTemplate(db, tenantId, templateId, now),
    ]);
    return deleted.length > 0;
  }

  /** Rows go in under this tenant, whatever `tenantId` they carry (so do the two below). */
  async function insertTemplate(row: Omit<TemplateRow, "tenantId">): Promise<void> {
    await db.insert(templates).values({ ...row, tenantId });
  }

  /** A template and copies of versions, in one transaction (the duplicate endpoint). */
  async function insertTemplateWithVersions(
    row: Omit<TemplateRow, "tenantId">,
    versions: Omit<VersionRow, "tenantId">[],
  ): Promise<void> {
    const statements: Stmt[] = [db.insert(templates).values({ ...row, tenantId })];
    // One row per statement: a version's content can be a megabyte, far beyond what one statement should carry.
    for (const v of versions) statements.push(db.insert(templateVersions).values({ ...v, tenantId }));
    await runBatch(db, statements);
  }

  /** Inserts a version; when it is active, the others are deactivated first, in the same transaction. */
  async function insertVersion(row: Omit<VersionRow, "tenantId">): Promise<void> {
    const statements: Stmt[] = [];
    if (row.active === 1)
      statements.push(deactivateOthers(db, tenantId, row.templateId, row.id, row.createdAt));
    statements.push(db.insert(templateVersions).values({ ...row, tenantId }));
    statements.push(touchTemplate(db, tenantId, row.templateId, row.createdAt));
    await runBatch(db, statements);
  }

  return {
    getTemplate,
    countTemplates,
    templateNameTaken,
    templateNamesStartingWith,
    listTemplates,
    countTemplatesOf,
    versionSummaries,
    versionsOf,
    getVersion,
    getActiveVersion,
    versionUsage,
    versionNameTaken,
    renameTemplate,
    deleteTemplate,
    updateVersion,
    deleteVersion,
    insertTemplate,
    insertTemplateWithVersions,
    insertVersion,
  };
}
