/**
 * D1 queries for the image library (docs/api/images.md). Every tenant-facing query is built from
 * the tenant `tenantImages` was opened for and skips deleted rows: another tenant's id, or a deleted image, finds nothing. Only the
 * public proxy's fallback (`imageStateById`) reads by id alone, to tell "deleted" (410) from
 * "never existed" (404); it returns nothing else.
 */
import { and, asc, desc, eq, isNotNull, isNull, or, sql, type SQL } from "drizzle-orm";
import type { Db } from "./client.ts";
import { images } from "./schema.ts";

export type ImageRow = typeof images.$inferSelect;
export type NewImageRow = typeof images.$inferInsert;

/** `%`, `_` and the escape character itself match literally in a LIKE pattern after this. */
const likeLiteral = (s: string): string => s.replace(/[\\%_]/g, (ch) => `\\${ch}`);

export interface ImageFilter {
  folder?: string;
  /** Substring of the file name or the alt text, case-insensitive (ASCII, as SQLite's LIKE). */
  search?: string;
}

function listWhere(tenantId: string, f: ImageFilter): SQL | undefined {
  const pattern = f.search === undefined ? undefined : `%${likeLiteral(f.search)}%`;
  return and(
    eq(images.tenantId, tenantId),
    isNull(images.deletedAt),
    f.folder === undefined ? undefined : eq(images.folder, f.folder),
    pattern === undefined
      ? undefined
      : or(
          sql`${images.filename} LIKE ${pattern} ESCAPE '\\'`,
          sql`${images.altText} LIKE ${pattern} ESCAPE '\\'`,
        ),
  );
}

export interface ImagePatch {
  filename?: string;
  altText?: string | null;
  folder?: string | null;
}

/** For the public proxy when R2 has no object: "deleted", "live" or "unknown" — nothing else. */
// Cross-tenant by design: the public proxy knows an image by its unguessable id alone.
export async function imageStateById(db: Db, id: string): Promise<"deleted" | "live" | "unknown"> {
  const row = await db.select({ deletedAt: images.deletedAt }).from(images).where(eq(images.id, id)).get();
  if (!row) return "unknown";
  return row.deletedAt === null ? "live" : "deleted";
}

/**
 * One tenant's images: every query below is built from the tenant this was opened for, so another
 * tenant's rows are simply not there (a 404 upstream, like a made-up id).
 */
export function tenantImages(db: Db, tenantId: string) {
  async function getImage(id: string): Promise<ImageRow | undefined> {
    return db
      .select()
      .from(images)
      .where(and(eq(images.tenantId, tenantId), eq(images.id, id), isNull(images.deletedAt)))
      .get();
  }

  /** One page of the tenant's images, newest first (ties by id), and how many match in all. */
  async function listImages(
    filter: ImageFilter,
    page: number,
    pageSize: number,
  ): Promise<{ rows: ImageRow[]; total: number }> {
    const where = listWhere(tenantId, filter);
    const [rows, count] = await db.batch([
      db
        .select()
        .from(images)
        .where(where)
        .orderBy(desc(images.createdAt), desc(images.id))
        .limit(pageSize)
        .offset((page - 1) * pageSize),
      db
        .select({ n: sql<number>`count(*)` })
        .from(images)
        .where(where),
    ]);
    return { rows, total: count[0]?.n ?? 0 };
  }

  /** The tenant's distinct folder names (of images not deleted), sorted. */
  async function listFolders(): Promise<string[]> {
    const rows = await db
      .selectDistinct({ folder: images.folder })
      .from(images)
      .where(and(eq(images.tenantId, tenantId), isNull(images.deletedAt), isNotNull(images.folder)))
      .orderBy(asc(images.folder));
    return rows.map((r) => r.folder!);
  }

  /** Applies `patch` to the tenant's image; the updated row, or undefined when there is none. */
  async function updateImage(id: string, patch: ImagePatch, now: number): Promise<ImageRow | undefined> {
    const rows = await db
      .update(images)
      .set({ ...patch, updatedAt: now })
      .where(and(eq(images.tenantId, tenantId), eq(images.id, id), isNull(images.deletedAt)))
      .returning();
    return rows[0];
  }

  /** Marks the tenant's image deleted; whether there was one to delete. */
  async function markImageDeleted(id: string, now: number): Promise<boolean> {
    const rows = await db
      .update(images)
      .set({ deletedAt: now, updatedAt: now })
      .where(and(eq(images.tenantId, tenantId), eq(images.id, id), isNull(images.deletedAt)))
      .returning({ id: images.id });
    return rows.length > 0;
  }

  /** The row goes in under this tenant, whatever `tenantId` it carries. */
  async function insertImage(row: Omit<NewImageRow, "tenantId">): Promise<void> {
    await db.insert(images).values({ ...row, tenantId });
  }

  return { getImage, listImages, listFolders, updateImage, markImageDeleted, insertImage };
}
