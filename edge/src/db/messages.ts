/**
 * Message, recipient and event queries. A tenant's reads go through `tenantMessages(db, tenantId)`,
 * built from the tenant it was opened for. The rest are cross-tenant by design, each for one
 * machine and named for it: the hub's statements (its catalog flush writes many tenants' rows at
 * once, its result writes are keyed by message id, which it only ever received from a
 * tenant-scoped send) and the sweeper's legacy guard (findStaleLiveMessages, getRecipientsByStatus).
 */
import {
  and,
  count,
  desc,
  eq,
  getTableColumns,
  getTableName,
  gte,
  inArray,
  isNull,
  lt,
  lte,
  or,
  sql,
  SQL,
  type Column,
} from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { SQLiteTable } from "drizzle-orm/sqlite-core";
import {
  ActivityQueryError,
  type Expr,
  type FieldRef,
  type Value,
} from "../../../shared/sendgrid/activity-query.ts";
import { chunkRows, type Db } from "./client.ts";
import { events, messageRecipients, messages, MESSAGE_STATUSES, type MessageStatus } from "./schema.ts";

export type MessageRow = typeof messages.$inferSelect;
export type NewMessage = typeof messages.$inferInsert;
export type NewRecipient = typeof messageRecipients.$inferInsert;
export type NewEvent = typeof events.$inferInsert;
export type EventRow = typeof events.$inferSelect;
type Statement = BatchItem<"sqlite">;

/**
 * D1 binds a string of at most 2,000,000 bytes (developers.cloudflare.com/d1/platform/limits/). The
 * hub's writes bind a whole list of rows as ONE JSON parameter, so a batch is a few statements
 * instead of one per handful of rows (at most 100 bound parameters each). A JSON list is cut before
 * it could pass this many UTF-16 code units: at most 3 UTF-8 bytes each, 1.8 MB with margin.
 */
export const MAX_JSON_PARAM_UNITS = 600_000;

/**
 * A multi-row INSERT of `table` that binds its rows as one JSON list of arrays (columns in table
 * order, each value as drizzle's own insert would bind it: JSON columns serialized, a missing
 * value taking the column's default, else NULL), read back with json_extract. The statement text
 * is built once per table; a row costs one array and its share of one JSON.stringify, not a query
 * builder pass. A row too large for one parameter goes alone with positional parameters (no table
 * here has more than 100 columns).
 */
class JsonRowsInsert {
  private readonly columns: [key: string, column: Column][];
  private readonly listSql: string;
  private readonly rowSql: string;

  constructor(table: SQLiteTable, conflict: "fail" | "ignore") {
    this.columns = Object.entries(getTableColumns(table));
    for (const [key, c] of this.columns) {
      // A default computed in SQL cannot travel in the JSON list; no catalog table has one.
      if (c.default instanceof SQL) throw new Error(`JsonRowsInsert: ${key} has an SQL default`);
    }
    const into = `INSERT INTO "${getTableName(table)}" (${this.columns.map(([, c]) => `"${c.name}"`).join(", ")})`;
    const tail = conflict === "ignore" ? " ON CONFLICT DO NOTHING" : "";
    const picks = this.columns.map((_, i) => `json_extract(value, '$[${i}]')`).join(", ");
    // `WHERE true`: SQLite needs it to tell an upsert's ON CONFLICT from a join in INSERT … SELECT.
    this.listSql = `${into} SELECT ${picks} FROM json_each(?) WHERE true${tail}`;
    this.rowSql = `${into} VALUES (${this.columns.map(() => "?").join(", ")})${tail}`;
  }

  statements(d1: D1Database, rows: readonly object[]): D1PreparedStatement[] {
    const out: D1PreparedStatement[] = [];
    let listed: unknown[][] = [];
    for (const row of rows) {
      const v = this.values(row as Record<string, unknown>);
      if (fitsOneParam(v)) {
        listed.push(v);
        continue;
      }
      // In order: rowid order breaks ties between events of one timestamp.
      out.push(...jsonListStatements(d1, this.listSql, [], listed), d1.prepare(this.rowSql).bind(...v));
      listed = [];
    }
    out.push(...jsonListStatements(d1, this.listSql, [], listed));
    return out;
  }

  private values(row: Record<string, unknown>): unknown[] {
    const out = new Array<unknown>(this.columns.length);
    for (let i = 0; i < this.columns.length; i++) {
      const [key, c] = this.columns[i]!;
      let v = row[key];
      if (v === undefined) v = c.default !== undefined ? c.default : c.defaultFn ? c.defaultFn() : null;
      out[i] = v === null || v === undefined ? null : c.mapToDriverValue(v);
    }
    return out;
  }
}

