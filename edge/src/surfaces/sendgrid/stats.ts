/**
 * Stats (docs/api/sendgrid.md#stats): SendGrid's `/v3/categories/stats` and `/stats/sums`, and
 * ScaiSend's `/v3/stats`, `/v3/stats/categories`, `/v3/stats/summary`, `/v3/stats/sum` and
 * `POST /v3/stats/rebuild`. Reads need `stats.read`, the rebuild `stats.export`. The counters move as
 * events are recorded (migrations/0007_stats.sql), so there is no next-day lag; days are UTC.
 *
 * Shapes: `/v3/stats` answers ScaiSend's `{"stats":[{date, metrics}]}` (SendGrid's bare array cannot
 * be the same body); a category entry carries ScaiSend's `category` beside SendGrid's
 * `type: "category"` and `name`. Request problems answer SendGrid's `{"errors":[{field, message}]}`;
 * a parameter the endpoint does not take is refused, never ignored.
 */
import { Hono, type Context } from "hono";
import { AppError, type FieldError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { type CategoryScope, tenantStats, tenantStatsRebuild } from "../../db/stats.ts";
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import {
  AGGREGATIONS,
  bucketize,
  dayToMs,
  daysBetween,
  isMetric,
  METRICS,
  msToDay,
  sumMetrics,
  summaryOf,
  today,
  zeroMetrics,
  type Aggregation,
  type Metric,
  type Metrics,
} from "../../services/stats.ts";
import { renderSendGrid } from "../errors.ts";

/** The calling tenant's stats (db/stats.ts): every query is bound to it. */
const statsOf = (c: Context<AppEnv>) => tenantStats(c.get("db"), tenantOf(c));

/** The longest range a read covers (about three years of days). */
export const MAX_RANGE_DAYS = 1096;
/** The longest range one rebuild recomputes. */
export const MAX_REBUILD_DAYS = 366;
/** At most this many categories per request (SendGrid's limit for /v3/categories/stats). */
export const MAX_CATEGORIES = 10;
export const STATS_RATE_LIMIT = 50;
/** Without a `categories` filter, /v3/stats/categories lists at most this many (else a 400). */
export const MAX_UNFILTERED_CATEGORIES = 100;

const fieldError = (field: string | null, message: string): FieldError => ({ field, message, help: null });
const badRequest = (field: string | null, message: string) =>
  new AppError("invalid_request", "Bad Request", { fields: [fieldError(field, message)] });

function tenantOf(c: Context<AppEnv>): string {
  const p = c.get("principal");
  if (p.kind === "operator")
    throw new AppError("forbidden", "Stats belong to a tenant: use one of its API keys");
  return p.tenantId;
}

/** The query string as name → values; `categories[]` (axios's spelling of a list) is `categories`. */
function queryOf(c: Context<AppEnv>, allowed: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [rawName, values] of Object.entries(c.req.queries())) {
    const name = rawName === "categories[]" ? "categories" : rawName;
    if (!allowed.includes(name)) {
      throw badRequest(name, `${name} is not a parameter of this endpoint (it takes ${allowed.join(", ")})`);
    }
    out.set(name, [...(out.get(name) ?? []), ...values]);
  }
  for (const [name, values] of out) {
    if (name !== "categories" && values.length > 1) throw badRequest(name, `${name} may be given once`);
  }
  return out;
}

const one = (q: Map<string, string[]>, name: string): string | undefined => q.get(name)?.[0];

function dateParam(q: Map<string, string[]>, name: string): string | undefined {
  const v = one(q, name);
  if (v === undefined) return undefined;
  if (dayToMs(v) === null) throw badRequest(name, `${name} must be a date in the format YYYY-MM-DD`);
  return v;
}

interface Range {
  start: string;
  end: string;
}

function rangeOf(q: Map<string, string[]>, maxDays: number, fallbackStart?: (end: string) => string): Range {
  const end = dateParam(q, "end_date") ?? today(Date.now());
  const start = dateParam(q, "start_date") ?? fallbackStart?.(end);
  if (start === undefined) throw badRequest("start_date", "missing required argument");
  if (end < start) throw badRequest("end_date", "end_date must not be before start_date");
  if (daysBetween(start, end) > maxDays) {
    throw badRequest("end_date", `the range from start_date to end_date covers at most ${maxDays} days`);
  }
  return { start, end };
}

