/**
 * Stats (docs/api/sendgrid.md#stats): the counters of migrations/0007_stats.sql, moved by D1
 * triggers as events are written, and the endpoints that read and rebuild them. Events and messages
 * are written with the hub's own statement builders (edge/src/db/messages.ts, db/inbound-events.ts)
 * into the test's D1, at fixed past dates so that day, week and month buckets can be checked exactly;
 * every test has its own tenant.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { catalogStatements, resultStatements, type NewEvent } from "../../edge/src/db/messages.ts";
import { METRICS } from "../../edge/src/services/stats.ts";
import { bearer, call, createApiKey, createTenant, uid } from "./helpers.ts";

type Metrics = Record<(typeof METRICS)[number], number>;

interface Fixture {
  tenantId: string;
  key: string;
}

async function fixture(): Promise<Fixture> {
  const tenantId = await createTenant();
  const { key } = await createApiKey(tenantId, { scopes: ["stats.read", "stats.export"] });
  return { tenantId, key };
}

const ms = (day: string, hour = 12) => Date.parse(`${day}T${String(hour).padStart(2, "0")}:00:00Z`);

function messageRow(
  tenantId: string,
  createdAt: number,
  categories: string[],
  mode: "live" | "sandbox" = "live",
) {
  const id = `msg_${uid()}`;
  return {
    id,
    tenantId,
    status: "queued" as const,
    mode,
    fromEmail: "sender@example.com",
    subject: "s",
    toEmails: ["rcpt@example.net"],
    recipients: { to: [{ email: "rcpt@example.net" }], cc: [], bcc: [], replyTo: [] },
    headers: {},
    categories,
    customArgs: {},
    messageIdHeader: `${id}@example.com`,
    createdAt,
    updatedAt: createdAt,
  };
}

/** Writes live messages (and their `processed` events) as the hub's catalog flush does. */
async function catalog(tenantId: string, createdAt: number, categories: string[] = [], n = 1) {
  const rows = Array.from({ length: n }, () => messageRow(tenantId, createdAt, categories));
  const events: NewEvent[] = rows.map((r) => ({
    id: `evt_${uid()}`,
    tenantId,
    messageId: r.id,
    eventType: "processed",
    recipientEmail: "rcpt@example.net",
    timestamp: createdAt,
    attempt: 0,
    metadata: {},
  }));
  const recipients = rows.map((r) => ({
    messageId: r.id,
    tenantId,
    email: "rcpt@example.net",
    kind: "to" as const,
  }));
  const statements = catalogStatements(env.DB, rows, recipients, events);
  await env.DB.batch(statements);
  return { rows, statements };
}

function ev(
  tenantId: string,
  messageId: string,
  type: NewEvent["eventType"],
  at: number,
  metadata: Record<string, unknown> = {},
  attempt = 1,
  recipient = "rcpt@example.net",
): NewEvent {
  return {
    id: `evt_${uid()}`,
    tenantId,
    messageId,
    eventType: type,
    recipientEmail: recipient,
    timestamp: at,
    attempt,
    metadata,
  };
}

/** Writes events as the hub's result flush does (ON CONFLICT DO NOTHING on the id and the dedupe key). */
async function results(messageId: string, events: NewEvent[]) {
  await env.DB.batch(
    resultStatements(env.DB, [
      { messageId, now: Date.now(), events, recipientStatuses: [], status: "delivered", nextAttemptAt: null },
    ]),
  );
}

async function getJson<T>(key: string, path: string): Promise<{ status: number; body: T }> {
  const res = await call(path, { headers: bearer(key) });
  return { status: res.status, body: (await res.json()) as T };
}

async function sum(f: Fixture, start: string, end: string): Promise<Metrics> {
  const r = await getJson<Metrics>(f.key, `/v3/stats/sum?start_date=${start}&end_date=${end}`);
  expect(r.status).toBe(200);
  return r.body;
}

