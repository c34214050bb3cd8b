/**
 * SenderKit's Message as /v1 reads it (docs/api/senderkit.md#messages): an `sk_messages` row, joined
 * with its `messages` row for a live email (whose status, events and error are the delivery's own).
 *
 * Status mapping (docs/api/senderkit.md#messages): a row with its own `status` (test mode) keeps it;
 * a live email maps messages.status: queued → `scheduled` before its scheduledAt, else `queued`;
 * processing, rendered → `rendered`; sending → `dispatched`; sent → `sent`; delivered → `delivered`;
 * cancelled → `canceled`; failed with every recipient suppressed → `opted_out`; bounced, failed → `failed`.
 * On sms, push and web-push, `delivered` (the provider accepted it, docs/channels.md#decisions) is
 * SenderKit's `sent`: no carrier or push receipt is read, so `sent` is the last status they reach.
 */
import type { Db } from "../../db/client.ts";
import { fromD1, type SkMessageRow, type SkTimelineEntry } from "../../db/sk-messages.ts";
import type { EventRow, MessageRow } from "../../db/messages.ts";

export const SK_STATUSES = [
  "scheduled",
  "queued",
  "rendered",
  "dispatched",
  "sent",
  "delivered",
  "failed",
  "opted_out",
  "canceled",
] as const;
export type SkStatus = (typeof SK_STATUSES)[number];

const SUPPRESSED_PREFIX = "Dropped, every recipient is suppressed";

/** The mapping above as SQL over `s` (sk_messages) and `m` (messages); ?1 is now (ms). */
const STATUS_SQL = `CASE
  WHEN s.status IS NOT NULL THEN s.status
  WHEN m.status IS NULL OR m.status = 'queued' THEN
    CASE WHEN s.scheduled_at IS NOT NULL AND s.scheduled_at > ?1 THEN 'scheduled' ELSE 'queued' END
  WHEN m.status IN ('processing', 'rendered') THEN 'rendered'
  WHEN m.status = 'sending' THEN 'dispatched'
  WHEN m.status = 'sent' THEN 'sent'
  WHEN m.status = 'delivered' THEN CASE WHEN s.channel = 'email' THEN 'delivered' ELSE 'sent' END
  WHEN m.status = 'cancelled' THEN 'canceled'
  WHEN m.status = 'failed' AND m.error_message LIKE '${SUPPRESSED_PREFIX}%' THEN 'opted_out'
  ELSE 'failed' END`;

/** The same mapping in code, for a message its hub shard answers for (read-your-writes). */
export function mapStatus(
  row: Pick<SkMessageRow, "status" | "scheduledAt"> & { channel?: SkMessageRow["channel"] },
  m: Pick<MessageRow, "status" | "errorMessage"> | null,
  now: number,
): SkStatus {
  if (row.status !== null) return row.status as SkStatus;
  const s = m?.status ?? "queued";
  if (s === "queued") return row.scheduledAt !== null && row.scheduledAt > now ? "scheduled" : "queued";
  if (s === "processing" || s === "rendered") return "rendered";
  if (s === "sending") return "dispatched";
  if (s === "delivered" && row.channel !== undefined && row.channel !== "email") return "sent";
  if (s === "sent" || s === "delivered") return s;
  if (s === "cancelled") return "canceled";
  if (s === "failed" && m?.errorMessage?.startsWith(SUPPRESSED_PREFIX)) return "opted_out";
  return "failed";
}

export interface SkMessageView {
  row: SkMessageRow;
  status: SkStatus;
  message: Pick<
    MessageRow,
    "status" | "errorMessage" | "deliveredAt" | "messageIdHeader" | "updatedAt"
  > | null;
  events: Pick<EventRow, "eventType" | "timestamp" | "metadata" | "recipientEmail">[];
}

const iso = (ms: number) => new Date(ms).toISOString();

/** A live email's timeline from its events (test-mode rows carry their own). */
function timelineOf(v: SkMessageView): SkTimelineEntry[] {
  if (v.row.status !== null || !v.message) return v.row.timeline;
  const out: SkTimelineEntry[] = [];
  for (const e of [...v.events].sort((a, b) => a.timestamp - b.timestamp)) {
    const meta = (e.metadata ?? {}) as Record<string, unknown>;
    const t = iso(e.timestamp);
    if (e.eventType === "processed") out.push({ t, e: "queued" });
    else if (e.eventType === "delivered") {
      // A channel message's delivered event is the provider's acceptance: SenderKit's `sent`.
      const pid = meta.provider_message_id;
      out.push(
        v.row.channel === "email"
          ? { t, e: "delivered", recipient: e.recipientEmail }
          : {
              t,
              e: "sent",
              recipient: e.recipientEmail,
              ...(pid !== undefined ? { providerMessageId: pid } : {}),
            },
      );
    } else if (e.eventType === "deferred")
      out.push({ t, e: "deferred", recipient: e.recipientEmail, ...meta });
    else if (e.eventType === "bounce") out.push({ t, e: "bounced", recipient: e.recipientEmail, ...meta });
    else if (e.eventType === "dropped") out.push({ t, e: "dropped", recipient: e.recipientEmail, ...meta });
  }
  if (v.status === "canceled") out.push({ t: iso(v.message.updatedAt), e: "canceled" });
  return out;
}

