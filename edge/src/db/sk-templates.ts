/**
 * D1 queries for SenderKit templates (docs/api/senderkit.md#templates). Every query is built from
 * the tenant `tenantSkTemplates` was opened for, so another tenant's slug or version is simply not found.
 */
import { and, asc, eq, isNull, lt, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { skTemplates, skTemplateVersions } from "./schema.ts";

export type SkTemplateRow = typeof skTemplates.$inferSelect;
export type SkVersionRow = typeof skTemplateVersions.$inferSelect;
export type SkVersionSummary = Omit<SkVersionRow, "content">;

export interface NewVersion {
  id: string;
  content: Record<string, unknown>;
  variables: Record<string, unknown>[];
}

/**
 * One tenant's SenderKit templates: every query below is built from the tenant this was opened for, so another
 * tenant's rows are simply not there (a 404 upstream, like a made-up id).
 */
export function tenantSkTemplates(db: Db, tenantId: string) {
  async function getSkTemplate(slug: string): Promise<SkTemplateRow | undefined> {
    const rows = await db
      .select()
      .from(skTemplates)
      .where(and(eq(skTemplates.tenantId, tenantId), eq(skTemplates.slug, slug)))
      .limit(1);
    return rows[0];
  }

  /** All of a tenant's templates, by slug (a tenant has at most MAX_SK_TEMPLATES). */
  async function listSkTemplates(): Promise<SkTemplateRow[]> {
    return db
      .select()
      .from(skTemplates)
      .where(eq(skTemplates.tenantId, tenantId))
      .orderBy(asc(skTemplates.slug));
  }

  async function countSkTemplates(): Promise<number> {
    const rows = await db
      .select({ n: sql<number>`count(*)` })
      .from(skTemplates)
      .where(eq(skTemplates.tenantId, tenantId));
    return rows[0]?.n ?? 0;
  }

  /**
   * Append a version with the next number (latest_version + 1) to a template that is not archived
   * and has fewer than `maxVersions`. The insert reads the number from the template row and the
   * update bumps it in the same batch (one D1 transaction), so concurrent saves get distinct
   * numbers. Returns the new number, or null when the template is archived, gone or full.
   */
  async function appendSkVersion(
    templateId: string,
    v: NewVersion,
    now: number,
    maxVersions: number,
  ): Promise<number | null> {
    const content = JSON.stringify(v.content);
    const variables = JSON.stringify(v.variables);
    const d1 = db.$client;
    await d1.batch([
      d1
        .prepare(
          `INSERT INTO sk_template_versions
             (id, tenant_id, template_id, version_number, content, variables, first_published_at, created_at)
           SELECT ?1, tenant_id, id, latest_version + 1, ?2, ?3, NULL, ?4
           FROM sk_templates
           WHERE id = ?5 AND tenant_id = ?6 AND archived_at IS NULL AND latest_version < ?7`,
        )
        .bind(v.id, content, variables, now, templateId, tenantId, maxVersions),
      d1
        .prepare(
          `UPDATE sk_templates SET latest_version = latest_version + 1, updated_at = ?1
           WHERE id = ?2 AND tenant_id = ?3 AND EXISTS (SELECT 1 FROM sk_template_versions WHERE id = ?4)`,
        )
        .bind(now, templateId, tenantId, v.id),
    ]);
    const rows = await db
      .select({ n: skTemplateVersions.versionNumber })
      .from(skTemplateVersions)
      .where(and(eq(skTemplateVersions.tenantId, tenantId), eq(skTemplateVersions.id, v.id)))
      .limit(1);
    return rows[0]?.n ?? null;
  }

  /** Every version of a template without its content, oldest first. */
  async function skVersionSummaries(templateId: string): Promise<SkVersionSummary[]> {
    return db
      .select({
        id: skTemplateVersions.id,
        tenantId: skTemplateVersions.tenantId,
        templateId: skTemplateVersions.templateId,
        versionNumber: skTemplateVersions.versionNumber,
        variables: skTemplateVersions.variables,
        firstPublishedAt: skTemplateVersions.firstPublishedAt,
        createdAt: skTemplateVersions.createdAt,
      })
      .from(skTemplateVersions)
      .where(and(eq(skTemplateVersions.tenantId, tenantId), eq(skTemplateVersions.templateId, templateId)))
      .orderBy(asc(skTemplateVersions.versionNumber));
  }

  async function getSkVersion(templateId: string, versionNumber: number): Promise<SkVersionRow | undefined> {
    const rows = await db
      .select()
      .from(skTemplateVersions)
      .where(
        and(
          eq(skTemplateVersions.tenantId, tenantId),
          eq(skTemplateVersions.templateId, templateId),
          eq(skTemplateVersions.versionNumber, versionNumber),
        ),
      )
      .limit(1);
    return rows[0];
  }

  async function getSkVersionById(versionId: string): Promise<SkVersionRow | undefined> {
    const rows = await db
      .select()
      .from(skTemplateVersions)
      .where(and(eq(skTemplateVersions.tenantId, tenantId), eq(skTemplateVersions.id, versionId)))
      .limit(1);
    return rows[0];
  }

  /** The highest-numbered version below `below` that has been published before (a rollback's default). */
  async function previousPublishedVersion(
    templateId: string,
    below: number,
  ): Promise<SkVersionRow | undefined> {
    const rows = await db
      .select()
      .from(skTemplateVersions)
      .where(
        and(
          eq(skTemplateVersions.tenantId, tenantId),
          eq(skTemplateVersions.templateId, templateId),
          lt(skTemplateVersions.versionNumber, below),
          sql`${skTemplateVersions.firstPublishedAt} IS NOT NULL`,
        ),
      )
      .orderBy(sql`${skTemplateVersions.versionNumber} DESC`)
      .limit(1);
    return rows[0];
  }

  /**
   * Point the template's current version at `versionId` (publish or rollback), unless it was
   * archived meanwhile; the version's first publication time is kept once set. One batch.
   * Returns false when the template is archived (or gone).
   */
  async function setCurrentSkVersion(templateId: string, versionId: string, now: number): Promise<boolean> {
    const [updated] = await db.batch([
      db
        .update(skTemplates)
        .set({ currentVersionId: versionId, publishedAt: now, updatedAt: now })
        .where(
          and(
            eq(skTemplates.tenantId, tenantId),
            eq(skTemplates.id, templateId),
            isNull(skTemplates.archivedAt),
          ),
        )
        .returning({ id: skTemplates.id }),
      db
        .update(skTemplateVersions)
        .set({ firstPublishedAt: now })
        .where(
          and(
            eq(skTemplateVersions.tenantId, tenantId),
            eq(skTemplateVersions.id, versionId),
            isNull(skTemplateVersions.firstPublishedAt),
            sql`EXISTS (SELECT 1 FROM sk_templates WHERE id = ${templateId} AND tenant_id = ${tenantId}
              AND current_version_id = ${versionId} AND archived_at IS NULL)`,
          ),
        ),
    ]);
    return updated.length === 1;
  }

  /** Archive (a hard stop for sends) or unarchive (back to draft: nothing published). */
  async function setSkArchived(templateId: string, archived: boolean, now: number): Promise<void> {
    await db
      .update(skTemplates)
      .set(
        archived
          ? { archivedAt: now, updatedAt: now }
          : { archivedAt: null, currentVersionId: null, publishedAt: null, updatedAt: now },
      )
      .where(and(eq(skTemplates.tenantId, tenantId), eq(skTemplates.id, templateId)));
  }

  async function setSkDescription(
    templateId: string,
    description: string | null,
    now: number,
  ): Promise<void> {
    await db
      .update(skTemplates)
      .set({ description, updatedAt: now })
      .where(and(eq(skTemplates.tenantId, tenantId), eq(skTemplates.id, templateId)));
  }

  /**
   * A send's template and version in one read: the version pinned by number, else the published
   * one (live) or the latest one (test). `version` is null when that version does not exist.
   */
  async function resolveSkVersion(
    slug: string,
    pick: { pin: number } | { mode: "live" | "test" },
  ): Promise<{ template: SkTemplateRow; version: SkVersionRow | null } | undefined> {
    const t = skTemplates;
    const v = skTemplateVersions;
    const on =
      "pin" in pick
        ? and(eq(v.templateId, t.id), eq(v.versionNumber, pick.pin))
        : pick.mode === "live"
          ? and(eq(v.id, t.currentVersionId), eq(v.templateId, t.id))
          : and(eq(v.templateId, t.id), eq(v.versionNumber, t.latestVersion));
    const rows = await db
      .select({ template: t, version: v })
      .from(t)
      .leftJoin(v, and(on, eq(v.tenantId, t.tenantId)))
      .where(and(eq(t.tenantId, tenantId), eq(t.slug, slug)))
      .limit(1);
    const row = rows[0];
    return row ? { template: row.template, version: row.version } : undefined;
  }

  /** All of a tenant's templates by slug, each with its published version's number (null: none). */
  async function listSkTemplatesWithCurrent(): Promise<
    { template: SkTemplateRow; currentNumber: number | null }[]
  > {
    const t = skTemplates;
    const v = skTemplateVersions;
    const rows = await db
      .select({ template: t, currentNumber: v.versionNumber })
      .from(t)
      .leftJoin(v, and(eq(v.id, t.currentVersionId), eq(v.tenantId, t.tenantId)))
      .where(eq(t.tenantId, tenantId))
      .orderBy(asc(t.slug));
    return rows.map((r) => ({ template: r.template, currentNumber: r.currentNumber ?? null }));
  }

  /**
   * Insert a template, with its version 1 when given, in one D1 batch, under this tenant whatever
   * `tenantId` the row carries. False when the slug is taken in the tenant (the unique index
   * decides, so two racing creates cannot both win).
   */
  async function insertSkTemplate(
    row: Omit<SkTemplateRow, "tenantId">,
    first: NewVersion | null,
  ): Promise<boolean> {
    try {
      if (!first) {
        await db.insert(skTemplates).values({ ...row, tenantId });
        return true;
      }
      await db.batch([
        db.insert(skTemplates).values({ ...row, tenantId, latestVersion: 1 }),
        db.insert(skTemplateVersions).values({
          id: first.id,
          tenantId,
          templateId: row.id,
          versionNumber: 1,
          content: first.content,
          variables: first.variables,
          firstPublishedAt: null,
          createdAt: row.createdAt,
        }),
      ]);
      return true;
    } catch (err) {
      if (/UNIQUE constraint failed: sk_templates/.test(String((err as Error)?.message ?? err))) return false;
      throw err;
    }
  }

  return {
    getSkTemplate,
    listSkTemplates,
    countSkTemplates,
    appendSkVersion,
    skVersionSummaries,
    getSkVersion,
    getSkVersionById,
    previousPublishedVersion,
    setCurrentSkVersion,
    setSkArchived,
    setSkDescription,
    resolveSkVersion,
    listSkTemplatesWithCurrent,
    insertSkTemplate,
  };
}
