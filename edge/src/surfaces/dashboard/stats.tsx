/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Stats (docs/dashboard.md#pages): SendGrid's 16 metrics per UTC day over a range (default: the last
 * 30 days), for all mail or one category, read with the same counters and bucketing as GET /v3/stats
 * and GET /v3/categories/stats (db/stats.ts, services/stats.ts). The table is the page; the chart (uPlot, drawn by /app/assets/stats-….js from
 * the page's JSON data island) is an enhancement over it.
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import { tenantStats } from "../../db/stats.ts";
import { METRICS, bucketize, dayToMs, daysBetween, msToDay, today } from "../../services/stats.ts";
import { Page } from "./layout.tsx";
import { dashboardPermission, type DashboardEnv } from "./session.ts";

const DEFAULT_DAYS = 30;
const MAX_DAYS = 366;
/** The series the chart shows at first; the legend turns on the others. */
const SHOWN = ["requests", "delivered", "bounces", "deferred", "opens", "clicks"];
const PARAMS = new Set(["start_date", "end_date", "category"]);

function rangeOf(q: Record<string, string>, now: number): { start: string; end: string } {
  const end = q.end_date || today(now);
  const start = q.start_date || msToDay(Date.parse(`${end}T00:00:00Z`) - (DEFAULT_DAYS - 1) * 86_400_000);
  for (const [k, v] of [
    ["start_date", start],
    ["end_date", end],
  ] as const) {
    if (dayToMs(v) === null) throw new AppError("invalid_request", `${k} must be a date (YYYY-MM-DD)`);
  }
  if (start > end) throw new AppError("invalid_request", "start_date must not be after end_date");
  if (daysBetween(start, end) > MAX_DAYS)
    throw new AppError("invalid_request", `A range may span at most ${MAX_DAYS} days`);
  return { start, end };
}

/** `?category=`: empty or absent is all mail; a name is 1 to 255 characters, as the API takes it. */
function categoryOf(q: Record<string, string>): string | null {
  const v = (q.category ?? "").trim();
  if (v === "") return null;
  if (v.length > 255) throw new AppError("invalid_request", "category must be 1 to 255 characters");
  return v;
}

export const statsPages = new Hono<DashboardEnv>().get("/stats", dashboardPermission(), async (c) => {
  const session = c.get("session");
  const q = c.req.query();
  const extra = Object.keys(q).filter((k) => !PARAMS.has(k));
  if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
  const { start, end } = rangeOf(q, Date.now());
  const category = categoryOf(q);
  const stats = tenantStats(c.get("db"), session.tenantId);
  // The selector lists the categories with stats in the range (as GET /v3/categories/stats/sums
  // sums them); the one shown is read as GET /v3/categories/stats?categories=<name> reads it.
  const [rows, sums] = await Promise.all([
    stats.readCounters(
      start,
      end,
      category === null ? { kind: "global" } : { kind: "some", names: [category] },
    ),
    stats.sumCategoryCounters(start, end),
  ]);
  const categories = [...new Set(sums.map((r) => r.category))].sort();
  if (category !== null && !categories.includes(category)) categories.unshift(category);
  const days = [...bucketize(rows, start, end, "day")];
  const island = {
    metrics: METRICS,
    shown: SHOWN,
    days: days.map(([d]) => d),
    values: Object.fromEntries(METRICS.map((m) => [m, days.map(([, v]) => v[m])])),
  };
  return c.html(
    <Page title="Stats" session={session} current="/app/stats" scripts={["stats"]}>
      <form method="get" action="/app/stats" class="filters">
        <label>
          From (UTC)
          <input type="date" name="start_date" value={start} />
        </label>
        <label>
          To (UTC)
          <input type="date" name="end_date" value={end} />
        </label>
        <label>
          Category
          <select name="category">
            <option value="" selected={category === null}>
              All mail
            </option>
            {categories.map((n) => (
              <option value={n} selected={n === category}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Show</button>
      </form>
      <div
        id="stats-chart"
        class="chart"
        role="img"
        aria-label="Chart of the metrics per day; the table below has the numbers"
      ></div>
      {/* JSON, not script: the CSP runs no inline script. `<` is escaped so the data cannot end the element. */}
      <script
        type="application/json"
        id="stats-data"
        dangerouslySetInnerHTML={{ __html: JSON.stringify(island).replace(/</g, "\\u003c") }}
      ></script>
      <div class="table-wrap">
        <table id="stats-table">
          <caption>
            {category === null
              ? "Metrics per day (UTC), all mail"
              : `Metrics per day (UTC), category “${category}”`}
          </caption>
          <thead>
            <tr>
              <th scope="col">Day</th>
              {METRICS.map((m) => (
                <th scope="col" class="num">
                  {m}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {days.map(([day, v]) => (
              <tr>
                <th scope="row">{day}</th>
                {METRICS.map((m) => (
                  <td class="num">{v[m]}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Page>,
  );
});
