import { eq } from "drizzle-orm";
import type { Db } from "./client.ts";
import { tenants } from "./schema.ts";

export type TenantRow = typeof tenants.$inferSelect;

export async function insertTenant(db: Db, row: typeof tenants.$inferInsert): Promise<TenantRow> {
  const [created] = await db.insert(tenants).values(row).returning();
  return created!;
}

export async function getTenant(db: Db, id: string): Promise<TenantRow | undefined> {
  return db.select().from(tenants).where(eq(tenants.id, id)).get();
}