const zero = (): Metrics => Object.fromEntries(METRICS.map((m) => [m, 0])) as Metrics;
const metrics = (over: Partial<Metrics>): Metrics => ({ ...zero(), ...over });

async function counters(tenantId: string) {
  const r = await env.DB.prepare(
    "SELECT category, day, metric, count FROM stats_daily WHERE tenant_id = ? ORDER BY category, day, metric",
  )
    .bind(tenantId)
    .all();
  return r.results;
}

describe("stats counters (triggers on events)", () => {
  it("map every event type to SendGrid's metrics, per day and per category", async () => {
    const f = await fixture();
    const day = "2026-03-10";
    // A category named twice counts once.
    const { rows } = await catalog(f.tenantId, ms(day), ["news", "promo", "news"]);
    const m = rows[0]!.id;
    const t = ms(day, 13);
    await results(m, [
      ev(f.tenantId, m, "deferred", t, {}, 1),
      ev(f.tenantId, m, "delivered", t, {}, 2),
      ev(f.tenantId, m, "bounce", t, { bounce_type: "hard" }, 3, "a@example.net"),
      ev(f.tenantId, m, "bounce", t, { bounce_type: "block" }, 3, "b@example.net"),
      ev(f.tenantId, m, "blocked", t, {}, 3, "c@example.net"),
      ev(f.tenantId, m, "dropped", t, { reason: "Bounced Address" }, 4, "d1@example.net"),
      ev(f.tenantId, m, "dropped", t, { reason: "Spam Reporting Address" }, 4, "d2@example.net"),
      ev(f.tenantId, m, "dropped", t, { reason: "Unsubscribed Address" }, 4, "d3@example.net"),
      ev(f.tenantId, m, "dropped", t, { reason: "Invalid" }, 4, "d4@example.net"),
      ev(
        f.tenantId,
        m,
        "dropped",
        t,
        { reason: "expired: not delivered within the maximum queue age" },
        4,
        "d5@example.net",
      ),
      ev(f.tenantId, m, "spam_report", t, {}, 0),
      ev(f.tenantId, m, "unsubscribe", t, {}, 0),
      ev(f.tenantId, m, "group_unsubscribe", t, { asm_group_id: 1 }, 0),
      ev(f.tenantId, m, "open", t, {}, 0),
      ev(f.tenantId, m, "click", t, { url: "https://example.com/" }, 0),
    ]);
    const expected = metrics({
      requests: 1,
      processed: 1,
      deferred: 1,
      delivered: 1,
      bounces: 3,
      blocks: 2,
      bounce_drops: 1,
      spam_report_drops: 1,
      unsubscribe_drops: 1,
      invalid_emails: 1,
      spam_reports: 1,
      unsubscribes: 2,
      opens: 1,
      unique_opens: 1,
      clicks: 1,
      unique_clicks: 1,
    });
    expect(await sum(f, day, day)).toEqual(expected);

    const daily = await getJson<{ stats: { date: string; metrics: Metrics }[] }>(
      f.key,
      `/v3/stats?start_date=2026-03-09&end_date=2026-03-11`,
    );
    expect(daily.status).toBe(200);
    expect(daily.body).toEqual({
      stats: [
        { date: "2026-03-09", metrics: zero() },
        { date: "2026-03-10", metrics: expected },
        { date: "2026-03-11", metrics: zero() },
      ],
    });

    // The rebuild maps every event type exactly as the trigger did.
    const live = await counters(f.tenantId);
    await env.DB.prepare("DELETE FROM stats_daily WHERE tenant_id = ?").bind(f.tenantId).run();
    const rebuilt = await call(`/v3/stats/rebuild?start_date=${day}&end_date=${day}`, {
      method: "POST",
      headers: bearer(f.key),
    });
    expect(rebuilt.status).toBe(200);
    expect(await counters(f.tenantId)).toEqual(live);

    const cats = await getJson<unknown>(f.key, `/v3/stats/categories?start_date=${day}&end_date=${day}`);
    expect(cats.body).toEqual([
      {
        date: day,
        stats: [
          { type: "category", name: "news", category: "news", metrics: expected },
          { type: "category", name: "promo", category: "promo", metrics: expected },
        ],
      },
    ]);
  });

  it("count a replayed catalog flush, result flush and inbound event once", async () => {
    const f = await fixture();
    const day = "2026-03-11";
    const { rows, statements } = await catalog(f.tenantId, ms(day), ["c1"]);
    await env.DB.batch(statements); // the same catalog batch again (a hub restarted before noting it)
    const m = rows[0]!.id;
    const delivered = ev(f.tenantId, m, "delivered", ms(day, 14), {}, 1);
    await results(m, [delivered]);
    // A replayed result: the hub makes a fresh row id, the (message, attempt, recipient, type) key is the same.
    await results(m, [{ ...delivered, id: `evt_${uid()}` }]);
    // An inbound complaint (attempt 0) re-sent by the origin: same id.
    const complaint = ev(f.tenantId, m, "spam_report", ms(day, 15), { source: "inbound" }, 0);
    await results(m, [complaint]);
    await results(m, [complaint]);
    const expected = metrics({ requests: 1, processed: 1, delivered: 1, spam_reports: 1 });
    expect(await sum(f, day, day)).toEqual(expected);
    const cats = await getJson<{ stats: { metrics: Metrics }[] }[]>(
      f.key,
      `/v3/stats/categories?start_date=${day}&end_date=${day}&categories=c1`,
    );
    expect(cats.body[0]!.stats[0]!.metrics).toEqual(expected);
  });

  it("count unique opens and clicks once per message and recipient, and machine opens only in opens", async () => {
    const f = await fixture();
    const { rows } = await catalog(f.tenantId, ms("2026-03-12", 1), [], 2);
    const [m1, m2] = [rows[0]!.id, rows[1]!.id];
    await results(m1, [
      // A privacy proxy prefetches first: an open, not a unique one.
      ev(f.tenantId, m1, "open", ms("2026-03-12", 2), { machine_open: true }, 0),
      ev(f.tenantId, m1, "open", ms("2026-03-13", 9), {}, 0),
      ev(f.tenantId, m1, "open", ms("2026-03-13", 10), {}, 0),
      ev(f.tenantId, m1, "open", ms("2026-03-14", 10), { machine_open: false }, 0),
      ev(f.tenantId, m1, "open", ms("2026-03-13", 11), {}, 0, "other@example.net"),
      ev(f.tenantId, m1, "click", ms("2026-03-13", 11), {}, 0),
      ev(f.tenantId, m1, "click", ms("2026-03-14", 11), {}, 0),
    ]);
    // Another message to the same recipient has its own uniques; a machine open alone makes none.
    await results(m2, [
      ev(f.tenantId, m2, "open", ms("2026-03-14", 12), { machine_open: true }, 0),
      ev(f.tenantId, m2, "click", ms("2026-03-14", 12), {}, 0),
    ]);
    const days = await getJson<{ stats: { date: string; metrics: Metrics }[] }>(
      f.key,
      "/v3/stats?start_date=2026-03-12&end_date=2026-03-14",
    );
    const pick = (x: Metrics) => [x.opens, x.unique_opens, x.clicks, x.unique_clicks];
    expect(days.body.stats.map((s) => [s.date, ...pick(s.metrics)])).toEqual([
      ["2026-03-12", 1, 0, 0, 0],
      ["2026-03-13", 3, 2, 1, 1],
      ["2026-03-14", 2, 0, 2, 1],
    ]);
  });

  it("count requests per live message (sandbox mail is not counted) and keep tenants apart", async () => {
    const f = await fixture();
    const other = await fixture();
    const day = "2026-03-15";
    await catalog(f.tenantId, ms(day), ["x"], 3);
    const sandbox = messageRow(f.tenantId, ms(day), ["x"], "sandbox");
    await env.DB.batch(catalogStatements(env.DB, [sandbox], [], []));
    expect((await sum(f, day, day)).requests).toBe(3);
    expect(await sum(other, day, day)).toEqual(zero());
    const cats = await getJson<unknown[]>(
      other.key,
      `/v3/stats/categories?start_date=${day}&end_date=${day}`,
    );
    expect(cats.body).toEqual([{ date: day, stats: [] }]);

    // Unfiltered, at most 100 categories: more is a 400 asking for a filter. (A send names at most
    // 10; the 101 are written on one row here to make them quickly.)
    const many = Array.from({ length: 101 }, (_, i) => `c${String(i).padStart(3, "0")}`);
    await catalog(other.tenantId, ms(day), many);
    const tooMany = await getJson<{ errors: { field: string; message: string }[] }>(
      other.key,
      `/v3/stats/categories?start_date=${day}&end_date=${day}`,
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.errors[0]).toMatchObject({
      field: "categories",
      message: expect.stringMatching(/^101 categories have stats/),
    });
    const named = await getJson<{ stats: { name: string }[] }[]>(
      other.key,
      `/v3/stats/categories?start_date=${day}&end_date=${day}&categories=c000,c100`,
    );
    expect(named.body[0]!.stats.map((x) => x.name)).toEqual(["c000", "c100"]);
  });
});