function aggregationOf(q: Map<string, string[]>): Aggregation {
  const v = one(q, "aggregated_by") ?? "day";
  if (!(AGGREGATIONS as readonly string[]).includes(v)) {
    throw badRequest("aggregated_by", `aggregated_by must be one of ${AGGREGATIONS.join(", ")}`);
  }
  return v as Aggregation;
}

function intParam(
  q: Map<string, string[]>,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const v = one(q, name);
  if (v === undefined) return fallback;
  if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) {
    throw badRequest(name, `${name} must be an integer from ${min} to ${max}`);
  }
  return Number(v);
}

/** Category names: repeated (`categories=a&categories=b`, SendGrid) or comma-separated (ScaiSend). */
function categoriesOf(q: Map<string, string[]>, required: boolean): string[] | undefined {
  const raw = q.get("categories");
  if (raw === undefined) {
    if (required) throw badRequest("categories", "missing required argument");
    return undefined;
  }
  const names = [...new Set(raw.flatMap((v) => v.split(",")).map((v) => v.trim()))];
  if (names.some((n) => n === "" || n.length > 255)) {
    throw badRequest("categories", "each category must be 1 to 255 characters");
  }
  if (names.length > MAX_CATEGORIES) {
    throw badRequest("categories", `at most ${MAX_CATEGORIES} categories per request`);
  }
  return names;
}

const categoryEntry = (name: string, metrics: Metrics) => ({
  type: "category",
  name,
  category: name,
  metrics,
});

/** Per bucket, per category (in the order given, zeros included): the categories read. */
async function categoryBuckets(
  c: Context<AppEnv>,
  range: Range,
  by: Aggregation,
  names: string[] | undefined,
) {
  const scope: CategoryScope = names ? { kind: "some", names } : { kind: "all" };
  const rows = await statsOf(c).readCounters(range.start, range.end, scope);
  const listed = names ?? [...new Set(rows.map((r) => r.category))].sort();
  if (listed.length > MAX_UNFILTERED_CATEGORIES) {
    throw badRequest(
      "categories",
      `${listed.length} categories have stats in this range; name at most ${MAX_CATEGORIES} with categories`,
    );
  }
  const perCategory = new Map(
    listed.map((n) => [
      n,
      bucketize(
        rows.filter((r) => r.category === n),
        range.start,
        range.end,
        by,
      ),
    ]),
  );
  const dates = [...bucketize([], range.start, range.end, by).keys()];
  return dates.map((date) => ({
    date,
    stats: listed.map((n) => categoryEntry(n, perCategory.get(n)!.get(date)!)),
  }));
}

const READ_RANGE = ["start_date", "end_date"] as const;