/** Whether `item` fits a JSON list parameter on its own (a cheap bound first, exact length when close). */
function fitsOneParam(item: unknown[]): boolean {
  let units = 0;
  // A number or null is at most 24 units; anything else is measured.
  for (const v of item)
    units += typeof v === "string" ? v.length : typeof v === "number" || v === null ? 24 : Infinity;
  // JSON escapes at most 6 units per unit (\u0000); only a value near the limit is serialized to check.
  return units * 6 + 2 <= MAX_JSON_PARAM_UNITS || JSON.stringify(item).length + 2 <= MAX_JSON_PARAM_UNITS;
}

/**
 * `sql` with its last parameter a JSON list of `items` (after the parameters `before`), once per run
 * of items that fits MAX_JSON_PARAM_UNITS. Callers keep each item far below that (JsonRowsInsert
 * sends a larger row with positional parameters; ids, statuses and outcome fields are short).
 */
export function jsonListStatements(
  d1: D1Database,
  sql: string,
  before: unknown[],
  items: readonly unknown[],
): D1PreparedStatement[] {
  const out: D1PreparedStatement[] = [];
  let parts: string[] = [];
  let units = 2;
  const flush = () => {
    if (parts.length > 0) out.push(d1.prepare(sql).bind(...before, `[${parts.join(",")}]`));
    parts = [];
    units = 2;
  };
  for (const item of items) {
    const part = JSON.stringify(item);
    if (units + part.length + 1 > MAX_JSON_PARAM_UNITS) flush();
    parts.push(part);
    units += part.length + 1;
  }
  flush();
  return out;
}

const insertMessages = new JsonRowsInsert(messages, "fail");
const insertRecipients = new JsonRowsInsert(messageRecipients, "fail");
const insertEvents = new JsonRowsInsert(events, "fail");
const catalogMessages = new JsonRowsInsert(messages, "ignore");
const catalogRecipients = new JsonRowsInsert(messageRecipients, "ignore");
const catalogEvents = new JsonRowsInsert(events, "ignore");

/**
 * Hub → D1: the catalog rows of accepted messages, written so that running them again changes
 * nothing (ON CONFLICT DO NOTHING on every row's key: messages.id, message_recipients (message_id,
 * email), events.id). A replayed flush, or a hub that restarted before it noted the flush, never
 * duplicates a row, and never overwrites what a later result wrote. Messages come first: the other
 * two reference them. One statement per table for a usual batch (JsonRowsInsert); run them with the
 * D1 binding's batch().
 */
export function catalogStatements(
  d1: D1Database,
  rows: NewMessage[],
  recipients: NewRecipient[],
  firstEvents: NewEvent[],
): D1PreparedStatement[] {
  return [
    ...catalogMessages.statements(d1, rows),
    ...catalogRecipients.statements(d1, recipients),
    ...catalogEvents.statements(d1, firstEvents),
  ];
}

