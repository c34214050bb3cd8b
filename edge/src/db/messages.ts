/**
 * Message, recipient and event queries. All reads and writes that take a tenant id filter by it;
 * the hub's writes are keyed by message id, which it only ever received from a tenant-scoped send.
 */
import { and, count, desc, eq, gte, inArray, isNull, lt, lte, or, sql, type SQL } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { chunkRows, type Db } from "./client.ts";
import { events, messageRecipients, messages, type MessageStatus } from "./schema.ts";

export type MessageRow = typeof messages.$inferSelect;
export type NewMessage = typeof messages.$inferInsert;
export type NewRecipient = typeof messageRecipients.$inferInsert;
export type NewEvent = typeof events.$inferInsert;
export type EventRow = typeof events.$inferSelect;
type Statement = BatchItem<"sqlite">;

/**
 * Hub → D1: the catalog rows of accepted messages, written so that running them again changes
 * nothing (ON CONFLICT DO NOTHING on every row's key: messages.id, message_recipients (message_id,
 * email), events.id). A replayed flush, or a hub that restarted before it noted the flush, never
 * duplicates a row, and never overwrites what a later result wrote. Messages come first: the other
 * two reference them.
 */
export function catalogStatements(
  db: Db,
  rows: NewMessage[],
  recipients: NewRecipient[],
  firstEvents: NewEvent[],
): Statement[] {
  const out: Statement[] = [];
  for (const chunk of chunkRows(rows, 25)) out.push(db.insert(messages).values(chunk).onConflictDoNothing());
  for (const chunk of chunkRows(recipients, 5)) {
    out.push(db.insert(messageRecipients).values(chunk).onConflictDoNothing());
  }
  for (const chunk of chunkRows(firstEvents, 8))
    out.push(db.insert(events).values(chunk).onConflictDoNothing());
  return out;
}

/** Statements that persist sandbox messages and their recipients; run them in one batch. */
export function insertMessagesStatements(
  db: Db,
  rows: NewMessage[],
  recipients: NewRecipient[],
  firstEvents: NewEvent[],
): Statement[] {
  const out: Statement[] = [];
  for (const chunk of chunkRows(rows, 25)) out.push(db.insert(messages).values(chunk));
  for (const chunk of chunkRows(recipients, 5)) out.push(db.insert(messageRecipients).values(chunk));
  for (const chunk of chunkRows(firstEvents, 8)) out.push(db.insert(events).values(chunk));
  return out;
}

export interface MessageFilters {
  status?: MessageStatus;
  toEmail?: string;
  fromEmail?: string;
  subject?: string;
  batchId?: string;
  templateId?: string;
  category?: string;
  startMs?: number;
  endMs?: number;
}

function filterConditions(tenantId: string, f: MessageFilters): SQL[] {
  const where: SQL[] = [eq(messages.tenantId, tenantId)];
  if (f.status) where.push(eq(messages.status, f.status));
  if (f.fromEmail) where.push(eq(messages.fromEmail, f.fromEmail.toLowerCase()));
  if (f.subject) {
    // Substring match: the user's %, _ and \ are escaped, which needs an explicit ESCAPE clause in SQLite.
    const pattern = `%${f.subject.replace(/[\\%_]/g, "\\$&")}%`;
    where.push(sql`${messages.subject} LIKE ${pattern} ESCAPE '\\'`);
  }
  if (f.batchId) where.push(eq(messages.batchId, f.batchId));
  if (f.templateId) where.push(eq(messages.templateId, f.templateId));
  if (f.startMs !== undefined) where.push(gte(messages.createdAt, f.startMs));
  if (f.endMs !== undefined) where.push(lt(messages.createdAt, f.endMs));
  if (f.category) {
    where.push(
      sql`exists (select 1 from json_each(${messages.categories}) where json_each.value = ${f.category})`,
    );
  }
  if (f.toEmail) {
    where.push(
      sql`exists (select 1 from ${messageRecipients} where ${messageRecipients.messageId} = ${messages.id}
          and ${messageRecipients.tenantId} = ${tenantId} and ${messageRecipients.email} = ${f.toEmail.toLowerCase()}
          and ${messageRecipients.kind} = 'to')`,
    );
  }
  return where;
}

export async function listMessages(
  db: Db,
  tenantId: string,
  filters: MessageFilters,
  page: number,
  pageSize: number,
): Promise<{ rows: MessageRow[]; total: number }> {
  const where = and(...filterConditions(tenantId, filters));
  const [rows, totals] = await Promise.all([
    db
      .select()
      .from(messages)
      .where(where)
      .orderBy(desc(messages.createdAt), desc(messages.id))
      .limit(pageSize)
      .offset((page - 1) * pageSize),
    db.select({ n: count() }).from(messages).where(where),
  ]);
  return { rows, total: totals[0]?.n ?? 0 };
}

