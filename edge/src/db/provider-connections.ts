/**
 * One tenant's provider connections (docs/channels.md#provider-connections). Built like
 * `tenantApiKeys`: every query below is made from the tenant it was opened for, so another
 * tenant's connection is simply not there (→ 404 upstream).
 */
import { and, asc, eq, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { providerConnections, skTemplates } from "./schema.ts";

export type ProviderConnectionRow = typeof providerConnections.$inferSelect;
export type ConnectionChannel = ProviderConnectionRow["channel"];

export function tenantProviderConnections(db: Db, tenantId: string) {
  const own = (id: string) => and(eq(providerConnections.tenantId, tenantId), eq(providerConnections.id, id));
  return {
    /** Oldest first, optionally of one channel. */
    list(channel?: ConnectionChannel): Promise<ProviderConnectionRow[]> {
      const where = channel
        ? and(eq(providerConnections.tenantId, tenantId), eq(providerConnections.channel, channel))
        : eq(providerConnections.tenantId, tenantId);
      // Ids are random UUIDs (SenderKit's providerConnectionId is one), so age is created_at.
      return db
        .select()
        .from(providerConnections)
        .where(where)
        .orderBy(asc(providerConnections.createdAt), asc(providerConnections.id))
        .all();
    },

    get(id: string): Promise<ProviderConnectionRow | undefined> {
      return db.select().from(providerConnections).where(own(id)).get();
    },

    /** The channel's default connection, if it has one. */
    defaultFor(channel: ConnectionChannel): Promise<ProviderConnectionRow | undefined> {
      return db
        .select()
        .from(providerConnections)
        .where(
          and(
            eq(providerConnections.tenantId, tenantId),
            eq(providerConnections.channel, channel),
            eq(providerConnections.isDefault, true),
          ),
        )
        .get();
    },

    /**
     * Inserts the connection; as the default, the channel's previous default stops being one in the
     * same batch (the partial unique index allows one default per channel). False: the name is taken.
     */
    async insert(row: ProviderConnectionRow): Promise<boolean> {
      const insert = db.insert(providerConnections).values({ ...row, tenantId });
      try {
        if (row.isDefault) await db.batch([this.clearDefault(row.channel, row.updatedAt), insert]);
        else await insert;
        return true;
      } catch (err) {
        if (String(err).includes("provider_connections.name")) return false;
        throw err;
      }
    },

    clearDefault(channel: ConnectionChannel, now: number) {
      return db
        .update(providerConnections)
        .set({ isDefault: false, updatedAt: now })
        .where(
          and(
            eq(providerConnections.tenantId, tenantId),
            eq(providerConnections.channel, channel),
            eq(providerConnections.isDefault, true),
          ),
        );
    },

    /** Renames or re-seals a connection; undefined if there is none with this id. */
    update(
      id: string,
      set: Partial<Pick<ProviderConnectionRow, "name" | "settings" | "hints" | "credentialsSealed">> & {
        updatedAt: number;
      },
    ): Promise<ProviderConnectionRow | undefined> {
      return db.update(providerConnections).set(set).where(own(id)).returning().get();
    },

    /** Makes the connection its channel's default (the previous one stops being it), in one batch. */
    async makeDefault(row: ProviderConnectionRow, now: number): Promise<void> {
      await db.batch([
        this.clearDefault(row.channel, now),
        db.update(providerConnections).set({ isDefault: true, updatedAt: now }).where(own(row.id)),
      ]);
    },

    /** Slugs of the tenant's SenderKit templates that name this connection. */
    async templatesUsing(id: string): Promise<string[]> {
      const rows = await db
        .select({ slug: skTemplates.slug })
        .from(skTemplates)
        .where(and(eq(skTemplates.tenantId, tenantId), eq(skTemplates.providerConnectionId, id)))
        .all();
      return rows.map((r) => r.slug);
    },

    /**
     * Deletes the connection unless a template names it (checked in the same statement, so a
     * template set to it meanwhile keeps it). False: not deleted (absent, or in use).
     */
    async remove(id: string): Promise<boolean> {
      const r = await db.run(sql`
        DELETE FROM provider_connections WHERE tenant_id = ${tenantId} AND id = ${id}
          AND NOT EXISTS (SELECT 1 FROM sk_templates WHERE tenant_id = ${tenantId} AND provider_connection_id = ${id})`);
      return r.meta.changes === 1;
    },

    /** Sets (or clears, null) a SenderKit template's override; false when the template is not the tenant's. */
    async setTemplateOverride(
      templateId: string,
      connectionId: string | null,
      now: number,
    ): Promise<boolean> {
      const r = await db
        .update(skTemplates)
        .set({ providerConnectionId: connectionId, updatedAt: now })
        .where(and(eq(skTemplates.tenantId, tenantId), eq(skTemplates.id, templateId)))
        .returning({ id: skTemplates.id })
        .get();
      return r !== undefined;
    },

    /** A template's override, by its slug (lowercase, as stored). */
    async templateOverride(slug: string): Promise<string | null> {
      const r = await db
        .select({ id: skTemplates.providerConnectionId })
        .from(skTemplates)
        .where(and(eq(skTemplates.tenantId, tenantId), eq(skTemplates.slug, slug.toLowerCase())))
        .get();
      return r?.id ?? null;
    },
  };
}

/** Every tenant's connections after a given id, for the SECRETS_KEY re-seal (services/secrets-reseal.ts). */
export function connectionsPage(db: Db, after: string, limit: number): Promise<ProviderConnectionRow[]> {
  return db
    .select()
    .from(providerConnections)
    .where(after === "" ? undefined : sql`${providerConnections.id} > ${after}`)
    .orderBy(asc(providerConnections.id))
    .limit(limit)
    .all();
}

/** The re-seal's write: only if the row still holds the value that was re-sealed. */
export async function replaceSealed(
  db: Db,
  row: Pick<ProviderConnectionRow, "id" | "tenantId" | "credentialsSealed">,
  sealed: string,
): Promise<boolean> {
  const r = await db
    .update(providerConnections)
    .set({ credentialsSealed: sealed })
    .where(
      and(
        eq(providerConnections.tenantId, row.tenantId),
        eq(providerConnections.id, row.id),
        eq(providerConnections.credentialsSealed, row.credentialsSealed),
      ),
    )
    .returning({ id: providerConnections.id })
    .get();
  return r !== undefined;
}
