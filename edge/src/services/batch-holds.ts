/**
 * Pauses and cancels in a hub shard (docs/api/sendgrid.md#scheduling-and-batches): which of its
 * messages belong to a batch, the batches the tenant paused or cancelled, and which messages are
 * cancelled. The OriginHub calls these on its own SQLite storage; all of it runs inside the object,
 * so a pause or cancel and a dispatch never interleave (the object is single-threaded).
 *
 * Tables (created on first use, beside the outbox):
 *  - `outbox_batch` (message id → tenant, batch): only messages sent with a `batch_id`;
 *  - `batch_holds` (tenant, batch → pause | cancel): what /v3/user/scheduled_sends set, as every
 *    shard was told, so a message accepted later into a held batch is held or cancelled at once;
 *  - `outbox_cancel` (message id → reason, final status): a message the user ended, cancelled (a
 *    cancel) or `failed` (POST /v3/messages/{id}/fail), until its outcome is in D1. It is
 *    the durable mark: a failed D1 write or a restart puts the row back to `cancelled`, never `ready`.
 * A held row is in outbox state `held`, a cancelled one in `cancelled` (then `recording` while its
 * outcome is written): neither is ever due, so the due query, queue-age expiry and leases skip them.
 */
import type { ScheduledSendStatus } from "../db/schema.ts";
import type { ResultPlan } from "./result-plan.ts";
import type { NewEvent } from "../db/messages.ts";

/** Storages whose tables exist already (one CREATE per object instance, not per call). */
const ready = new WeakSet<SqlStorage>();

export function ensureBatchTables(sql: SqlStorage): void {
  if (ready.has(sql)) return;
  sql.exec(`CREATE TABLE IF NOT EXISTS outbox_batch (
    message_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    batch_id TEXT NOT NULL
  )`);
  sql.exec("CREATE INDEX IF NOT EXISTS outbox_batch_of ON outbox_batch(tenant_id, batch_id)");
  sql.exec(`CREATE TABLE IF NOT EXISTS batch_holds (
    tenant_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (tenant_id, batch_id)
  )`);
  sql.exec(`CREATE TABLE IF NOT EXISTS outbox_cancel (
    message_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'cancelled'
  )`);
  // The table's first layout had no status (every mark was a cancel).
  const columns = sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('outbox_cancel')").toArray();
  if (!columns.some((c) => c.name === "status")) {
    sql.exec("ALTER TABLE outbox_cancel ADD COLUMN status TEXT NOT NULL DEFAULT 'cancelled'");
  }
  ready.add(sql);
}

export const CANCELLED_BY_BATCH = "Cancelled: its batch was cancelled (/v3/user/scheduled_sends)";
export const CANCELLED_BY_REQUEST = "Cancelled before it was sent (POST /v3/messages/{id}/cancel)";
export const FAILED_BY_REQUEST = "Marked failed before it was sent (POST /v3/messages/{id}/fail)";

export const EXPIRED_WHILE_PAUSED =
  "Expired while its batch was paused: not resumed within the maximum queue age after its send_at";

/** How a message the user ended is recorded: cancelled, or failed (/fail). */
export type EndedStatus = "cancelled" | "failed";

export function holdOf(sql: SqlStorage, tenantId: string, batchId: string): ScheduledSendStatus | null {
  ensureBatchTables(sql);
  const row = sql
    .exec<{ status: ScheduledSendStatus }>(
      "SELECT status FROM batch_holds WHERE tenant_id = ? AND batch_id = ?",
      tenantId,
      batchId,
    )
    .toArray()[0];
  return row?.status ?? null;
}

/** Records (or, with null, removes) a batch's state in this shard. */
export function recordHold(
  sql: SqlStorage,
  tenantId: string,
  batchId: string,
  status: ScheduledSendStatus | null,
): void {
  ensureBatchTables(sql);
  if (status === null) {
    sql.exec("DELETE FROM batch_holds WHERE tenant_id = ? AND batch_id = ?", tenantId, batchId);
    return;
  }
  sql.exec(
    `INSERT INTO batch_holds (tenant_id, batch_id, status) VALUES (?, ?, ?)
     ON CONFLICT(tenant_id, batch_id) DO UPDATE SET status = excluded.status`,
    tenantId,
    batchId,
    status,
  );
}

