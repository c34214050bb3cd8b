import { and, eq, inArray } from "drizzle-orm";
import type { Db } from "./client.ts";
import { senderDomains } from "./schema.ts";

export type DomainRow = typeof senderDomains.$inferSelect;

export async function insertDomain(db: Db, row: typeof senderDomains.$inferInsert): Promise<DomainRow> {
  const [created] = await db.insert(senderDomains).values(row).returning();
  return created!;
}

export async function getDomain(db: Db, tenantId: string, id: string): Promise<DomainRow | undefined> {
  return db
    .select()
    .from(senderDomains)
    .where(and(eq(senderDomains.tenantId, tenantId), eq(senderDomains.id, id)))
    .get();
}

export async function findDomainByName(
  db: Db,
  tenantId: string,
  domain: string,
): Promise<DomainRow | undefined> {
  return db
    .select()
    .from(senderDomains)
    .where(and(eq(senderDomains.tenantId, tenantId), eq(senderDomains.domain, domain)))
    .get();
}

export async function findDomainsByNames(db: Db, tenantId: string, domains: string[]): Promise<DomainRow[]> {
  if (domains.length === 0) return [];
  return db
    .select()
    .from(senderDomains)
    .where(and(eq(senderDomains.tenantId, tenantId), inArray(senderDomains.domain, domains)));
}

export async function updateDomain(
  db: Db,
  tenantId: string,
  id: string,
  patch: Partial<typeof senderDomains.$inferInsert>,
): Promise<DomainRow | undefined> {
  const [row] = await db
    .update(senderDomains)
    .set(patch)
    .where(and(eq(senderDomains.tenantId, tenantId), eq(senderDomains.id, id)))
    .returning();
  return row;
}
