/**
 * D1 queries for batches and their scheduled-send state (docs/api/sendgrid.md#scheduling-and-batches).
 * Every query is built from the tenant `tenantBatches` was opened for: another tenant's batch id
 * finds nothing, exactly like a made-up one.
 * A state is set with one conditional statement (D1 runs each statement atomically), so two
 * concurrent requests can neither both create a state for one batch nor pass the limit together.
 */
import { and, asc, eq, isNotNull, isNull, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { batches, type ScheduledSendStatus } from "./schema.ts";

export type BatchRow = typeof batches.$inferSelect;

/**
 * One tenant's batches: every query below is built from the tenant this was opened for, so another
 * tenant's rows are simply not there (a 404 upstream, like a made-up id).
 */
export function tenantBatches(db: Db, tenantId: string) {
  async function insertBatch(id: string, now: number): Promise<void> {
    await db.insert(batches).values({ id, tenantId, scheduledStatus: null, createdAt: now, updatedAt: now });
  }

  async function getBatch(id: string): Promise<BatchRow | undefined> {
    return db
      .select()
      .from(batches)
      .where(and(eq(batches.tenantId, tenantId), eq(batches.id, id)))
      .get();
  }

  /** The tenant's batches that have a pause or cancel, oldest state first. */
  async function listScheduled(): Promise<BatchRow[]> {
    return db
      .select()
      .from(batches)
      .where(and(eq(batches.tenantId, tenantId), isNotNull(batches.scheduledStatus)))
      .orderBy(asc(batches.updatedAt), asc(batches.id))
      .all();
  }

  /**
   * Gives a batch without a state the state `status`, unless the tenant has `limit` states already.
   * True when it was set; false when the batch is unknown, has a state, or the limit is reached
   * (the caller reads the batch to say which).
   */
  async function createScheduled(
    id: string,
    status: ScheduledSendStatus,
    limit: number,
    now: number,
  ): Promise<boolean> {
    const rows = await db
      .update(batches)
      .set({ scheduledStatus: status, updatedAt: now })
      .where(
        and(
          eq(batches.tenantId, tenantId),
          eq(batches.id, id),
          isNull(batches.scheduledStatus),
          sql`(SELECT count(*) FROM ${batches} b WHERE b.tenant_id = ${tenantId} AND b.scheduled_status IS NOT NULL) < ${limit}`,
        ),
      )
      .returning({ id: batches.id });
    return rows.length > 0;
  }

  /** Changes an existing state (PATCH) or removes it (`null`, DELETE); false when the batch has no state. */
  async function changeScheduled(
    id: string,
    status: ScheduledSendStatus | null,
    now: number,
  ): Promise<boolean> {
    const rows = await db
      .update(batches)
      .set({ scheduledStatus: status, updatedAt: now })
      .where(and(eq(batches.tenantId, tenantId), eq(batches.id, id), isNotNull(batches.scheduledStatus)))
      .returning({ id: batches.id });
    return rows.length > 0;
  }

  return { insertBatch, getBatch, listScheduled, createScheduled, changeScheduled };
}