/** A string in the metadata of the message's first event of a type (a channel message's connection and provider id). */
function eventMeta(v: SkMessageView, type: EventRow["eventType"], key: string): string | null {
  const value = (v.events.find((e) => e.eventType === type)?.metadata as Record<string, unknown> | null)?.[
    key
  ];
  return typeof value === "string" ? value : null;
}

/** SenderKit's Message JSON (the OpenAPI's Message schema). */
export function messageJson(v: SkMessageView, workspaceUuid: string) {
  const r = v.row;
  const live = r.livemode && v.message !== null;
  return {
    id: r.uuid,
    workspaceId: workspaceUuid,
    publicId: r.id,
    templateSlug: r.templateSlug,
    channel: r.channel,
    status: v.status,
    livemode: r.livemode,
    recipient: r.recipient,
    vars: r.vars,
    metadata: r.metadata,
    fromOverride: r.fromOverride,
    interpolate: r.interpolate,
    pinnedVersion: r.pinnedVersion,
    provider: r.provider,
    providerConnectionId:
      live && r.channel !== "email" ? eventMeta(v, "processed", "provider_connection_id") : null,
    providerMessageId: !live
      ? null
      : r.channel === "email"
        ? v.message!.messageIdHeader
        : eventMeta(v, "delivered", "provider_message_id"),
    latencyMs:
      live && v.message!.deliveredAt !== null ? Math.max(0, v.message!.deliveredAt - r.createdAt) : null,
    error: r.error ?? (live && v.status !== "delivered" ? (v.message!.errorMessage ?? null) : null),
    timeline: timelineOf(v),
    createdAt: iso(r.createdAt),
    scheduledAt: r.scheduledAt === null ? null : iso(r.scheduledAt),
    idempotencyKey: r.idempotencyKey,
  };
}

export interface ListFilters {
  status?: SkStatus;
  channel?: string;
  template?: string;
  /** metadata[key]=value, each already coerced (number/boolean when the text parses as one). */
  metadata: { key: string; values: (string | number | boolean)[] }[];
}

/**
 * A page, newest first (created_at, then id). `cursor` is the public id of the last row of the
 * previous page; a cursor that is not a message of this tenant and mode gives an empty page.
 */
/** The WHERE of a list (tenant, mode, filters); ?1 is now, ?2 the tenant, ?3 the mode. */
function listWhere(scope: { tenantId: string; livemode: boolean }, filters: ListFilters, now: number) {
  const where: string[] = ["s.tenant_id = ?2", "s.livemode = ?3"];
  const params: unknown[] = [now, scope.tenantId, scope.livemode ? 1 : 0];
  const bind = (v: unknown) => {
    params.push(v);
    return `?${params.length}`;
  };
  if (filters.status) where.push(`(${STATUS_SQL}) = ${bind(filters.status)}`);
  if (filters.channel) where.push(`s.channel = ${bind(filters.channel)}`);
  if (filters.template) where.push(`s.template_slug = ${bind(filters.template.toLowerCase())}`);
  for (const m of filters.metadata) {
    // json_type tells a JSON number, boolean and string apart; the value is compared with its own type.
    const path = bind(`$."${m.key.replace(/["\\]/g, "")}"`);
    const alternatives = m.values.map((v) => {
      if (typeof v === "boolean") return `(json_type(s.metadata, ${path}) = ${bind(v ? "true" : "false")})`;
      const type = typeof v === "number" ? "('integer','real')" : "('text')";
      return `(json_type(s.metadata, ${path}) IN ${type} AND json_extract(s.metadata, ${path}) = ${bind(v)})`;
    });
    where.push(`(${alternatives.join(" OR ")})`);
  }
  return { where, params, bind };
}

const SELECT_JOINED = `SELECT s.*, (${STATUS_SQL}) AS sk_status, m.status AS m_status, m.error_message AS m_error,
    m.delivered_at AS m_delivered_at, m.message_id_header AS m_header, m.updated_at AS m_updated_at,
    max(s.updated_at, coalesce(m.updated_at, 0)) AS changed_at
  FROM sk_messages s LEFT JOIN messages m ON m.id = s.id AND m.tenant_id = s.tenant_id`;

/**
 * A page, newest first (created_at, then id). `cursor` is the public id of the last row of the
 * previous page; a cursor that is not a message of this tenant and mode gives an empty page.
 */
