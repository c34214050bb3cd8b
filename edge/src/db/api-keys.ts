import { eq } from "drizzle-orm";
import type { Db } from "./client.ts";
import { apiKeys, tenants } from "./schema.ts";

export type ApiKeyRow = typeof apiKeys.$inferSelect;

export async function insertApiKey(db: Db, row: typeof apiKeys.$inferInsert): Promise<ApiKeyRow> {
  const [created] = await db.insert(apiKeys).values(row).returning();
  return created!;
}

/** Looks a key up by its SHA-256; the hash is the only thing stored, so this is the whole check. */
export async function findApiKeyByHash(db: Db, keyHash: string) {
  return db
    .select({ key: apiKeys, tenantStatus: tenants.status })
    .from(apiKeys)
    .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
    .where(eq(apiKeys.keyHash, keyHash))
    .get();
}

export async function touchApiKey(db: Db, id: string, now: number): Promise<void> {
  await db.update(apiKeys).set({ lastUsedAt: now }).where(eq(apiKeys.id, id));
}