describe("aggregation", () => {
  it("buckets by ISO week and calendar month, the first bucket named by start_date", async () => {
    const f = await fixture();
    // 2026-03-01 is a Sunday, 03-02 a Monday.
    for (const [day, n] of [
      ["2026-02-26", 1],
      ["2026-03-01", 2],
      ["2026-03-02", 4],
      ["2026-03-31", 8],
      ["2026-04-01", 16],
    ] as const) {
      await catalog(f.tenantId, ms(day), [], n);
    }
    const series = async (by: string) => {
      const r = await getJson<{ stats: { date: string; metrics: Metrics }[] }>(
        f.key,
        `/v3/stats?start_date=2026-02-26&end_date=2026-04-01&aggregated_by=${by}`,
      );
      expect(r.status).toBe(200);
      return r.body.stats.map((s) => [s.date, s.metrics.requests, s.metrics.processed]);
    };
    expect(await series("week")).toEqual([
      ["2026-02-26", 3, 3],
      ["2026-03-02", 4, 4],
      ["2026-03-09", 0, 0],
      ["2026-03-16", 0, 0],
      ["2026-03-23", 0, 0],
      ["2026-03-30", 24, 24],
    ]);
    expect(await series("month")).toEqual([
      ["2026-02-26", 1, 1],
      ["2026-03-01", 14, 14],
      ["2026-04-01", 16, 16],
    ]);
    expect((await series("day")).length).toBe(35);

    const paged = await getJson<{ stats: { date: string }[] }>(
      f.key,
      "/v3/stats?start_date=2026-02-26&end_date=2026-04-01&aggregated_by=week&limit=2&offset=1",
    );
    expect(paged.body.stats.map((s) => s.date)).toEqual(["2026-03-02", "2026-03-09"]);

    const summary = await getJson<Record<string, number | string>>(
      f.key,
      "/v3/stats/summary?start_date=2026-02-26&end_date=2026-04-01",
    );
    expect(summary.body).toEqual({
      start_date: "2026-02-26",
      end_date: "2026-04-01",
      total_messages: 31,
      delivered: 0,
      bounces: 0,
      deferred: 0,
      drops: 0,
      unique_opens: 0,
      unique_clicks: 0,
      spam_reports: 0,
      unsubscribes: 0,
      delivery_rate: 0,
      open_rate: 0,
      click_rate: 0,
    });
  });
});

