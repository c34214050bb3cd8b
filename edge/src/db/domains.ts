import { and, asc, count, eq, gt, inArray, isNull, type SQL } from "drizzle-orm";
import type { Db } from "./client.ts";
import { senderDomains } from "./schema.ts";

export type DomainRow = typeof senderDomains.$inferSelect;

/**
 * Operator-only, across tenants (SECRETS_KEY rotation): the sealed DKIM keys (both columns) of up to `limit`
 * domains with ids after `afterId`, in id order, so a rotation can walk every row page by page.
 */
export async function listDomainKeysAfter(
  db: Db,
  afterId: string | null,
  limit: number,
): Promise<
  Pick<
    DomainRow,
    | "id"
    | "tenantId"
    | "domain"
    | "dkimPrivateKeyEnc"
    | "dkimEd25519PrivateKeyEnc"
    | "dkimNextSelector"
    | "dkimNextPrivateKeyEnc"
  >[]
> {
  return db
    .select({
      id: senderDomains.id,
      tenantId: senderDomains.tenantId,
      domain: senderDomains.domain,
      dkimPrivateKeyEnc: senderDomains.dkimPrivateKeyEnc,
      dkimEd25519PrivateKeyEnc: senderDomains.dkimEd25519PrivateKeyEnc,
      dkimNextSelector: senderDomains.dkimNextSelector,
      dkimNextPrivateKeyEnc: senderDomains.dkimNextPrivateKeyEnc,
    })
    .from(senderDomains)
    .where(afterId === null ? undefined : gt(senderDomains.id, afterId))
    .orderBy(asc(senderDomains.id))
    .limit(limit);
}

export interface SealedKeyReplacement {
  id: string;
  /** Which column: the RSA key, the Ed25519 one, or a pending rotation's key (RSA or Ed25519). */
  key: "rsa" | "ed25519" | "rsa_next";
  /** The value read before re-sealing; the row is left alone if it no longer holds it. */
  expected: string;
  next: string;
}

/** Writes re-sealed keys in one D1 batch (compare-and-set per row); returns how many rows changed. */
export async function replaceSealedKeys(db: Db, replacements: SealedKeyReplacement[]): Promise<number> {
  if (replacements.length === 0) return 0;
  const statements = replacements.map((r) => {
    const column =
      r.key === "rsa"
        ? senderDomains.dkimPrivateKeyEnc
        : r.key === "ed25519"
          ? senderDomains.dkimEd25519PrivateKeyEnc
          : senderDomains.dkimNextPrivateKeyEnc;
    return db
      .update(senderDomains)
      .set(
        r.key === "rsa"
          ? { dkimPrivateKeyEnc: r.next }
          : r.key === "ed25519"
            ? { dkimEd25519PrivateKeyEnc: r.next }
            : { dkimNextPrivateKeyEnc: r.next },
      )
      .where(and(eq(senderDomains.id, r.id), eq(column, r.expected)))
      .returning({ id: senderDomains.id });
  });
  const results = await db.batch(statements as [(typeof statements)[number], ...typeof statements]);
  return results.reduce((n, rows) => n + rows.length, 0);
}

/**
 * One tenant's domains: every query below is built from the tenant this was opened for, so another
 * tenant's rows are simply not there (a 404 upstream, like a made-up id).
 */
export function tenantDomains(db: Db, tenantId: string) {
  async function getDomain(id: string): Promise<DomainRow | undefined> {
    return db
      .select()
      .from(senderDomains)
      .where(and(eq(senderDomains.tenantId, tenantId), eq(senderDomains.id, id)))
      .get();
  }

  async function findDomainByName(domain: string): Promise<DomainRow | undefined> {
    return db
      .select()
      .from(senderDomains)
      .where(and(eq(senderDomains.tenantId, tenantId), eq(senderDomains.domain, domain)))
      .get();
  }

  async function findDomainsByNames(domains: string[]): Promise<DomainRow[]> {
    if (domains.length === 0) return [];
    return db
      .select()
      .from(senderDomains)
      .where(and(eq(senderDomains.tenantId, tenantId), inArray(senderDomains.domain, domains)));
  }

  /**
   * Updates one of the tenant's domains. `expect` makes it a compare-and-set on the pending DKIM
   * selector (services/dkim-rotation.ts): the row is changed only while it still holds that value.
   */
  async function updateDomain(
    id: string,
    patch: Partial<typeof senderDomains.$inferInsert>,
    expect?: { dkimNextSelector: string | null },
  ): Promise<DomainRow | undefined> {
    const conditions: SQL[] = [eq(senderDomains.tenantId, tenantId), eq(senderDomains.id, id)];
    if (expect) {
      conditions.push(
        expect.dkimNextSelector === null
          ? isNull(senderDomains.dkimNextSelector)
          : eq(senderDomains.dkimNextSelector, expect.dkimNextSelector),
      );
    }
    const [row] = await db
      .update(senderDomains)
      .set(patch)
      .where(and(...conditions))
      .returning();
    return row;
  }

  /** One page of the tenant's domains, in id (creation) order after `afterId`, and the tenant's total. */
  async function listDomains(
    afterId: string | null,
    limit: number,
  ): Promise<{ rows: DomainRow[]; total: number }> {
    const [rows, totals] = await Promise.all([
      db
        .select()
        .from(senderDomains)
        .where(
          and(
            eq(senderDomains.tenantId, tenantId),
            afterId === null ? undefined : gt(senderDomains.id, afterId),
          ),
        )
        .orderBy(asc(senderDomains.id))
        .limit(limit),
      db.select({ n: count() }).from(senderDomains).where(eq(senderDomains.tenantId, tenantId)),
    ]);
    return { rows, total: totals[0]?.n ?? 0 };
  }

  /** Deletes one of the tenant's domains; false when it has none with that id. */
  async function deleteDomain(id: string): Promise<DomainRow | undefined> {
    const [row] = await db
      .delete(senderDomains)
      .where(and(eq(senderDomains.tenantId, tenantId), eq(senderDomains.id, id)))
      .returning();
    return row;
  }

  /** The row goes in under this tenant, whatever `tenantId` it carries. */
  async function insertDomain(row: Omit<typeof senderDomains.$inferInsert, "tenantId">): Promise<DomainRow> {
    const [created] = await db
      .insert(senderDomains)
      .values({ ...row, tenantId })
      .returning();
    return created!;
  }

  return {
    getDomain,
    findDomainByName,
    findDomainsByNames,
    updateDomain,
    listDomains,
    deleteDomain,
    insertDomain,
  };
}
