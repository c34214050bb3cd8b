import { and, desc, eq, isNull, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { apiKeys, tenants } from "./schema.ts";

export type ApiKeyRow = typeof apiKeys.$inferSelect;

/**
 * Looks a key up by its SHA-256; the hash is the only thing stored, so this is the whole check.
 * Cross-tenant by design: authentication, where the hash is all a request brings.
 */
export async function findApiKeyByHash(db: Db, keyHash: string) {
  return db
    .select({ key: apiKeys, tenantStatus: tenants.status })
    .from(apiKeys)
    .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
    .where(eq(apiKeys.keyHash, keyHash))
    .get();
}

/** After authentication (by the key's own id, which the hash lookup just returned): last_used_at. */
export async function touchApiKey(db: Db, id: string, now: number): Promise<void> {
  await db.update(apiKeys).set({ lastUsedAt: now }).where(eq(apiKeys.id, id));
}

/**
 * One tenant's keys (/v3/api_keys, docs/api/sendgrid.md#api-keys): every query below is built from
 * the tenant it was opened for, so a key of another tenant is simply not there (→ 404 upstream).
 */
export function tenantApiKeys(db: Db, tenantId: string) {
  const own = (id: string) => and(eq(apiKeys.tenantId, tenantId), eq(apiKeys.id, id));
  return {
    /** Newest first; revoked keys only when asked for. */
    list(opts: { includeRevoked: boolean; limit: number }): Promise<ApiKeyRow[]> {
      const where = opts.includeRevoked
        ? eq(apiKeys.tenantId, tenantId)
        : and(eq(apiKeys.tenantId, tenantId), isNull(apiKeys.revokedAt));
      return db.select().from(apiKeys).where(where).orderBy(desc(apiKeys.id)).limit(opts.limit).all();
    },

    get(id: string): Promise<ApiKeyRow | undefined> {
      return db.select().from(apiKeys).where(own(id)).get();
    },

    /** A new key of this tenant (the row cannot name another: its tenant is the one opened here). */
    async insert(row: Omit<typeof apiKeys.$inferInsert, "tenantId">): Promise<ApiKeyRow> {
      const [created] = await db
        .insert(apiKeys)
        .values({ ...row, tenantId })
        .returning();
      return created!;
    },

    /**
     * Inserts the key unless the tenant already holds `maxActive` keys that are not revoked; one
     * statement, so concurrent creates cannot overshoot the cap. False when the cap refused it.
     */
    async insertCapped(row: ApiKeyRow, maxActive: number): Promise<boolean> {
      const result = await db.run(sql`
        INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, environment, scopes, created_at, last_used_at, expires_at, revoked_at)
        SELECT ${row.id}, ${tenantId}, ${row.name}, ${row.prefix}, ${row.keyHash}, ${row.environment},
               ${JSON.stringify(row.scopes)}, ${row.createdAt}, NULL, ${row.expiresAt}, NULL
        WHERE (SELECT count(*) FROM api_keys WHERE tenant_id = ${tenantId} AND revoked_at IS NULL) < ${maxActive}`);
      return result.meta.changes === 1;
    },

    /**
     * Changes a key that is not revoked; undefined if there is none with this id. With `unchanged`,
     * only if its secret and scopes are still the ones the caller checked (a rotation must not hand
     * out a secret for scopes that a concurrent PUT added after the check).
     */
    update(
      id: string,
      set: Partial<Pick<ApiKeyRow, "name" | "scopes" | "prefix" | "keyHash" | "lastUsedAt" | "revokedAt">>,
      unchanged?: Pick<ApiKeyRow, "keyHash" | "scopes">,
    ): Promise<ApiKeyRow | undefined> {
      const guard = unchanged
        ? and(eq(apiKeys.keyHash, unchanged.keyHash), eq(apiKeys.scopes, unchanged.scopes))
        : undefined;
      return db
        .update(apiKeys)
        .set(set)
        .where(and(own(id), isNull(apiKeys.revokedAt), guard))
        .returning()
        .get();
    },
  };
}
