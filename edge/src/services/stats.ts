/**
 * Stats without I/O (docs/api/sendgrid.md#stats): SendGrid's 16 metrics, UTC calendar days, and
 * the day/week/month buckets the counters are summed into. Weeks are ISO weeks (Monday to Sunday)
 * and months calendar months; a bucket is named by its first day, or by the range's start date when
 * the range begins inside it, as SendGrid names its first bucket.
 */

/** SendGrid's metric names, in the order SendGrid lists them; every metrics object has all 16. */
export const METRICS = [
  "blocks",
  "bounce_drops",
  "bounces",
  "clicks",
  "deferred",
  "delivered",
  "invalid_emails",
  "opens",
  "processed",
  "requests",
  "spam_report_drops",
  "spam_reports",
  "unique_clicks",
  "unique_opens",
  "unsubscribe_drops",
  "unsubscribes",
] as const;
export type Metric = (typeof METRICS)[number];
export type Metrics = Record<Metric, number>;

const METRIC_SET: ReadonlySet<string> = new Set(METRICS);
export const isMetric = (s: string): s is Metric => METRIC_SET.has(s);

export function zeroMetrics(): Metrics {
  const out = {} as Metrics;
  for (const m of METRICS) out[m] = 0;
  return out;
}

export const AGGREGATIONS = ["day", "week", "month"] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

const DAY_MS = 86_400_000;
const DAY_FORMAT = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Unix ms of a valid YYYY-MM-DD calendar date (UTC midnight), else null. */
export function dayToMs(s: string): number | null {
  const m = DAY_FORMAT.exec(s);
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const ms = Date.UTC(y, mo - 1, d);
  const back = new Date(ms);
  // Date.UTC rolls 2026-02-30 over to March: a date that does not round-trip does not exist.
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return null;
  return ms;
}

export const msToDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/** Today's UTC date. */
export const today = (now: number): string => msToDay(now);

/** The first day of the bucket `day` falls in, no earlier than `start`. */
export function bucketOf(day: string, by: Aggregation, start: string): string {
  let first = day;
  if (by === "month") first = `${day.slice(0, 7)}-01`;
  else if (by === "week") {
    const ms = dayToMs(day)!;
    // getUTCDay: 0 = Sunday; ISO weeks start on Monday.
    const sinceMonday = (new Date(ms).getUTCDay() + 6) % 7;
    first = msToDay(ms - sinceMonday * DAY_MS);
  }
  return first < start ? start : first;
}

/** Every bucket of `[start, end]`, in order (one per day, week or month touched). */
export function bucketsOf(start: string, end: string, by: Aggregation): string[] {
  const out: string[] = [];
  const endMs = dayToMs(end)!;
  for (let ms = dayToMs(start)!; ms <= endMs; ms += DAY_MS) {
    const b = bucketOf(msToDay(ms), by, start);
    if (out[out.length - 1] !== b) out.push(b);
  }
  return out;
}

/** Days from `start` to `end`, both included. */
export const daysBetween = (start: string, end: string): number =>
  Math.round((dayToMs(end)! - dayToMs(start)!) / DAY_MS) + 1;

export function addCount(target: Metrics, metric: string, count: number): void {
  if (isMetric(metric)) target[metric] += count;
}

/** Counter rows summed per bucket: `[bucket date, metrics]` for every bucket of the range, zeros included. */
export function bucketize(
  rows: readonly { day: string; metric: string; count: number }[],
  start: string,
  end: string,
  by: Aggregation,
): Map<string, Metrics> {
  const out = new Map<string, Metrics>();
  for (const b of bucketsOf(start, end, by)) out.set(b, zeroMetrics());
  for (const r of rows) {
    const target = out.get(bucketOf(r.day, by, start));
    if (target) addCount(target, r.metric, r.count);
  }
  return out;
}

/** The totals of every metric over some counter rows. */
export function sumMetrics(rows: readonly { metric: string; count: number }[]): Metrics {
  const out = zeroMetrics();
  for (const r of rows) addCount(out, r.metric, r.count);
  return out;
}

const ratio = (n: number, d: number) => (d === 0 ? 0 : Math.round((n / d) * 10_000) / 10_000);

/** ScaiSend's /v3/stats/summary: totals, and rates as fractions (4 decimals; 0 when nothing was sent). */
export function summaryOf(m: Metrics) {
  const drops = m.bounce_drops + m.spam_report_drops + m.unsubscribe_drops + m.invalid_emails;
  return {
    total_messages: m.requests,
    delivered: m.delivered,
    bounces: m.bounces,
    deferred: m.deferred,
    drops,
    unique_opens: m.unique_opens,
    unique_clicks: m.unique_clicks,
    spam_reports: m.spam_reports,
    unsubscribes: m.unsubscribes,
    delivery_rate: ratio(m.delivered, m.processed),
    open_rate: ratio(m.unique_opens, m.delivered),
    click_rate: ratio(m.unique_clicks, m.delivered),
  };
}