/**
 * A message accepted with a batch id: noted in its batch, and held (`pause`) or cancelled (`cancel`)
 * at once when its batch has that state here. Returns what was done.
 */
export function placeInBatch(
  sql: SqlStorage,
  messageId: string,
  tenantId: string,
  batchId: string,
): ScheduledSendStatus | null {
  ensureBatchTables(sql);
  sql.exec(
    "INSERT INTO outbox_batch (message_id, tenant_id, batch_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    messageId,
    tenantId,
    batchId,
  );
  const hold = holdOf(sql, tenantId, batchId);
  if (hold === "pause") sql.exec("UPDATE outbox SET state = 'held' WHERE message_id = ?", messageId);
  if (hold === "cancel") markCancelled(sql, [messageId], CANCELLED_BY_BATCH);
  return hold;
}

/** Rows (ready or held, so with no origin) move to `cancelled`, with the durable mark. */
export function markCancelled(
  sql: SqlStorage,
  messageIds: string[],
  reason: string,
  status: EndedStatus = "cancelled",
): string[] {
  ensureBatchTables(sql);
  if (messageIds.length === 0) return [];
  const ids = JSON.stringify(messageIds);
  const moved = sql
    .exec<{ message_id: string }>(
      `UPDATE outbox SET state = 'cancelled' WHERE message_id IN (SELECT value FROM json_each(?))
         AND state IN ('ready', 'held') RETURNING message_id`,
      ids,
    )
    .toArray()
    .map((r) => r.message_id);
  for (const id of moved) {
    sql.exec(
      "INSERT OR REPLACE INTO outbox_cancel (message_id, reason, status) VALUES (?, ?, ?)",
      id,
      reason,
      status,
    );
  }
  return moved;
}

/** The rows of a batch in this shard that no origin holds (ready or held). */
export function idleRowsOfBatch(sql: SqlStorage, tenantId: string, batchId: string): string[] {
  ensureBatchTables(sql);
  return sql
    .exec<{ message_id: string }>(
      `SELECT o.message_id FROM outbox_batch b JOIN outbox o ON o.message_id = b.message_id
       WHERE b.tenant_id = ? AND b.batch_id = ? AND o.state IN ('ready', 'held')`,
      tenantId,
      batchId,
    )
    .toArray()
    .map((r) => r.message_id);
}

/** Ready rows of a batch → held; held rows → ready (`resume`). Returns how many moved. */
export function holdBatch(sql: SqlStorage, tenantId: string, batchId: string, hold: boolean): number {
  ensureBatchTables(sql);
  const [from, to] = hold ? ["ready", "held"] : ["held", "ready"];
  return sql
    .exec(
      `UPDATE outbox SET state = ? WHERE state = ? AND message_id IN
         (SELECT message_id FROM outbox_batch WHERE tenant_id = ? AND batch_id = ?) RETURNING message_id`,
      to,
      from,
      tenantId,
      batchId,
    )
    .toArray().length;
}

/**
 * Of rows about to be dispatched, the ones whose batch is paused or cancelled here. While no batch
 * of this shard is (batch_holds is empty, the usual case) that is one O(1) read per dispatch: the
 * check used to search each row's entry JSON for `"batchId"` instead, a scan of kilobytes per
 * message that was the largest single cost of dispatch in the hub's CPU profile (docs/performance.md).
 */
export function heldAmong(sql: SqlStorage, rows: { message_id: string }[]): Map<string, ScheduledSendStatus> {
  const out = new Map<string, ScheduledSendStatus>();
  if (rows.length === 0) return out;
  ensureBatchTables(sql);
  if (sql.exec("SELECT 1 FROM batch_holds LIMIT 1").toArray().length === 0) return out;
  const found = sql
    .exec<{ message_id: string; status: ScheduledSendStatus }>(
      `SELECT b.message_id, h.status FROM outbox_batch b
       JOIN batch_holds h ON h.tenant_id = b.tenant_id AND h.batch_id = b.batch_id
       WHERE b.message_id IN (SELECT value FROM json_each(?))`,
      JSON.stringify(rows.map((r) => r.message_id)),
    )
    .toArray();
  for (const r of found) out.set(r.message_id, r.status);
  return out;
}

