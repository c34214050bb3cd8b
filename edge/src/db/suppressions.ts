/**
 * D1 queries for the suppression store (docs/api/sendgrid.md#suppressions): SendGrid's five lists
 * (bounces, blocks, invalid_emails, spam_reports, global unsubscribes), unsubscribe groups (ASM) and
 * the per-group unsubscribes. Every query is built from the tenant `tenantSuppressions` was opened
 * for: another tenant's group id finds nothing,
 * exactly like a made-up one. Addresses are lower-cased on the way in and on every lookup.
 *
 * Lists of addresses travel as one JSON parameter read back with json_each (D1 allows 100 bound
 * parameters per statement, and a list of 1,000 addresses is one statement this way); each element
 * is then one probe of a unique index, never a scan of the tenant's rows.
 */
import { and, asc, desc, eq, gte, inArray, lte, sql, type SQL } from "drizzle-orm";
import type { Db } from "./client.ts";
import { asmGroups, asmGroupSuppressions, suppressions, type SuppressionList } from "./schema.ts";
import { normalizeEmail } from "./suppression-lookup.ts";

export { DROPPING_LISTS, findSuppressed, type SuppressionHit } from "./suppression-lookup.ts";

export type SuppressionRow = typeof suppressions.$inferSelect;
export type AsmGroupRow = typeof asmGroups.$inferSelect;

export { normalizeEmail };

// ----- the five lists -----------------------------------------------------------------------

export interface ListQuery {
  limit: number;
  offset: number;
  /** Unix milliseconds, inclusive. */
  startTime?: number;
  endTime?: number;
  /** A prefix of the address; `%` inside it is a wildcard (SendGrid's `email` filter). */
  emailPrefix?: string;
}

export interface NewSuppression {
  email: string;
  createdAt: number;
  reason?: string | null;
  status?: string | null;
  bounceType?: string | null;
  ip?: string | null;
}

/** Rows per statement: the JSON list stays far below D1's parameter size limit. */
const INSERT_CHUNK = 5_000;

const ADD_SQL = `INSERT INTO suppressions (tenant_id, email, list, created_at, reason, status, bounce_type, ip)
  SELECT ?1, json_extract(value, '$[0]'), ?2, json_extract(value, '$[1]'), json_extract(value, '$[2]'),
    json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')
  FROM json_each(?3) WHERE true
  ON CONFLICT (tenant_id, email, list) DO UPDATE SET created_at = excluded.created_at,
    reason = excluded.reason, status = excluded.status, bounce_type = excluded.bounce_type, ip = excluded.ip`;

/** The LIKE pattern of an address prefix: `_` and `\` are literal in an address; `%` stays SendGrid's wildcard. */
function prefixPattern(prefix: string): string {
  return normalizeEmail(prefix).replace(/[\\_]/g, (c) => `\\${c}`) + "%";
}

// ----- global unsubscribes (the tracking pages call these) ---------------------------------

// ----- unsubscribe groups --------------------------------------------------------------------

export interface GroupWithCount extends AsmGroupRow {
  unsubscribes: number;
}

const unsubscribesCount = sql<number>`(SELECT count(*) FROM ${asmGroupSuppressions}
  WHERE ${asmGroupSuppressions.groupId} = ${asmGroups.id} AND ${asmGroupSuppressions.tenantId} = ${asmGroups.tenantId})`;

/** Only one group of a tenant is the default: making one the default clears the flag on the others. */
function clearDefault(db: Db, tenantId: string, exceptId: number | null) {
  const where = [eq(asmGroups.tenantId, tenantId), eq(asmGroups.isDefault, true)];
  if (exceptId !== null) where.push(sql`${asmGroups.id} <> ${exceptId}`);
  return db
    .update(asmGroups)
    .set({ isDefault: false })
    .where(and(...where));
}

// ----- per-group unsubscribes ----------------------------------------------------------------

