/**
 * POST /v3/messages/{id}/retry in a hub shard (docs/api/sendgrid.md#retrying-a-message): what a
 * retry needs after a message went terminal, and the catalog writes that put it back in the queue.
 *
 * A message whose final outcome is `failed` or `bounced` leaves the outbox like any other, but its job
 * payload is kept in `outbox_retry` (message id → tenant, payload, the recipients of its last
 * dispatch, the ones of them delivered, its dispatch count, status) until `keep_until`. Nothing else
 * is kept: a delivered, cancelled or expired message has nothing to retry, so the table holds only a
 * shard's recent failures. `keep_until` is the earlier of RETRY_KEEP_MS after the end and the last
 * moment a re-queued message is sure to find the R2 blobs it names (services/blobs.ts keeps a day's
 * blobs until the end of that day plus blobRetentionMs(MAX_QUEUE_AGE_MS); a re-queued message may
 * wait MAX_QUEUE_AGE_MS again). The cron's flush and every new keep drop expired rows.
 *
 * A retry re-queues the SAME message (same id, same Message-ID header), with the recipients that
 * were not delivered, due now, a fresh queue age and retry schedule; its dispatch count goes on (job
 * ids stay unique), and its jobs carry `freshFrom` (docs/link-protocol.md#retried-messages) so an
 * origin does not answer them with the final outcomes it stored for the earlier dispatches.
 */
import { blobRetentionMs } from "./blobs.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";