/**
 * Held rows (a paused batch) older than the maximum queue age, counted from their send_at as for
 * every row: they end `failed`, as SendGrid discards a batch paused 72 h past its send_at as expired.
 * Returns how many.
 */
export function expireHeld(sql: SqlStorage, enqueuedBefore: number): number {
  const ids = sql
    .exec<{ message_id: string }>(
      "SELECT message_id FROM outbox WHERE state = 'held' AND enqueued_at <= ? LIMIT 500",
      enqueuedBefore,
    )
    .toArray()
    .map((r) => r.message_id);
  return markCancelled(sql, ids, EXPIRED_WHILE_PAUSED, "failed").length;
}

/** Rows in state `cancelled` (their outcome not queued for D1 yet), with their reason and final status. */
export function cancelledRows(
  sql: SqlStorage,
  limit: number,
): { message_id: string; reason: string; status: EndedStatus }[] {
  ensureBatchTables(sql);
  return sql
    .exec<{ message_id: string; reason: string | null; status: EndedStatus | null }>(
      `SELECT o.message_id, c.reason, c.status FROM outbox o LEFT JOIN outbox_cancel c ON c.message_id = o.message_id
       WHERE o.state = 'cancelled' LIMIT ?`,
      limit,
    )
    .toArray()
    .map((r) => ({
      message_id: r.message_id,
      reason: r.reason ?? CANCELLED_BY_REQUEST,
      status: r.status ?? "cancelled",
    }));
}

/** The state a `recording` row returns to when its write fails or the object restarts. */
export const UNRECORDED_STATE_SQL =
  "CASE WHEN message_id IN (SELECT message_id FROM outbox_cancel) THEN 'cancelled' ELSE 'ready' END";

/** A finished message's batch and cancel marks leave with its outbox row. */
export function forgetMessages(sql: SqlStorage, idsJson: string): void {
  ensureBatchTables(sql);
  sql.exec("DELETE FROM outbox_batch WHERE message_id IN (SELECT value FROM json_each(?))", idsJson);
  sql.exec("DELETE FROM outbox_cancel WHERE message_id IN (SELECT value FROM json_each(?))", idsJson);
}

/**
 * The outcome of a message the user ended, each remaining recipient with a `dropped` event giving
 * the reason: cancelled → status `cancelled` (terminal), recipients `cancelled`; failed (/fail) →
 * recipients `failed`, and the message `failed` unless a recipient was delivered (or bounced)
 * before, as queue-age expiry decides it. Event ids are derived from the message, so a D1 batch
 * replayed after a restart writes each event once (INSERT … ON CONFLICT DO NOTHING).
 */
export function cancelPlan(
  row: {
    message_id: string;
    tenant_id: string;
    dispatches: number;
    deferrals: number;
    delivered: number;
    bounced: number;
    failed: number;
  },
  recipients: string[],
  reason: string,
  now: number,
  ended: EndedStatus = "cancelled",
): ResultPlan {
  const failed = ended === "failed";
  return {
    status: !failed ? "cancelled" : row.delivered > 0 ? "delivered" : row.bounced > 0 ? "bounced" : "failed",
    deferrals: row.deferrals,
    retryRecipients: [],
    retryAt: 0,
    totals: {
      delivered: row.delivered,
      bounced: row.bounced,
      failed: row.failed + (failed ? recipients.length : 0),
    },
    recipientStatuses: recipients.map((r) => ({ email: r.toLowerCase(), status: ended })),
    errorMessage: reason,
    events: (tenantId: string): NewEvent[] =>
      recipients.map((r, i) => ({
        id: `evt_${row.message_id.slice(4)}${failed ? "F" : "C"}${i.toString(36)}`,
        tenantId,
        messageId: row.message_id,
        eventType: "dropped",
        recipientEmail: r.toLowerCase(),
        timestamp: now,
        attempt: row.dispatches,
        metadata: { reason },
      })),
  };
}