export const statsApi = new Hono<AppEnv>()
  .use(authenticate())
  .use(rateLimit(RATE_LIMITS.stats))
  .get("/", routePermission(), async (c) => {
    const q = queryOf(c, [...READ_RANGE, "aggregated_by", "limit", "offset"]);
    const range = rangeOf(q, MAX_RANGE_DAYS);
    const by = aggregationOf(q);
    const limit = intParam(q, "limit", MAX_RANGE_DAYS, 1, MAX_RANGE_DAYS);
    const offset = intParam(q, "offset", 0, 0, MAX_RANGE_DAYS);
    const rows = await statsOf(c).readCounters(range.start, range.end, {
      kind: "global",
    });
    const buckets = [...bucketize(rows, range.start, range.end, by)].slice(offset, offset + limit);
    return c.json({ stats: buckets.map(([date, metrics]) => ({ date, metrics })) }, 200);
  })
  .get("/categories", routePermission(), async (c) => {
    const q = queryOf(c, [...READ_RANGE, "categories", "aggregated_by"]);
    const range = rangeOf(q, MAX_RANGE_DAYS);
    return c.json(await categoryBuckets(c, range, aggregationOf(q), categoriesOf(q, false)), 200);
  })
  .get("/summary", routePermission(), async (c) => {
    const range = rangeOf(queryOf(c, READ_RANGE), MAX_RANGE_DAYS);
    const rows = await statsOf(c).readCounters(range.start, range.end, {
      kind: "global",
    });
    return c.json({ start_date: range.start, end_date: range.end, ...summaryOf(sumMetrics(rows)) }, 200);
  })
  .get("/sum", routePermission(), async (c) => {
    const range = rangeOf(queryOf(c, READ_RANGE), MAX_RANGE_DAYS);
    const rows = await statsOf(c).readCounters(range.start, range.end, {
      kind: "global",
    });
    return c.json(sumMetrics(rows), 200);
  })
  .post("/rebuild", routePermission(), rateLimit(RATE_LIMITS.statsRebuild), async (c) => {
    const q = queryOf(c, READ_RANGE);
    const body = await c.req.text();
    if (body.trim() !== "" && body.trim() !== "{}") {
      throw badRequest(null, "POST /v3/stats/rebuild takes its range in the query string, and no body");
    }
    // Default: the last 30 days, today included.
    const range = rangeOf(q, MAX_REBUILD_DAYS, (end) => msToDay(dayToMs(end)! - 29 * 86_400_000));
    await tenantStatsRebuild(c.env.DB, tenantOf(c)).rebuildCounters(range.start, range.end);
    return c.json({ rebuilt: true, start_date: range.start, end_date: range.end }, 200);
  });

statsApi.onError(renderSendGrid);

/** SendGrid's `/v3/categories/stats` and `/v3/categories/stats/sums`. */
export const categoryStatsApi = new Hono<AppEnv>()
  .use(authenticate())
  .use(rateLimit(RATE_LIMITS.stats))
  .get("/stats", routePermission(), async (c) => {
    const q = queryOf(c, [...READ_RANGE, "categories", "aggregated_by", "limit", "offset"]);
    const range = rangeOf(q, MAX_RANGE_DAYS);
    const by = aggregationOf(q);
    const limit = intParam(q, "limit", MAX_RANGE_DAYS, 1, MAX_RANGE_DAYS);
    const offset = intParam(q, "offset", 0, 0, MAX_RANGE_DAYS);
    const buckets = await categoryBuckets(c, range, by, categoriesOf(q, true));
    return c.json(buckets.slice(offset, offset + limit), 200);
  })
  .get("/stats/sums", routePermission(), async (c) => {
    const q = queryOf(c, [
      ...READ_RANGE,
      "sort_by_metric",
      "sort_by_direction",
      "limit",
      "offset",
      "aggregated_by",
    ]);
    const range = rangeOf(q, MAX_RANGE_DAYS);
    // Accepted as SendGrid accepts it; a sum over the range is the same however it is bucketed.
    aggregationOf(q);
    const metric = one(q, "sort_by_metric") ?? "delivered";
    if (!isMetric(metric))
      throw badRequest("sort_by_metric", `sort_by_metric must be one of ${METRICS.join(", ")}`);
    const direction = one(q, "sort_by_direction") ?? "desc";
    if (direction !== "asc" && direction !== "desc") {
      throw badRequest("sort_by_direction", "sort_by_direction must be asc or desc");
    }
    const limit = intParam(q, "limit", 5, 1, 500);
    const offset = intParam(q, "offset", 0, 0, 1_000_000);
    const sums = new Map<string, Metrics>();
    for (const r of await statsOf(c).sumCategoryCounters(range.start, range.end)) {
      let m = sums.get(r.category);
      if (!m) sums.set(r.category, (m = zeroMetrics()));
      if (isMetric(r.metric)) m[r.metric] += r.count;
    }
    const sign = direction === "asc" ? 1 : -1;
    const by = metric as Metric;
    const sorted = [...sums].sort(
      ([a, ma], [b, mb]) => sign * (ma[by] - mb[by]) || (a < b ? -1 : a > b ? 1 : 0),
    );
    return c.json(
      {
        date: range.start,
        stats: sorted.slice(offset, offset + limit).map(([name, m]) => categoryEntry(name, m)),
      },
      200,
    );
  });

categoryStatsApi.onError(renderSendGrid);
