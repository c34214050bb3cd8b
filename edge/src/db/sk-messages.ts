/**
 * SenderKit's message rows (`sk_messages`, docs/api/senderkit.md#messages): the hub's writes (a live
 * email's row with its catalog rows; a test-mode message's synthesized stages) and the /v1 reads.
 * Every read is built from the tenant and environment it was opened for, so another workspace's or
 * the other mode's message is simply not there (→ 404 upstream).
 */
import { jsonListStatements } from "./messages.ts";
import type { skMessages } from "./schema.ts";

export type SkMessageRow = typeof skMessages.$inferSelect;
export type SkChannel = SkMessageRow["channel"];
export type SkTimelineEntry = SkMessageRow["timeline"][number];

/** Columns in the order the JSON rows of the write statements carry them. */
const COLUMNS = [
  "id",
  "uuid",
  "tenant_id",
  "livemode",
  "channel",
  "recipient",
  "template_slug",
  "pinned_version",
  "vars",
  "metadata",
  "from_override",
  "interpolate",
  "idempotency_key",
  "scheduled_at",
  "status",
  "error",
  "timeline",
  "provider",
  "created_at",
  "updated_at",
] as const;

function asJsonRow(r: SkMessageRow): unknown[] {
  return [
    r.id,
    r.uuid,
    r.tenantId,
    r.livemode ? 1 : 0,
    r.channel,
    r.recipient,
    r.templateSlug,
    r.pinnedVersion,
    JSON.stringify(r.vars),
    JSON.stringify(r.metadata),
    r.fromOverride,
    r.interpolate ? 1 : 0,
    r.idempotencyKey,
    r.scheduledAt,
    r.status,
    r.error,
    JSON.stringify(r.timeline),
    r.provider,
    r.createdAt,
    r.updatedAt,
  ];
}

const SELECT_JSON = COLUMNS.map((_, i) => `json_extract(value, '$[${i}]')`).join(", ");
const INSERT = `INSERT INTO sk_messages (${COLUMNS.join(", ")}) SELECT ${SELECT_JSON} FROM json_each(?) WHERE true`;

/**
 * The hub's catalog flush: rows written once (ON CONFLICT DO NOTHING on the id), so a replayed flush
 * changes nothing; they go in the same D1 batch as, and after, their `messages` rows.
 */
export function skCatalogStatements(d1: D1Database, rows: readonly SkMessageRow[]): D1PreparedStatement[] {
  if (rows.length === 0) return [];
  return jsonListStatements(d1, `${INSERT} ON CONFLICT(id) DO NOTHING`, [], rows.map(asJsonRow));
}

/**
 * A test-mode message's synthesized stage (services/senderkit/test-lifecycle.ts): the whole row,
 * inserted or brought forward; an older write arriving late (a replay) never moves it back.
 */
export function skStageStatements(d1: D1Database, rows: readonly SkMessageRow[]): D1PreparedStatement[] {
  if (rows.length === 0) return [];
  return jsonListStatements(
    d1,
    `${INSERT} ON CONFLICT(id) DO UPDATE SET status = excluded.status, timeline = excluded.timeline,
       error = excluded.error, provider = excluded.provider, updated_at = excluded.updated_at
     WHERE excluded.updated_at >= sk_messages.updated_at`,
    [],
    rows.map(asJsonRow),
  );
}

/** A D1 row (snake_case, JSON as text) → SkMessageRow. */
export function fromD1(r: Record<string, unknown>): SkMessageRow {
  const json = <T>(v: unknown, fallback: T): T => (typeof v === "string" ? (JSON.parse(v) as T) : fallback);
  return {
    id: r.id as string,
    uuid: r.uuid as string,
    tenantId: r.tenant_id as string,
    livemode: Boolean(r.livemode),
    channel: r.channel as SkChannel,
    recipient: r.recipient as string,
    templateSlug: (r.template_slug as string | null) ?? null,
    pinnedVersion: (r.pinned_version as number | null) ?? null,
    vars: json(r.vars, {}),
    metadata: json(r.metadata, {}),
    fromOverride: (r.from_override as string | null) ?? null,
    interpolate: Boolean(r.interpolate),
    idempotencyKey: (r.idempotency_key as string | null) ?? null,
    scheduledAt: (r.scheduled_at as number | null) ?? null,
    status: (r.status as string | null) ?? null,
    error: (r.error as string | null) ?? null,
    timeline: json(r.timeline, []),
    provider: (r.provider as string | null) ?? null,
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
  };
}
