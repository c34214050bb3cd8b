/**
 * Test mode (`sk_test_` keys, docs/api/senderkit.md#test-mode): a message is never handed to an
 * origin or a provider. Its hub shard accepts it (one call, like a live send) and synthesizes
 * SenderKit's lifecycle on a timeline, driven by the hub's alarm:
 *
 *   [scheduled → at scheduledAt] queued → +STEP_MS.rendered rendered → +STEP_MS.sent a `dispatched`
 *   timeline entry and status sent → +STEP_MS.delivered delivered (terminal).
 *
 * Invariants (table `sk_test` in the hub's SQLite):
 *  - Accept writes the rows (and the Idempotency-Key, in the hub's `idempotency` table under the
 *    `sk:test:` namespace) in one transaction; a replay returns the first request's ids.
 *  - Every state change is decided synchronously inside the object (`advance`, `cancel`), so a
 *    cancel and the next step never interleave: exactly one wins. D1 is a projection, written after:
 *    each change bumps the row's `version` and marks it dirty; a D1 write clears `dirty` only for
 *    the version it wrote, and a terminal row leaves the table once D1 has its final version.
 *    A failed D1 write is retried by the alarm (RETRY_MS), so every message reaches D1 terminal.
 *  - A row is read-your-writes until D1 has it (`view`).
 */
import type { SkMessageRow, SkTimelineEntry } from "../../db/sk-messages.ts";
import { skStageStatements } from "../../db/sk-messages.ts";

/** Delay before each synthesized step (a realistic, quick timeline: a poll right after sees it done). */
export const STEP_MS = { rendered: 120, sent: 250, delivered: 800 } as const;
export const RETRY_MS = 1_000;
const WRITE_BATCH = 100;
/** Hub idempotency rows of test sends live this long, like /v3's (IDEMPOTENCY_TTL_MS). */
export const TEST_IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

export interface SkTestAccept {
  tenantId: string;
  rows: SkMessageRow[];
  idempotency?: { key: string; bodyHash: string };
}

export type SkTestAcceptResult =
  { ok: true; messageIds: string[]; replayed: boolean } | { ok: false; reason: "idempotency_conflict" };

export type SkCancelOutcome =
  { outcome: "canceled" } | { outcome: "not_cancelable"; status: string } | { outcome: "absent" };

const TERMINAL = new Set(["delivered", "failed", "opted_out", "canceled"]);
const iso = (ms: number) => new Date(ms).toISOString();