/** Statements that persist sandbox messages and their recipients; run them in one D1 batch(). */
export function insertMessagesStatements(
  d1: D1Database,
  rows: NewMessage[],
  recipients: NewRecipient[],
  firstEvents: NewEvent[],
): D1PreparedStatement[] {
  return [
    ...insertMessages.statements(d1, rows),
    ...insertRecipients.statements(d1, recipients),
    ...insertEvents.statements(d1, firstEvents),
  ];
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

/** A list row: the message plus what SendGrid's Email Activity list counts from its events. */
export interface ActivityRow extends MessageRow {
  opensCount: number;
  clicksCount: number;
  /** Unix ms of the newest event, or of the acceptance when there is none (e.g. sandbox). */
  lastEventAt: number;
}

/**
 * Correlated with the outer `messages` row and bound to its tenant by column, no parameters. The
 * identifiers are written out qualified: in a select list drizzle renders columns without their
 * table, and an unqualified `id` inside the subquery would be the event's own.
 */
const eventCount = (type: "open" | "click") =>
  sql<number>`(select count(*) from "events" where "events"."message_id" = "messages"."id"
    and "events"."tenant_id" = "messages"."tenant_id" and "events"."event_type" = ${sql.raw(`'${type}'`)})`;
const lastEventMs = sql<number>`coalesce((select max("events"."timestamp") from "events"
    where "events"."message_id" = "messages"."id" and "events"."tenant_id" = "messages"."tenant_id"),
    "messages"."created_at")`;

/**
 * SendGrid's status words beside ScaiSend's: `processed` is any status before an outcome,
 * `not_delivered` any failed outcome (docs/api/sendgrid.md#the-query-parameter).
 */
const STATUS_WORDS: Record<string, readonly MessageStatus[]> = {
  processed: ["queued", "processing", "rendered", "sending", "sent"],
  not_delivered: ["bounced", "failed", "cancelled"],
  ...Object.fromEntries(MESSAGE_STATUSES.map((s) => [s, [s]])),
};

/** D1 binds at most 100 parameters per statement; the query gets this many, the filters the rest. */
const MAX_QUERY_PARAMS = 80;

/**
 * Compiles a parsed Email Activity query to one SQL condition on `messages`. Every value is a bound
 * parameter; only fixed operator words from the parser's closed set are written into the SQL.
 * Each leaf is coalesced to false so NOT is the exact complement of what it negates.
 */
export function activityCondition(query: Expr): SQL {
  let params = 0;
  const bind = (v: unknown): SQL => {
    if (++params > MAX_QUERY_PARAMS) throw new ActivityQueryError("Too many values in the query", 1);
    return sql`${v}`;
  };
  const ops = { "=": "=", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">=" } as const;
  const list = (vs: SQL[]) => sql.join(vs, sql`, `);

  const statusList = (values: Value[]): SQL[] => {
    const out = new Set<MessageStatus>();
    for (const v of values) {
      const set = STATUS_WORDS[String(v.value).toLowerCase()];
      if (!set) throw new ActivityQueryError(`Unknown status "${String(v.value)}"`, v.pos);
      for (const s of set) out.add(s);
    }
    return [...out].map(bind);
  };

  /** A predicate on a scalar expression `col`; `lower` folds string values (addresses are stored lowercase). */
  const scalar = (col: SQL, e: Expr, lower = false): SQL => {
    const val = (v: Value) => bind(lower && v.kind === "string" ? v.value.toLowerCase() : v.value);
    switch (e.type) {
      case "compare":
        return sql`${col} ${sql.raw(ops[e.op])} ${val(e.value)}`;
      case "like":
        return sql`${col} ${sql.raw(e.negated ? "not like" : "like")} ${bind(e.pattern)}`;
      case "in":
        return sql`${col} ${sql.raw(e.negated ? "not in" : "in")} (${list(e.values.map(val))})`;
      case "between":
        return sql`${col} ${sql.raw(e.negated ? "not between" : "between")} ${val(e.low)} and ${val(e.high)}`;
      case "null":
        return sql`${col} ${sql.raw(e.negated ? "is not null" : "is null")}`;
      default:
        throw new ActivityQueryError("Unsupported condition", 1);
    }
  };

  /** Fields with many values per message (To recipients, custom args): a negated form is "none matches". */
  const existential = (inner: (positive: Expr) => SQL, e: Expr): SQL => {
    let positive = e;
    let negate = false;
    if (e.type === "compare" && e.op === "!=") [positive, negate] = [{ ...e, op: "=" }, true];
    else if ((e.type === "like" || e.type === "in") && e.negated)
      [positive, negate] = [{ ...e, negated: false }, true];
    const q = sql`exists (${inner(positive)})`;
    return negate ? sql`not ${q}` : q;
  };

  const leaf = (f: FieldRef, e: Expr): SQL => {
    switch (f.name) {
      case "msg_id":
        return scalar(sql`${messages.id}`, e);
      case "from_email":
        return scalar(sql`${messages.fromEmail}`, e, true);
      case "subject":
        return scalar(sql`${messages.subject}`, e);
      case "template_id":
        return scalar(sql`${messages.templateId}`, e);
      case "api_key_id":
        return scalar(sql`${messages.apiKeyId}`, e);
      case "opens_count":
        return scalar(eventCount("open"), e);
      case "clicks_count":
        return scalar(eventCount("click"), e);
      case "last_event_time":
        // Compared to the second, as the answers show it.
        return scalar(sql`(${lastEventMs} / 1000)`, e);
      case "status": {
        if (e.type === "compare") {
          return sql`${messages.status} ${sql.raw(e.op === "=" ? "in" : "not in")} (${list(statusList([e.value]))})`;
        }
        if (e.type === "in") {
          return sql`${messages.status} ${sql.raw(e.negated ? "not in" : "in")} (${list(statusList(e.values))})`;
        }
        throw new ActivityQueryError("Only =, != and IN can be used with status", f.pos);
      }
      case "to_email":
        return existential(
          (p) =>
            sql`select 1 from ${messageRecipients} where ${messageRecipients.messageId} = ${messages.id}
              and ${messageRecipients.tenantId} = ${messages.tenantId} and ${messageRecipients.kind} = 'to'
              and ${scalar(sql`${messageRecipients.email}`, p, true)}`,
          e,
        );
      case "unique_args": {
        const inArgs = (cond: SQL | null) =>
          sql`select 1 from json_each(${messages.customArgs}) where json_each.key = ${bind(f.key)}${
            cond ? sql` and ${cond}` : sql``
          }`;
        if (e.type === "null") {
          const q = sql`exists (${inArgs(null)})`;
          return e.negated ? q : sql`not ${q}`;
        }
        return existential((p) => inArgs(scalar(sql`json_each.value`, p)), e);
      }
      default:
        throw new ActivityQueryError(`Field "${f.name}" cannot be queried`, f.pos);
    }
  };

  const walk = (e: Expr): SQL => {
    switch (e.type) {
      case "and":
        return sql`(${walk(e.left)} and ${walk(e.right)})`;
      case "or":
        return sql`(${walk(e.left)} or ${walk(e.right)})`;
      case "not":
        return sql`(not ${walk(e.expr)})`;
      case "contains":
        return sql`exists (select 1 from json_each(${messages.categories}) where json_each.value = ${bind(e.value)})`;
      default:
        return sql`coalesce((${leaf(e.field, e)}), 0)`;
    }
  };
  return sql`(${walk(query)})`;
}

const MARK_SENDING_SQL = `UPDATE messages SET status = CASE WHEN status = 'queued' THEN 'processing' ELSE status END,
    updated_at = ?, dispatches = dispatches + ? WHERE id IN (SELECT value FROM json_each(?))
    AND status IN ('queued', 'processing', 'rendered', 'sending')`;

/**
 * Hub → D1: these messages were handed to an origin, which renders and builds them now: `queued` →
 * `processing` (services/message-stages.ts has the later stages). `dispatches` counts every hand-over (re-dispatches
 * after a dropped link or an expired lease too, also two of one message before a flush); `deferrals`
 * is not touched here, it counts results. The status only moves forward from queued, never back from
 * a final one. One statement per batch (ids as one JSON list; see MAX_JSON_PARAM_UNITS).
 */
export function markSendingStatements(d1: D1Database, ids: string[], now: number): D1PreparedStatement[] {
  const times = new Map<string, number>();
  for (const id of ids) times.set(id, (times.get(id) ?? 0) + 1);
  const byTimes = new Map<number, string[]>();
  for (const [id, n] of times) {
    const list = byTimes.get(n);
    if (list) list.push(id);
    else byTimes.set(n, [id]);
  }
  return [...byTimes].flatMap(([n, list]) => jsonListStatements(d1, MARK_SENDING_SQL, [now, n], list));
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

const RECIPIENT_STATUS_SQL = `UPDATE message_recipients SET status = j.s FROM (SELECT json_extract(value, '$[0]') AS m,
    json_extract(value, '$[1]') AS e, json_extract(value, '$[2]') AS s FROM json_each(?)) AS j
  WHERE message_recipients.message_id = j.m AND message_recipients.email = j.e`;
/**
 * Per message: [id, status, updated_at, next_attempt_at, delivered_at or null, 1 if error_message is
 * set (to the next value, null included), error_message, deferrals or null]. delivered_at keeps the
 * first delivery (COALESCE); a null deferrals leaves the column as it is.
 */
const MESSAGE_RESULT_SQL = `UPDATE messages SET status = j.status, updated_at = j.now, next_attempt_at = j.next,
    delivered_at = coalesce(messages.delivered_at, j.delivered),
    error_message = CASE WHEN j.has_error = 1 THEN j.error ELSE messages.error_message END,
    deferrals = coalesce(j.deferrals, messages.deferrals)
  FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS status,
    json_extract(value, '$[2]') AS now, json_extract(value, '$[3]') AS next,
    json_extract(value, '$[4]') AS delivered, json_extract(value, '$[5]') AS has_error,
    json_extract(value, '$[6]') AS error, json_extract(value, '$[7]') AS deferrals FROM json_each(?)) AS j
  WHERE messages.id = j.id`;

/**
 * Hub → D1: one delivery attempt's outcome as drizzle statements, for a caller that writes one outcome
 * alone (the queue-age expiry); a flush's outcomes go through resultStatements.
 */
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

/** The hub's update statements, for the test that checks each one searches an index (test/edge/catalog-statements.test.ts). */
export const HUB_UPDATE_SQL = {
  markSending: MARK_SENDING_SQL,
  recipientStatus: RECIPIENT_STATUS_SQL,
  messageResult: MESSAGE_RESULT_SQL,
} as const;

/**
 * Hub → D1: the outcomes of one flush, three statements for the lot (events, recipient statuses,
 * message rows, in that order as for a single outcome), each binding its rows as one JSON list; run
 * them with the D1 binding's batch(). Rows of one message are written in the order given: a message
 * named twice starts a new round of three statements, so a later outcome still lands after an earlier one.
 */
export function resultStatements(d1: D1Database, writes: readonly ResultWrite[]): D1PreparedStatement[] {
  const out: D1PreparedStatement[] = [];
  let round: ResultWrite[] = [];
  const inRound = new Set<string>();
  const emit = () => {
    if (round.length === 0) return;
    out.push(
      ...catalogEvents.statements(
        d1,
        round.flatMap((w) => w.events),
      ),
    );
    // One message's list may name an address twice: the last status wins, as it would row by row.
    const statuses = new Map<string, [string, string, string]>();
    for (const w of round) {
      for (const r of w.recipientStatuses) {
        const key = `${w.messageId}\u0000${r.email}`;
        statuses.delete(key);
        statuses.set(key, [w.messageId, r.email, r.status]);
      }
    }
    out.push(...jsonListStatements(d1, RECIPIENT_STATUS_SQL, [], [...statuses.values()]));
    out.push(
      ...jsonListStatements(
        d1,
        MESSAGE_RESULT_SQL,
        [],
        round.map((w) => [
          w.messageId,
          w.status,
          w.now,
          w.nextAttemptAt,
          w.deliveredAt ?? null,
          w.errorMessage !== undefined ? 1 : 0,
          w.errorMessage ?? null,
          w.deferrals ?? null,
        ]),
      ),
    );
    round = [];
    inRound.clear();
  };
  for (const w of writes) {
    if (inRound.has(w.messageId)) emit();
    round.push(w);
    inRound.add(w.messageId);
  }
  emit();
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
        inArray(messages.status, ["queued", "processing", "rendered", "sending"]),
        lte(messages.updatedAt, olderThan),
        // A message waiting for its retry is the hub's; only one whose retry is long overdue is stale.
        or(isNull(messages.nextAttemptAt), lte(messages.nextAttemptAt, olderThan)),
      ),
    )
    .orderBy(messages.updatedAt)
    .limit(limit);
}