export async function listSkMessages(
  db: Db,
  scope: { tenantId: string; livemode: boolean },
  filters: ListFilters,
  page: { limit: number; cursor?: string },
  now: number,
): Promise<SkMessageView[]> {
  const { where, params, bind } = listWhere(scope, filters, now);
  if (page.cursor) {
    const c = bind(page.cursor);
    where.push(
      `(s.created_at, s.id) < (SELECT c.created_at, c.id FROM sk_messages c WHERE c.id = ${c} AND c.tenant_id = ?2 AND c.livemode = ?3)`,
    );
  }
  const limit = bind(page.limit);
  const rows = await db.$client
    .prepare(
      `${SELECT_JOINED} WHERE ${where.join(" AND ")} ORDER BY s.created_at DESC, s.id DESC LIMIT ${limit}`,
    )
    .bind(...params)
    .all<Record<string, unknown>>();
  const views = rows.results.map(viewOfJoined);
  await attachEvents(db, scope.tenantId, views);
  return views;
}

/** Rows (matching the filters) changed after `since`, oldest change first: the live tail's poll. */
export async function listChangedSkMessages(
  db: Db,
  scope: { tenantId: string; livemode: boolean },
  filters: ListFilters,
  since: number,
  limit: number,
  now: number,
): Promise<{ view: SkMessageView; changedAt: number }[]> {
  const { where, params, bind } = listWhere(scope, filters, now);
  const after = bind(since);
  // Bounded by the (tenant, mode, created_at) index: a message changes within its schedule window
  // (at most 30 days ahead) plus its delivery, so older rows are not looked at.
  where.push(`s.created_at >= ${bind(since - 32 * 24 * 3600 * 1000)}`);
  where.push(`(s.updated_at > ${after} OR m.updated_at > ${after})`);
  const rows = await db.$client
    .prepare(`${SELECT_JOINED} WHERE ${where.join(" AND ")} ORDER BY changed_at LIMIT ${bind(limit)}`)
    .bind(...params)
    .all<Record<string, unknown>>();
  const views = rows.results.map((r) => ({ view: viewOfJoined(r), changedAt: r.changed_at as number }));
  await attachEvents(
    db,
    scope.tenantId,
    views.map((v) => v.view),
  );
  return views;
}

function viewOfJoined(r: Record<string, unknown>): SkMessageView {
  return {
    row: fromD1(r),
    status: r.sk_status as SkStatus,
    message:
      r.m_status === null || r.m_status === undefined
        ? null
        : {
            status: r.m_status as MessageRow["status"],
            errorMessage: (r.m_error as string | null) ?? null,
            deliveredAt: (r.m_delivered_at as number | null) ?? null,
            messageIdHeader: r.m_header as string,
            updatedAt: r.m_updated_at as number,
          },
    events: [],
  };
}

/** The events of the live emails among `views`, one query. */
async function attachEvents(db: Db, tenantId: string, views: SkMessageView[]): Promise<void> {
  const ids = views.filter((v) => v.message !== null).map((v) => v.row.id);
  if (ids.length === 0) return;
  const rows = await db.$client
    .prepare(
      `SELECT message_id, event_type, timestamp, metadata, recipient_email FROM events
       WHERE tenant_id = ? AND message_id IN (SELECT value FROM json_each(?)) ORDER BY timestamp LIMIT 5000`,
    )
    .bind(tenantId, JSON.stringify(ids))
    .all<{
      message_id: string;
      event_type: string;
      timestamp: number;
      metadata: string | null;
      recipient_email: string;
    }>();
  const byId = new Map(views.map((v) => [v.row.id, v]));
  for (const e of rows.results) {
    byId.get(e.message_id)?.events.push({
      eventType: e.event_type as EventRow["eventType"],
      timestamp: e.timestamp,
      metadata: (e.metadata ? JSON.parse(e.metadata) : {}) as EventRow["metadata"],
      recipientEmail: e.recipient_email,
    });
  }
}

/** One message of this tenant and mode from D1, or null. */
export async function getSkMessage(
  db: Db,
  scope: { tenantId: string; livemode: boolean },
  id: string,
  now: number,
): Promise<SkMessageView | null> {
  const r = await db.$client
    .prepare(`${SELECT_JOINED} WHERE s.id = ?4 AND s.tenant_id = ?2 AND s.livemode = ?3`)
    .bind(now, scope.tenantId, scope.livemode ? 1 : 0, id)
    .first<Record<string, unknown>>();
  if (!r) return null;
  const v = viewOfJoined(r);
  await attachEvents(db, scope.tenantId, [v]);
  return v;
}

/** `metadata[key]=value` → the values it matches: the text, and the number or boolean it parses as. */
export function coerceMetadataValue(text: string): (string | number | boolean)[] {
  const out: (string | number | boolean)[] = [text];
  if (text === "true" || text === "false") out.push(text === "true");
  else if (text.trim() !== "" && Number.isFinite(Number(text))) out.push(Number(text));
  return out;
}

/** SenderKit's workspace id is a UUID: the tenant's id, hashed (SHA-256) into an RFC 9562 version-8 UUID. */
export async function workspaceUuid(tenantId: string): Promise<string> {
  const d = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`scaisend-workspace:${tenantId}`)),
  );
  d[6] = (d[6]! & 0x0f) | 0x80;
  d[8] = (d[8]! & 0x3f) | 0x80;
  const h = Array.from(d.slice(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