describe("SendGrid's category stats", () => {
  it("/v3/categories/stats lists the categories asked for, and /sums sorts, limits and pages", async () => {
    const f = await fixture();
    const day = "2026-03-20";
    await catalog(f.tenantId, ms(day), ["a"], 3);
    await catalog(f.tenantId, ms(day), ["b"], 1);
    await catalog(f.tenantId, ms(day), ["c", "a"], 2);
    const r = await getJson<unknown>(
      f.key,
      `/v3/categories/stats?start_date=${day}&end_date=${day}&categories=c&categories=a&categories=none`,
    );
    expect(r.status).toBe(200);
    const body = r.body as { date: string; stats: { name: string; type: string; metrics: Metrics }[] }[];
    expect(body.map((b) => [b.date, b.stats.map((s) => [s.type, s.name, s.metrics.requests])])).toEqual([
      [
        day,
        [
          ["category", "c", 2],
          ["category", "a", 5],
          ["category", "none", 0],
        ],
      ],
    ]);

    const sums = async (qs: string) =>
      (
        await getJson<{ date: string; stats: { name: string; metrics: Metrics }[] }>(
          f.key,
          `/v3/categories/stats/sums?start_date=${day}&end_date=2026-03-21&${qs}`,
        )
      ).body;
    const desc = await sums("sort_by_metric=processed");
    expect(desc.date).toBe(day);
    expect(desc.stats.map((s) => [s.name, s.metrics.processed])).toEqual([
      ["a", 5],
      ["c", 2],
      ["b", 1],
    ]);
    expect(
      (await sums("sort_by_metric=requests&sort_by_direction=asc&limit=2")).stats.map((s) => s.name),
    ).toEqual(["b", "c"]);
    expect((await sums("limit=1&offset=1")).stats.map((s) => s.name)).toEqual(["b"]);
  });
});