export function ensureSkTestTables(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS sk_test (
    message_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    row TEXT NOT NULL,
    next_at INTEGER,
    dirty INTEGER NOT NULL DEFAULT 1,
    version INTEGER NOT NULL DEFAULT 1
  )`);
  sql.exec("CREATE INDEX IF NOT EXISTS sk_test_next ON sk_test(next_at) WHERE next_at IS NOT NULL");
  sql.exec("CREATE INDEX IF NOT EXISTS sk_test_dirty ON sk_test(dirty) WHERE dirty = 1");
}

/** The next step of a status, and when it is due; null: terminal. */
function nextStep(row: SkMessageRow, now: number): number | null {
  switch (row.status) {
    case "scheduled":
      return Math.max(now, row.scheduledAt ?? now);
    case "queued":
      return now + STEP_MS.rendered;
    case "rendered":
      return now + STEP_MS.sent;
    case "sent":
      return now + STEP_MS.delivered;
    default:
      return null;
  }
}

function step(row: SkMessageRow, now: number): SkMessageRow {
  const add = (...e: SkTimelineEntry[]) => [...row.timeline, ...e];
  const t = iso(now);
  switch (row.status) {
    case "scheduled":
      return { ...row, status: "queued", timeline: add({ t, e: "queued" }), updatedAt: now };
    case "queued":
      return { ...row, status: "rendered", timeline: add({ t, e: "rendered" }), updatedAt: now };
    case "rendered":
      return {
        ...row,
        status: "sent",
        timeline: add({ t, e: "dispatched", test: true }, { t, e: "sent" }),
        updatedAt: now,
      };
    default:
      return { ...row, status: "delivered", timeline: add({ t, e: "delivered" }), updatedAt: now };
  }
}

export function acceptTest(sql: SqlStorage, req: SkTestAccept, now: number): SkTestAcceptResult {
  if (req.idempotency) {
    sql.exec("DELETE FROM idempotency WHERE created_at <= ?", now - TEST_IDEMPOTENCY_TTL_MS);
    const prior = sql
      .exec<{ body_hash: string; message_ids: string }>(
        "SELECT body_hash, message_ids FROM idempotency WHERE tenant_id = ? AND key = ?",
        req.tenantId,
        req.idempotency.key,
      )
      .toArray()[0];
    if (prior) {
      return prior.body_hash === req.idempotency.bodyHash
        ? { ok: true, messageIds: JSON.parse(prior.message_ids) as string[], replayed: true }
        : { ok: false, reason: "idempotency_conflict" };
    }
  }
  for (const row of req.rows) {
    if (row.tenantId !== req.tenantId) throw new Error("acceptTest: a message of another tenant");
    sql.exec(
      "INSERT INTO sk_test (message_id, tenant_id, row, next_at) VALUES (?, ?, ?, ?)",
      row.id,
      row.tenantId,
      JSON.stringify(row),
      nextStep(row, now),
    );
  }
  if (req.idempotency) {
    sql.exec(
      "INSERT INTO idempotency (tenant_id, key, body_hash, message_ids, created_at) VALUES (?, ?, ?, ?, ?)",
      req.tenantId,
      req.idempotency.key,
      req.idempotency.bodyHash,
      JSON.stringify(req.rows.map((r) => r.id)),
      now,
    );
  }
  return { ok: true, messageIds: req.rows.map((r) => r.id), replayed: false };
}

/** Moves every due row one step (call inside a transaction); returns how many moved. */
export function advanceDue(sql: SqlStorage, now: number): number {
  const due = sql
    .exec<{ message_id: string; row: string }>(
      "SELECT message_id, row FROM sk_test WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT 500",
      now,
    )
    .toArray();
  for (const d of due) {
    const next = step(JSON.parse(d.row) as SkMessageRow, now);
    sql.exec(
      "UPDATE sk_test SET row = ?, next_at = ?, dirty = 1, version = version + 1 WHERE message_id = ?",
      JSON.stringify(next),
      nextStep(next, now),
      d.message_id,
    );
  }
  return due.length;
}

/** Rows whose latest version D1 does not have yet. */
export function dirtyRows(sql: SqlStorage): { id: string; version: number; row: SkMessageRow }[] {
  return sql
    .exec<{ message_id: string; version: number; row: string }>(
      "SELECT message_id, version, row FROM sk_test WHERE dirty = 1 LIMIT ?",
      WRITE_BATCH,
    )
    .toArray()
    .map((r) => ({ id: r.message_id, version: r.version, row: JSON.parse(r.row) as SkMessageRow }));
}

/** After D1 took `written`: clean those versions, and drop terminal rows D1 has in full. */
export function markWritten(sql: SqlStorage, written: { id: string; version: number }[]): void {
  for (const w of written) {
    sql.exec("UPDATE sk_test SET dirty = 0 WHERE message_id = ? AND version = ?", w.id, w.version);
  }
  sql.exec("DELETE FROM sk_test WHERE dirty = 0 AND next_at IS NULL");
}

/** When the alarm must next run for test messages (null: nothing waits). */
export function nextWake(sql: SqlStorage, now: number): number | null {
  const dirty = sql.exec<{ n: number }>("SELECT count(*) AS n FROM sk_test WHERE dirty = 1").one().n;
  const next = sql.exec<{ t: number | null }>("SELECT min(next_at) AS t FROM sk_test").one().t;
  const candidates = [next, dirty > 0 ? now + RETRY_MS : null].filter((t): t is number => t !== null);
  return candidates.length > 0 ? Math.min(...candidates) : null;
}

/** DELETE /v1/messages/{id} of a test message: only while scheduled or queued, decided here. */
export function cancelTest(sql: SqlStorage, tenantId: string, id: string, now: number): SkCancelOutcome {
  const found = sql
    .exec<{ row: string }>("SELECT row FROM sk_test WHERE message_id = ? AND tenant_id = ?", id, tenantId)
    .toArray()[0];
  if (!found) return { outcome: "absent" };
  const row = JSON.parse(found.row) as SkMessageRow;
  if (row.status !== "scheduled" && row.status !== "queued") {
    return { outcome: "not_cancelable", status: row.status ?? "queued" };
  }
  const next: SkMessageRow = {
    ...row,
    status: "canceled",
    timeline: [...row.timeline, { t: iso(now), e: "canceled" }],
    updatedAt: now,
  };
  sql.exec(
    "UPDATE sk_test SET row = ?, next_at = NULL, dirty = 1, version = version + 1 WHERE message_id = ?",
    JSON.stringify(next),
    id,
  );
  return { outcome: "canceled" };
}

/** Read-your-writes: the row as this shard has it while D1 may not (null once it left the table). */
export function view(sql: SqlStorage, tenantId: string, id: string): SkMessageRow | null {
  const found = sql
    .exec<{ row: string }>("SELECT row FROM sk_test WHERE message_id = ? AND tenant_id = ?", id, tenantId)
    .toArray()[0];
  return found ? (JSON.parse(found.row) as SkMessageRow) : null;
}

export const isTerminal = (status: string | null) => status !== null && TERMINAL.has(status);

/**
 * One tick, run by the hub's alarm and after every accept or cancel: due rows move on, then what
 * changed is written to D1; returns when the alarm must run again (null: nothing waits).
 */
export async function tick(
  storage: DurableObjectStorage,
  d1: D1Database,
  now: () => number,
): Promise<number | null> {
  const sql = storage.sql;
  storage.transactionSync(() => advanceDue(sql, now()));
  for (let round = 0; round < 10; round++) {
    const dirty = dirtyRows(sql);
    if (dirty.length === 0) break;
    try {
      await d1.batch(
        skStageStatements(
          d1,
          dirty.map((d) => d.row),
        ),
      );
    } catch (err) {
      console.error(
        JSON.stringify({
          level: "warn",
          msg: "senderkit test lifecycle: D1 write failed, retried by the alarm",
          error: err instanceof Error ? err.message : String(err),
        }),
      );
      break;
    }
    storage.transactionSync(() => markWritten(sql, dirty));
    if (dirty.length < WRITE_BATCH) break;
  }
  return nextWake(sql, now());
}