const ADD_GROUP_SQL = `INSERT INTO asm_group_suppressions (tenant_id, group_id, email, created_at)
  SELECT g.tenant_id, g.id, j.value, ?3 FROM asm_groups AS g, json_each(?4) AS j
  WHERE g.tenant_id = ?1 AND g.id = ?2
  ON CONFLICT (tenant_id, email, group_id) DO NOTHING`;

// ----- the check before dispatch: edge/src/db/suppression-lookup.ts

const ADD_UNSUBSCRIBES_SQL = `INSERT INTO suppressions (tenant_id, email, list, created_at)
  SELECT ?1, value, 'unsubscribes', ?2 FROM json_each(?3) WHERE true
  ON CONFLICT (tenant_id, email, list) DO NOTHING`;

/**
 * One tenant's suppressions: every query below is built from the tenant this was opened for, so another
 * tenant's rows are simply not there (a 404 upstream, like a made-up id).
 */
export function tenantSuppressions(db: Db, tenantId: string) {
  /** One list, newest first (ties by address, so pages are stable). */
  async function listSuppressions(list: SuppressionList, q: ListQuery): Promise<SuppressionRow[]> {
    const where: SQL[] = [eq(suppressions.tenantId, tenantId), eq(suppressions.list, list)];
    if (q.startTime !== undefined) where.push(gte(suppressions.createdAt, q.startTime));
    if (q.endTime !== undefined) where.push(lte(suppressions.createdAt, q.endTime));
    if (q.emailPrefix !== undefined)
      where.push(sql`${suppressions.email} LIKE ${prefixPattern(q.emailPrefix)} ESCAPE '\\'`);
    return db
      .select()
      .from(suppressions)
      .where(and(...where))
      .orderBy(desc(suppressions.createdAt), asc(suppressions.email))
      .limit(q.limit)
      .offset(q.offset)
      .all();
  }

  async function getSuppression(list: SuppressionList, email: string): Promise<SuppressionRow | undefined> {
    return db
      .select()
      .from(suppressions)
      .where(
        and(
          eq(suppressions.tenantId, tenantId),
          eq(suppressions.email, normalizeEmail(email)),
          eq(suppressions.list, list),
        ),
      )
      .get();
  }

  /**
   * Adds (or refreshes) addresses on one list. An address already listed takes the new reason and
   * time, like a second bounce would. Returns how many addresses were given (after de-duplication).
   */
  async function addSuppressions(list: SuppressionList, rows: NewSuppression[]): Promise<number> {
    const byEmail = new Map<string, NewSuppression>();
    for (const r of rows) byEmail.set(normalizeEmail(r.email), { ...r, email: normalizeEmail(r.email) });
    const all = [...byEmail.values()];
    const statements: D1PreparedStatement[] = [];
    for (let i = 0; i < all.length; i += INSERT_CHUNK) {
      const json = JSON.stringify(
        all
          .slice(i, i + INSERT_CHUNK)
          .map((r) => [
            r.email,
            r.createdAt,
            r.reason ?? null,
            r.status ?? null,
            r.bounceType ?? null,
            r.ip ?? null,
          ]),
      );
      statements.push(db.$client.prepare(ADD_SQL).bind(tenantId, list, json));
    }
    if (statements.length > 0) await db.$client.batch(statements);
    return all.length;
  }

  /** Removes addresses from one list; returns how many rows went. */
  async function deleteSuppressions(list: SuppressionList, emails: string[]): Promise<number> {
    const json = JSON.stringify([...new Set(emails.map(normalizeEmail))]);
    const r = await db.run(sql`DELETE FROM suppressions WHERE tenant_id = ${tenantId} AND list = ${list}
      AND email IN (SELECT value FROM json_each(${json}))`);
    return r.meta.changes ?? 0;
  }

  async function deleteAllSuppressions(list: SuppressionList): Promise<number> {
    const r = await db
      .delete(suppressions)
      .where(and(eq(suppressions.tenantId, tenantId), eq(suppressions.list, list)))
      .run();
    return r.meta.changes ?? 0;
  }

  /** Puts `email` on the tenant's global unsubscribe list (a no-op when it is there already). */
  async function unsubscribeGlobally(email: string, at: number): Promise<void> {
    await db
      .insert(suppressions)
      .values({ tenantId, email: normalizeEmail(email), list: "unsubscribes", createdAt: at })
      .onConflictDoNothing();
  }

  async function isGloballyUnsubscribed(email: string): Promise<boolean> {
    return (await getSuppression("unsubscribes", email)) !== undefined;
  }

  async function getGroup(id: number): Promise<AsmGroupRow | undefined> {
    return db
      .select()
      .from(asmGroups)
      .where(and(eq(asmGroups.tenantId, tenantId), eq(asmGroups.id, id)))
      .get();
  }

  async function getGroupWithCount(id: number): Promise<GroupWithCount | undefined> {
    const row = await db
      .select({ group: asmGroups, unsubscribes: unsubscribesCount })
      .from(asmGroups)
      .where(and(eq(asmGroups.tenantId, tenantId), eq(asmGroups.id, id)))
      .get();
    return row ? { ...row.group, unsubscribes: row.unsubscribes } : undefined;
  }

  /** The tenant's groups (only `ids`, when given), by id. */
  async function listGroups(ids?: number[]): Promise<GroupWithCount[]> {
    const where = [eq(asmGroups.tenantId, tenantId)];
    if (ids) {
      if (ids.length === 0) return [];
      where.push(inArray(asmGroups.id, ids.slice(0, 90)));
    }
    const rows = await db
      .select({ group: asmGroups, unsubscribes: unsubscribesCount })
      .from(asmGroups)
      .where(and(...where))
      .orderBy(asc(asmGroups.id))
      .all();
    return rows.map((r) => ({ ...r.group, unsubscribes: r.unsubscribes }));
  }

  async function countGroups(): Promise<number> {
    const row = await db
      .select({ n: sql<number>`count(*)` })
      .from(asmGroups)
      .where(eq(asmGroups.tenantId, tenantId))
      .get();
    return row?.n ?? 0;
  }

  async function groupNameTaken(name: string, exceptId?: number): Promise<boolean> {
    const row = await db
      .select({ id: asmGroups.id })
      .from(asmGroups)
      .where(and(eq(asmGroups.tenantId, tenantId), eq(asmGroups.name, name)))
      .get();
    return row !== undefined && row.id !== exceptId;
  }

  async function createGroup(
    g: { name: string; description: string; isDefault: boolean },
    now: number,
  ): Promise<AsmGroupRow> {
    const insert = db
      .insert(asmGroups)
      .values({ tenantId, ...g, createdAt: now })
      .returning();
    if (!g.isDefault) return (await insert)[0]!;
    const [, inserted] = await db.batch([clearDefault(db, tenantId, null), insert]);
    return inserted[0]!;
  }

  async function updateGroup(
    id: number,
    patch: { name?: string; description?: string; isDefault?: boolean },
  ): Promise<AsmGroupRow | undefined> {
    const update = db
      .update(asmGroups)
      .set(patch)
      .where(and(eq(asmGroups.tenantId, tenantId), eq(asmGroups.id, id)))
      .returning();
    if (patch.isDefault !== true) return (await update)[0];
    const [, updated] = await db.batch([clearDefault(db, tenantId, id), update]);
    return updated[0];
  }

  /** Deletes the group and its unsubscribes (one batch); false when the tenant has no such group. */
  async function deleteGroup(id: number): Promise<boolean> {
    const [, deleted] = await db.batch([
      db
        .delete(asmGroupSuppressions)
        .where(and(eq(asmGroupSuppressions.tenantId, tenantId), eq(asmGroupSuppressions.groupId, id))),
      db
        .delete(asmGroups)
        .where(and(eq(asmGroups.tenantId, tenantId), eq(asmGroups.id, id)))
        .returning({ id: asmGroups.id }),
    ]);
    return deleted.length > 0;
  }

  /** Name and description of the tenant's groups among `ids` (the unsubscribe page), in `ids` order. */
  async function listGroupsForPage(
    ids: number[],
  ): Promise<{ id: number; name: string; description: string }[]> {
    if (ids.length === 0) return [];
    const rows = await db
      .select({ id: asmGroups.id, name: asmGroups.name, description: asmGroups.description })
      .from(asmGroups)
      .where(and(eq(asmGroups.tenantId, tenantId), inArray(asmGroups.id, [...new Set(ids)].slice(0, 90))))
      .all();
    const byId = new Map(rows.map((r) => [r.id, r]));
    return [...new Set(ids)].flatMap((id) => byId.get(id) ?? []);
  }

  /**
   * Adds addresses to a group's unsubscribes. False when the tenant has no such group (nothing is
   * written: the insert selects the group row, so a group deleted meanwhile gets nothing either).
   */
  async function addGroupSuppressions(groupId: number, emails: string[], at: number): Promise<boolean> {
    const all = [...new Set(emails.map(normalizeEmail))];
    if (!(await getGroup(groupId))) return false;
    const statements: D1PreparedStatement[] = [];
    for (let i = 0; i < all.length; i += INSERT_CHUNK) {
      const json = JSON.stringify(all.slice(i, i + INSERT_CHUNK));
      statements.push(db.$client.prepare(ADD_GROUP_SQL).bind(tenantId, groupId, at, json));
    }
    if (statements.length > 0) await db.$client.batch(statements);
    return true;
  }

  /** One address out of one group (the unsubscribe page). False when the tenant has no such group. */
  async function unsubscribeFromGroup(groupId: number, email: string, at: number): Promise<boolean> {
    return addGroupSuppressions(groupId, [email], at);
  }

  /** Takes one address off one group's unsubscribes; true when it was there. */
  async function resubscribeToGroup(groupId: number, email: string): Promise<boolean> {
    const r = await db
      .delete(asmGroupSuppressions)
      .where(
        and(
          eq(asmGroupSuppressions.tenantId, tenantId),
          eq(asmGroupSuppressions.email, normalizeEmail(email)),
          eq(asmGroupSuppressions.groupId, groupId),
        ),
      )
      .run();
    return (r.meta.changes ?? 0) > 0;
  }

  /** The ids of the tenant's groups `email` has unsubscribed from. */
  async function groupSuppressionsOf(email: string): Promise<number[]> {
    const rows = await db
      .select({ groupId: asmGroupSuppressions.groupId })
      .from(asmGroupSuppressions)
      .where(
        and(
          eq(asmGroupSuppressions.tenantId, tenantId),
          eq(asmGroupSuppressions.email, normalizeEmail(email)),
        ),
      )
      .orderBy(asc(asmGroupSuppressions.groupId))
      .all();
    return rows.map((r) => r.groupId);
  }

  /**
   * A group's unsubscribed addresses, oldest first; `emailPrefix` (the dashboard's search) keeps
   * those starting with it, `%` a wildcard as in the lists' `email` filter.
   */
  async function listGroupSuppressions(
    groupId: number,
    page: { limit: number; offset: number; emailPrefix?: string },
  ): Promise<string[]> {
    const where: SQL[] = [
      eq(asmGroupSuppressions.tenantId, tenantId),
      eq(asmGroupSuppressions.groupId, groupId),
    ];
    if (page.emailPrefix !== undefined)
      where.push(sql`${asmGroupSuppressions.email} LIKE ${prefixPattern(page.emailPrefix)} ESCAPE '\\'`);
    const rows = await db
      .select({ email: asmGroupSuppressions.email })
      .from(asmGroupSuppressions)
      .where(and(...where))
      .orderBy(asc(asmGroupSuppressions.createdAt), asc(asmGroupSuppressions.email))
      .limit(page.limit)
      .offset(page.offset)
      .all();
    return rows.map((r) => r.email);
  }

  /** Which of `emails` are unsubscribed from the group (lower-cased, in the order given). */
  async function searchGroupSuppressions(groupId: number, emails: string[]): Promise<string[]> {
    const wanted = [...new Set(emails.map(normalizeEmail))];
    const rows = await db.all<{
      email: string;
    }>(sql`SELECT s.email AS email FROM json_each(${JSON.stringify(wanted)}) AS j
      JOIN asm_group_suppressions AS s ON s.tenant_id = ${tenantId} AND s.email = j.value AND s.group_id = ${groupId}`);
    const found = new Set(rows.map((r) => r.email));
    return wanted.filter((e) => found.has(e));
  }

  /** Every group unsubscribe of the tenant, newest first, with the group's name. */
  async function listAllGroupSuppressions(page: {
    limit: number;
    offset: number;
  }): Promise<{ email: string; groupId: number; groupName: string; createdAt: number }[]> {
    return db
      .select({
        email: asmGroupSuppressions.email,
        groupId: asmGroupSuppressions.groupId,
        groupName: asmGroups.name,
        createdAt: asmGroupSuppressions.createdAt,
      })
      .from(asmGroupSuppressions)
      .innerJoin(asmGroups, eq(asmGroups.id, asmGroupSuppressions.groupId))
      .where(eq(asmGroupSuppressions.tenantId, tenantId))
      .orderBy(
        desc(asmGroupSuppressions.createdAt),
        asc(asmGroupSuppressions.email),
        asc(asmGroupSuppressions.groupId),
      )
      .limit(page.limit)
      .offset(page.offset)
      .all();
  }

  /**
   * One page of a list for the CSV export, oldest first, after the (created_at, email) cursor:
   * keyset paging on `suppressions_tenant_list_created`, so an export of a long list reads each row once.
   */
  async function exportPage(
    list: SuppressionList,
    after: { createdAt: number; email: string } | null,
    n: number,
    q: Omit<ListQuery, "limit" | "offset">,
  ): Promise<SuppressionRow[]> {
    const where: SQL[] = [eq(suppressions.tenantId, tenantId), eq(suppressions.list, list)];
    if (after)
      where.push(
        sql`(${suppressions.createdAt}, ${suppressions.email}) > (${after.createdAt}, ${after.email})`,
      );
    if (q.startTime !== undefined) where.push(gte(suppressions.createdAt, q.startTime));
    if (q.endTime !== undefined) where.push(lte(suppressions.createdAt, q.endTime));
    if (q.emailPrefix !== undefined)
      where.push(sql`${suppressions.email} LIKE ${prefixPattern(q.emailPrefix)} ESCAPE '\\'`);
    return db
      .select()
      .from(suppressions)
      .where(and(...where))
      .orderBy(asc(suppressions.createdAt), asc(suppressions.email))
      .limit(n)
      .all();
  }

  /** Many global unsubscribes in one statement per 5,000; an address already there keeps its first time. */
  async function unsubscribeGloballyMany(emails: string[], at: number): Promise<void> {
    const all = [...new Set(emails.map(normalizeEmail))];
    const statements: D1PreparedStatement[] = [];
    for (let i = 0; i < all.length; i += INSERT_CHUNK)
      statements.push(
        db.$client
          .prepare(ADD_UNSUBSCRIBES_SQL)
          .bind(tenantId, at, JSON.stringify(all.slice(i, i + INSERT_CHUNK))),
      );
    if (statements.length > 0) await db.$client.batch(statements);
  }

  return {
    listSuppressions,
    getSuppression,
    addSuppressions,
    deleteSuppressions,
    deleteAllSuppressions,
    unsubscribeGlobally,
    isGloballyUnsubscribed,
    getGroup,
    getGroupWithCount,
    listGroups,
    countGroups,
    groupNameTaken,
    createGroup,
    updateGroup,
    deleteGroup,
    listGroupsForPage,
    addGroupSuppressions,
    unsubscribeFromGroup,
    resubscribeToGroup,
    groupSuppressionsOf,
    listGroupSuppressions,
    searchGroupSuppressions,
    listAllGroupSuppressions,
    exportPage,
    unsubscribeGloballyMany,
  };
}