describe("rebuild", () => {
  it("recomputes exactly the live counters from the events, and only in its range", async () => {
    const f = await fixture();
    const { rows } = await catalog(f.tenantId, ms("2026-03-05"), ["r1", "r2"], 2);
    await catalog(f.tenantId, ms("2026-03-06"), ["r1"], 1);
    const m = rows[0]!.id;
    await results(m, [
      ev(f.tenantId, m, "open", ms("2026-03-06"), { machine_open: true }, 0),
      ev(f.tenantId, m, "open", ms("2026-03-06", 13), {}, 0),
      ev(f.tenantId, m, "open", ms("2026-03-07", 13), {}, 0),
      ev(f.tenantId, m, "click", ms("2026-03-07", 13), {}, 0),
      ev(f.tenantId, m, "bounce", ms("2026-03-07", 14), { bounce_type: "block" }, 1),
      ev(f.tenantId, m, "dropped", ms("2026-03-08", 14), { reason: "Invalid" }, 2),
    ]);
    const live = await counters(f.tenantId);
    expect(live.length).toBeGreaterThan(20);

    // Damage the counters: rebuild must restore them exactly.
    await env.DB.prepare("UPDATE stats_daily SET count = count + 7 WHERE tenant_id = ?")
      .bind(f.tenantId)
      .run();
    await env.DB.prepare("DELETE FROM stats_daily WHERE tenant_id = ? AND metric = 'unique_opens'")
      .bind(f.tenantId)
      .run();
    const res = await call("/v3/stats/rebuild?start_date=2026-03-05&end_date=2026-03-08", {
      method: "POST",
      headers: bearer(f.key),
    });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(text).toBe('{"rebuilt":true,"start_date":"2026-03-05","end_date":"2026-03-08"}');
    expect(await counters(f.tenantId)).toEqual(live);

    // A range rebuilt leaves the days outside it as they are.
    await env.DB.prepare("UPDATE stats_daily SET count = count + 1 WHERE tenant_id = ?")
      .bind(f.tenantId)
      .run();
    const one = await call("/v3/stats/rebuild?start_date=2026-03-06&end_date=2026-03-06", {
      method: "POST",
      headers: bearer(f.key),
    });
    expect(one.status).toBe(200);
    const after = await counters(f.tenantId);
    expect(after).toEqual(
      live.map((r) => (r["day"] === "2026-03-06" ? r : { ...r, count: (r["count"] as number) + 1 })),
    );
  });

  it("defaults to the last 30 days and needs stats.export", async () => {
    const f = await fixture();
    const res = await call("/v3/stats/rebuild", { method: "POST", headers: bearer(f.key) });
    const body = (await res.json()) as { start_date: string; end_date: string };
    expect(res.status).toBe(200);
    const today = new Date().toISOString().slice(0, 10);
    expect(body.end_date).toBe(today);
    expect((Date.parse(body.end_date) - Date.parse(body.start_date)) / 86_400_000).toBe(29);

    const { key } = await createApiKey(f.tenantId, { scopes: ["stats.read"] });
    const denied = await call("/v3/stats/rebuild", { method: "POST", headers: bearer(key) });
    expect(denied.status).toBe(403);
  });
});