/** The sweeper's legacy guard (cross-tenant): a stale message's recipients, by the id it found. */
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

/**
 * One tenant's messages: every query below is built from the tenant this was opened for, so another
 * tenant's rows are simply not there (a 404 upstream, like a made-up id).
 */
export function tenantMessages(db: Db, tenantId: string) {
  async function listMessages(
    filters: MessageFilters,
    page: number,
    pageSize: number,
    query?: Expr,
  ): Promise<{ rows: ActivityRow[]; total: number }> {
    const conditions = filterConditions(tenantId, filters);
    // The tenant predicate is first and ANDed with the compiled query, which is parenthesised:
    // nothing in a query can widen it (docs/api/sendgrid.md#the-query-parameter).
    if (query) conditions.push(activityCondition(query));
    const where = and(...conditions);
    const [rows, totals] = await Promise.all([
      db
        .select({
          message: messages,
          opensCount: eventCount("open"),
          clicksCount: eventCount("click"),
          lastEventAt: lastEventMs,
        })
        .from(messages)
        .where(where)
        .orderBy(desc(messages.createdAt), desc(messages.id))
        .limit(pageSize)
        .offset((page - 1) * pageSize),
      db.select({ n: count() }).from(messages).where(where),
    ]);
    return {
      rows: rows.map((r) => ({
        ...r.message,
        opensCount: Number(r.opensCount),
        clicksCount: Number(r.clicksCount),
        lastEventAt: Number(r.lastEventAt),
      })),
      total: totals[0]?.n ?? 0,
    };
  }

  async function getMessage(id: string): Promise<MessageRow | undefined> {
    return db
      .select()
      .from(messages)
      .where(and(eq(messages.tenantId, tenantId), eq(messages.id, id)))
      .get();
  }

  async function getMessageEvents(messageId: string): Promise<EventRow[]> {
    return (
      db
        .select()
        .from(events)
        .where(and(eq(events.tenantId, tenantId), eq(events.messageId, messageId)))
        // rowid breaks ties in insertion order (events of one result share a timestamp).
        .orderBy(events.timestamp, sql`rowid`)
    );
  }

  return { listMessages, getMessage, getMessageEvents };
}
