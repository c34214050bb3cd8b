/**
 * D1 side of stats (docs/api/sendgrid.md#stats): reads of the `stats_daily` counters, and the rebuild
 * that recomputes a range of them from the events. The counters are written by the triggers of
 * migrations/0007_stats.sql as events are inserted (one row at a time, from NEW, so an insert costs
 * a few index probes); the rebuild reads the `events_stats_metrics` view of the same migration, which
 * maps events to metrics with the same expressions, and the tests check that both give the same
 * counters for every event type (test/edge/stats.test.ts). Every query is built from the tenant
 * `tenantStats` / `tenantStatsRebuild` was opened for.
 */
import { and, eq, gte, inArray, lte, ne, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { statsDaily } from "./schema.ts";

export interface CounterRow {
  category: string;
  day: string;
  metric: string;
  count: number;
}

export type CategoryScope = { kind: "global" } | { kind: "some"; names: string[] } | { kind: "all" };

// ?1 tenant, ?2 first day, ?3 last day (YYYY-MM-DD), ?4 and ?5 the same range in unix ms [start, end).
const DELETE_RANGE_SQL = `DELETE FROM stats_daily WHERE tenant_id = ?1 AND day >= ?2 AND day <= ?3`;

// The events' metrics, for all mail ('') and for each distinct category of the event's message,
// exactly as the trigger `events_stats_count` adds them one event at a time.
const EVENTS_SQL = `INSERT INTO stats_daily (tenant_id, category, day, metric, count)
  SELECT tenant_id, category, day, metric, count(*) FROM (
    SELECT v.event_rowid, v.tenant_id, '' AS category, v.day, v.metric FROM events_stats_metrics v
      WHERE v.tenant_id = ?1 AND v.timestamp >= ?4 AND v.timestamp < ?5
    UNION ALL
    SELECT DISTINCT v.event_rowid, v.tenant_id, j.value, v.day, v.metric FROM events_stats_metrics v
      JOIN messages ms ON ms.id = v.message_id AND ms.tenant_id = v.tenant_id, json_each(ms.categories) j
      WHERE v.tenant_id = ?1 AND v.timestamp >= ?4 AND v.timestamp < ?5 AND j.type = 'text'
  ) WHERE true GROUP BY tenant_id, category, day, metric`;

// `requests`: live messages by the day they were accepted, as the trigger `events_stats_requests`.
const REQUESTS_SQL = `INSERT INTO stats_daily (tenant_id, category, day, metric, count)
  SELECT tenant_id, category, day, 'requests', count(*) FROM (
    SELECT ms.id, ms.tenant_id, '' AS category, date(ms.created_at / 1000, 'unixepoch') AS day FROM messages ms
      WHERE ms.tenant_id = ?1 AND ms.mode = 'live' AND ms.created_at >= ?4 AND ms.created_at < ?5
    UNION ALL
    SELECT DISTINCT ms.id, ms.tenant_id, j.value, date(ms.created_at / 1000, 'unixepoch') FROM messages ms,
      json_each(ms.categories) j
      WHERE ms.tenant_id = ?1 AND ms.mode = 'live' AND ms.created_at >= ?4 AND ms.created_at < ?5 AND j.type = 'text'
  ) WHERE true GROUP BY tenant_id, category, day`;

/**
 * One tenant's counter rebuild, on the raw D1 binding (one batch of hand-written statements, each
 * bound to the tenant this was opened for).
 */
export function tenantStatsRebuild(d1: D1Database, tenantId: string) {
  /**
   * Recomputes the tenant's counters of `[fromDay, toDay]` from its events and messages, in one D1
   * batch (one transaction): the range's rows are deleted and written again, so a concurrent event
   * is either counted by its trigger after the batch or by the batch, never both and never lost.
   */
  async function rebuildCounters(fromDay: string, toDay: string): Promise<void> {
    const startMs = Date.parse(`${fromDay}T00:00:00Z`);
    const endMs = Date.parse(`${toDay}T00:00:00Z`) + 86_400_000;
    const args = [tenantId, fromDay, toDay, startMs, endMs];
    await d1.batch([
      d1.prepare(DELETE_RANGE_SQL).bind(...args.slice(0, 3)),
      d1.prepare(EVENTS_SQL).bind(...args),
      d1.prepare(REQUESTS_SQL).bind(...args),
    ]);
  }

  return { rebuildCounters };
}

/**
 * One tenant's stats: every query below is built from the tenant this was opened for, so another
 * tenant's rows are simply not there (a 404 upstream, like a made-up id).
 */
export function tenantStats(db: Db, tenantId: string) {
  /** The counters of `[fromDay, toDay]` (inclusive, YYYY-MM-DD) for all mail or for categories. */
  async function readCounters(fromDay: string, toDay: string, scope: CategoryScope): Promise<CounterRow[]> {
    const category =
      scope.kind === "global"
        ? eq(statsDaily.category, "")
        : scope.kind === "some"
          ? inArray(statsDaily.category, scope.names)
          : ne(statsDaily.category, "");
    return db
      .select({
        category: statsDaily.category,
        day: statsDaily.day,
        metric: statsDaily.metric,
        count: statsDaily.count,
      })
      .from(statsDaily)
      .where(
        and(
          eq(statsDaily.tenantId, tenantId),
          category,
          gte(statsDaily.day, fromDay),
          lte(statsDaily.day, toDay),
        ),
      );
  }

  /** Per category and metric, the sum over `[fromDay, toDay]` of every category's counters. */
  async function sumCategoryCounters(
    fromDay: string,
    toDay: string,
  ): Promise<{ category: string; metric: string; count: number }[]> {
    return db
      .select({
        category: statsDaily.category,
        metric: statsDaily.metric,
        count: sql<number>`sum(${statsDaily.count})`.mapWith(Number),
      })
      .from(statsDaily)
      .where(
        and(
          eq(statsDaily.tenantId, tenantId),
          ne(statsDaily.category, ""),
          gte(statsDaily.day, fromDay),
          lte(statsDaily.day, toDay),
        ),
      )
      .groupBy(statsDaily.category, statsDaily.metric);
  }

  return { readCounters, sumCategoryCounters };
}