describe("errors", () => {
  it("answers request problems in SendGrid's errors[] shape", async () => {
    const f = await fixture();
    const cases: [string, string | null, RegExp][] = [
      ["/v3/stats", "start_date", /missing required argument/],
      ["/v3/stats?start_date=2026-02-30", "start_date", /YYYY-MM-DD/],
      ["/v3/stats?start_date=26-01-01", "start_date", /YYYY-MM-DD/],
      ["/v3/stats?start_date=2026-03-02&end_date=2026-03-01", "end_date", /before start_date/],
      ["/v3/stats?start_date=2020-01-01&end_date=2026-01-01", "end_date", /at most 1096 days/],
      ["/v3/stats?start_date=2026-03-01&aggregated_by=year", "aggregated_by", /day, week, month/],
      ["/v3/stats?start_date=2026-03-01&timezone=UTC", "timezone", /not a parameter/],
      ["/v3/stats?start_date=2026-03-01&start_date=2026-03-02", "start_date", /once/],
      ["/v3/stats?start_date=2026-03-01&limit=0", "limit", /integer/],
      ["/v3/stats/sum?start_date=2026-03-01&aggregated_by=day", "aggregated_by", /not a parameter/],
      ["/v3/categories/stats?start_date=2026-03-01", "categories", /missing required argument/],
      [
        `/v3/categories/stats?start_date=2026-03-01&${Array.from({ length: 11 }, (_, i) => `categories=c${i}`).join("&")}`,
        "categories",
        /at most 10/,
      ],
      ["/v3/stats/categories?start_date=2026-03-01&categories=a,,b", "categories", /1 to 255/],
      [
        "/v3/categories/stats/sums?start_date=2026-03-01&sort_by_metric=sent",
        "sort_by_metric",
        /must be one of/,
      ],
      [
        "/v3/categories/stats/sums?start_date=2026-03-01&sort_by_direction=up",
        "sort_by_direction",
        /asc or desc/,
      ],
    ];
    for (const [path, field, message] of cases) {
      const r = await getJson<{ errors: { field: string | null; message: string; help: null }[] }>(
        f.key,
        path,
      );
      expect(r.status, path).toBe(400);
      expect(r.body.errors.length, path).toBe(1);
      expect(r.body.errors[0]!.field, path).toBe(field);
      expect(r.body.errors[0]!.message, path).toMatch(message);
    }
    const withBody = await call("/v3/stats/rebuild", {
      method: "POST",
      headers: bearer(f.key),
      body: JSON.stringify({ start_date: "2026-03-01" }),
    });
    expect(withBody.status).toBe(400);
  });

  it("needs an API key with stats.read", async () => {
    const tenantId = await createTenant();
    const { key } = await createApiKey(tenantId, { scopes: ["mail.send"] });
    for (const path of [
      "/v3/stats?start_date=2026-03-01",
      "/v3/stats/sum?start_date=2026-03-01",
      "/v3/categories/stats?start_date=2026-03-01&categories=a",
    ]) {
      expect((await call(path, { headers: bearer(key) })).status, path).toBe(403);
    }
    expect((await call("/v3/stats?start_date=2026-03-01")).status).toBe(401);
  });
});