export async function getMessage(db: Db, tenantId: string, id: string): Promise<MessageRow | undefined> {
  return db
    .select()
    .from(messages)
    .where(and(eq(messages.tenantId, tenantId), eq(messages.id, id)))
    .get();
}

export async function getMessageEvents(db: Db, tenantId: string, messageId: string): Promise<EventRow[]> {
  return (
    db
      .select()
      .from(events)
      .where(and(eq(events.tenantId, tenantId), eq(events.messageId, messageId)))
      // rowid breaks ties in insertion order (events of one result share a timestamp).
      .orderBy(events.timestamp, sql`rowid`)
  );
}

export async function getMessagesByIds(db: Db, ids: string[]): Promise<MessageRow[]> {
  const out: MessageRow[] = [];
  for (const chunk of chunkRows(ids, 1)) {
    out.push(...(await db.select().from(messages).where(inArray(messages.id, chunk))));
  }
  return out;
}

/**
 * Hub → D1: these messages were handed to an origin. `dispatches` counts every hand-over (re-dispatches
 * after a dropped link or an expired lease too); `deferrals` is not touched here, it counts results.
 * The status only moves forward from queued, never back from a final one.
 */
export function markSendingStatements(db: Db, ids: string[], now: number): Statement[] {
  return chunkRows(ids, 3).map((chunk) =>
    db
      .update(messages)
      .set({
        status: sql`case when ${messages.status} = 'queued' then 'sending' else ${messages.status} end`,
        updatedAt: now,
        dispatches: sql`${messages.dispatches} + 1`,
      })
      .where(and(inArray(messages.id, chunk), inArray(messages.status, ["queued", "sending"]))),
  );
}

export interface ResultWrite {
  messageId: string;
  now: number;
  events: NewEvent[];
  recipientStatuses: { email: string; status: string }[];
  /** New message status, or undefined to leave it (e.g. still waiting for a retry). */
  status: MessageStatus;
  /** When this attempt delivered to a recipient; kept only if the message had no delivered_at yet. */
  deliveredAt?: number;
  errorMessage?: string | null;
  /** Set when recipients wait for a retry; cleared once the message is terminal. */
  nextAttemptAt: number | null;
  /** The hub's deferral count after this result, when it changed (the retry schedule's index). */
  deferrals?: number;
}

/** Hub → D1: one delivery attempt's outcome, written as one batch (events are de-duplicated by index). */
export function recordResultStatements(db: Db, w: ResultWrite): Statement[] {
  const out: Statement[] = [];
  for (const chunk of chunkRows(w.events, 8)) out.push(db.insert(events).values(chunk).onConflictDoNothing());
  for (const r of w.recipientStatuses) {
    out.push(
      db
        .update(messageRecipients)
        .set({ status: r.status })
        .where(and(eq(messageRecipients.messageId, w.messageId), eq(messageRecipients.email, r.email))),
    );
  }
  out.push(
    db
      .update(messages)
      .set({
        status: w.status,
        updatedAt: w.now,
        nextAttemptAt: w.nextAttemptAt,
        ...(w.deliveredAt !== undefined
          ? { deliveredAt: sql`coalesce(${messages.deliveredAt}, ${w.deliveredAt})` }
          : {}),
        ...(w.errorMessage !== undefined ? { errorMessage: w.errorMessage } : {}),
        ...(w.deferrals !== undefined ? { deferrals: w.deferrals } : {}),
      })
      .where(eq(messages.id, w.messageId)),
  );
  return out;
}

/**
 * Live messages accepted before the hub was the point of acceptance (their ids name no shard, see
 * edge/src/lib/shards.ts), not yet terminal and untouched for a while: the sweeper's legacy guard
 * hands them to the hub again. Ids that name a shard are the hub's alone and never come back here.
 */
export async function findStaleLiveMessages(db: Db, olderThan: number, limit: number): Promise<MessageRow[]> {
  return db
    .select()
    .from(messages)
    .where(
      and(
        eq(messages.mode, "live"),
        // msg_ + 10 time characters, then U for an id that names its shard (1-based: position 15).
        sql`substr(${messages.id}, 15, 1) <> 'U'`,
        inArray(messages.status, ["queued", "processing", "sending"]),
        lte(messages.updatedAt, olderThan),
        // A message waiting for its retry is the hub's; only one whose retry is long overdue is stale.
        or(isNull(messages.nextAttemptAt), lte(messages.nextAttemptAt, olderThan)),
      ),
    )
    .orderBy(messages.updatedAt)
    .limit(limit);
}

export async function getRecipientsByStatus(
  db: Db,
  messageId: string,
  statuses: string[],
): Promise<string[]> {
  const rows = await db
    .select({ email: messageRecipients.email })
    .from(messageRecipients)
    .where(and(eq(messageRecipients.messageId, messageId), inArray(messageRecipients.status, statuses)));
  return rows.map((r) => r.email);
}