/** How long after its end a failed or bounced message can still be retried (at most). */
export const RETRY_KEEP_MS = 72 * 3600 * 1000;
/** A retry that claimed a kept row and did not finish (the object stopped) lets another try after this. */
export const RETRY_CLAIM_MS = 30_000;
const DAY_MS = 86_400_000;
const ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** Statuses a terminal message may be retried from (scaisend's messages reference). */
export const RETRIABLE_FINAL = new Set(["failed", "bounced"]);

const ready = new WeakSet<SqlStorage>();

export function ensureRetryTable(sql: SqlStorage): void {
  if (ready.has(sql)) return;
  sql.exec(`CREATE TABLE IF NOT EXISTS outbox_retry (
    message_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    entry TEXT NOT NULL,
    recipients TEXT NOT NULL,
    delivered TEXT NOT NULL,
    dispatches INTEGER NOT NULL,
    status TEXT NOT NULL,
    keep_until INTEGER NOT NULL,
    claimed_at INTEGER
  )`);
  sql.exec("CREATE INDEX IF NOT EXISTS outbox_retry_until ON outbox_retry(keep_until)");
  ready.add(sql);
}

/** Unix ms in the time part of a message id (`msg_` + a ULID-like body), or null. */
export function messageIdTime(messageId: string): number | null {
  const body = messageId.slice(messageId.indexOf("_") + 1, messageId.indexOf("_") + 11);
  if (body.length !== 10) return null;
  let t = 0;
  for (const ch of body) {
    const v = ULID_ALPHABET.indexOf(ch);
    if (v < 0) return null;
    t = t * 32 + v;
  }
  return t;
}

/** Until when a message that ended at `endedAt` can be retried (header). */
export function keepUntil(messageId: string, endedAt: number, maxQueueAgeMs: number): number {
  const byEnd = endedAt + RETRY_KEEP_MS;
  const accepted = messageIdTime(messageId);
  if (accepted === null) return Math.min(byEnd, endedAt + DAY_MS);
  const dayEnd = Math.floor(accepted / DAY_MS) * DAY_MS + DAY_MS;
  return Math.min(byEnd, dayEnd + blobRetentionMs(maxQueueAgeMs) - maxQueueAgeMs);
}

/** A message that just ended failed or bounced: [message id, status, its delivered recipients (lowercase)]. */
export type KeptEnd = [string, string, string[]];

/**
 * Copies the payload of messages ending `failed`/`bounced` out of the outbox, before the outbox
 * deletes it (the same synchronous block). One statement for the lot, plus the expiry.
 */
export function keepForRetry(sql: SqlStorage, ends: KeptEnd[], now: number, maxQueueAgeMs: number): void {
  ensureRetryTable(sql);
  sql.exec("DELETE FROM outbox_retry WHERE keep_until <= ?", now);
  if (ends.length === 0) return;
  const rows = ends.map(([id, status, delivered]) => [
    id,
    status,
    JSON.stringify(delivered),
    keepUntil(id, now, maxQueueAgeMs),
  ]);
  sql.exec(
    `INSERT OR REPLACE INTO outbox_retry
       (message_id, tenant_id, entry, recipients, delivered, dispatches, status, keep_until, claimed_at)
     SELECT o.message_id, o.tenant_id, e.entry, o.recipients, json_extract(j.value, '$[2]'), o.dispatches,
       json_extract(j.value, '$[1]'), json_extract(j.value, '$[3]'), NULL
     FROM json_each(?) j JOIN outbox o ON o.message_id = json_extract(j.value, '$[0]')
       JOIN outbox_entry e ON e.message_id = o.message_id`,
    JSON.stringify(rows),
  );
}

/** Drops kept payloads past their window (the cron's flush). */
export function pruneKept(sql: SqlStorage, now: number): void {
  ensureRetryTable(sql);
  sql.exec("DELETE FROM outbox_retry WHERE keep_until <= ?", now);
}

export interface KeptMessage {
  messageId: string;
  tenantId: string;
  entry: OutboxEntry;
  /** The recipients to try again: those of the last dispatch that were not delivered. */
  recipients: string[];
  dispatches: number;
  status: string;
  claimedAt: number | null;
}

/** The kept payload of a tenant's message, within its window (another tenant's id: null). */
export function keptMessage(
  sql: SqlStorage,
  tenantId: string,
  messageId: string,
  now: number,
): KeptMessage | null {
  ensureRetryTable(sql);
  const row = sql
    .exec<{
      entry: string;
      recipients: string;
      delivered: string;
      dispatches: number;
      status: string;
      claimed_at: number | null;
    }>(
      `SELECT entry, recipients, delivered, dispatches, status, claimed_at FROM outbox_retry
       WHERE message_id = ? AND tenant_id = ? AND keep_until > ?`,
      messageId,
      tenantId,
      now,
    )
    .toArray()[0];
  if (!row) return null;
  const delivered = new Set(JSON.parse(row.delivered) as string[]);
  return {
    messageId,
    tenantId,
    entry: JSON.parse(row.entry) as OutboxEntry,
    recipients: (JSON.parse(row.recipients) as string[]).filter((r) => !delivered.has(r.toLowerCase())),
    dispatches: row.dispatches,
    status: row.status,
    claimedAt: row.claimed_at,
  };
}

export function claimKept(sql: SqlStorage, messageId: string, at: number | null): void {
  sql.exec("UPDATE outbox_retry SET claimed_at = ? WHERE message_id = ?", at, messageId);
}

export function dropKept(sql: SqlStorage, messageId: string): void {
  sql.exec("DELETE FROM outbox_retry WHERE message_id = ?", messageId);
}

/**
 * The catalog's side of a retry, written before the message is back in the outbox: status `queued`
 * again (only from the final status it had: a replay changes nothing), no error, no next attempt, and
 * the retried recipients `pending`.
 */
export function retryCatalogStatements(
  d1: D1Database,
  kept: KeptMessage,
  now: number,
): D1PreparedStatement[] {
  return [
    d1
      .prepare(
        `UPDATE messages SET status = 'queued', error_message = NULL, next_attempt_at = NULL, updated_at = ?
         WHERE id = ? AND tenant_id = ? AND status IN ('failed', 'bounced')`,
      )
      .bind(now, kept.messageId, kept.tenantId),
    d1
      .prepare(
        `UPDATE message_recipients SET status = 'pending'
         WHERE message_id = ? AND email IN (SELECT value FROM json_each(?))`,
      )
      .bind(kept.messageId, JSON.stringify(kept.recipients.map((r) => r.toLowerCase()))),
  ];
}
