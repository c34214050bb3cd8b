/**
 * The stats page per category (docs/dashboard.md#pages) on the real Worker: mail sent through
 * /v3/mail/send with categories moves the counters, the page's selector lists the tenant's categories
 * with stats in the range, and one category's chart data and table are what GET
 * /v3/categories/stats answers for it. Another tenant's categories never show.
 */
import { describe, expect, it } from "vitest";
import { bearer, call, createApiKey, mailBody, sendOne, setupTenant, uid } from "./helpers.ts";
import { Browser, createLogin } from "./dashboard.helpers.ts";

const island = (html: string) =>
  JSON.parse(/<script type="application\/json" id="stats-data">(.*?)<\/script>/s.exec(html)![1]!) as {
    days: string[];
    values: Record<string, number[]>;
  };
const options = (html: string) =>
  [...html.matchAll(/<option value="([^"]*)"( selected="")?>/g)].map((m) => ({
    value: m[1]!,
    selected: m[2] !== undefined,
  }));
/** The table's row for `day`: its 16 numbers in column order. */
const row = (html: string, day: string) =>
  [
    ...new RegExp(`<th scope="row">${day}</th>(.*?)</tr>`, "s")
      .exec(html)![1]!
      .matchAll(/<td class="num">(\d+)<\/td>/g),
  ].map((m) => Number(m[1]));

describe("stats per category", () => {
  it("the selector lists the tenant's categories; one category's chart and table are the API's numbers", async () => {
    const t = await setupTenant();
    const other = await setupTenant();
    const welcome = `welcome-${uid()}`;
    const receipt = `receipt-${uid()}`;
    const secret = `other-tenant-${uid()}`;
    await sendOne(t.liveKey, mailBody(t.from, { categories: [welcome] }));
    await sendOne(t.liveKey, mailBody(t.from, { categories: [welcome] }));
    await sendOne(t.liveKey, mailBody(t.from, { categories: [receipt, welcome] }));
    await sendOne(t.liveKey, mailBody(t.from));
    await sendOne(other.liveKey, mailBody(other.from, { categories: [secret] }));
    const day = new Date().toISOString().slice(0, 10);
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const statsKey = (await createApiKey(t.tenantId, { scopes: ["stats.read"] })).key;

    const all = await b.get(`/app/stats?start_date=${day}&end_date=${day}`);
    expect(all.status, all.text).toBe(200);
    expect(options(all.text)).toEqual([
      { value: "", selected: true },
      ...[receipt, welcome].sort().map((value) => ({ value, selected: false })),
    ]);
    expect(all.text).not.toContain(secret);
    expect(island(all.text).values.requests).toEqual([4]);
    expect(all.text).toContain("all mail");

    for (const [name, requests] of [
      [welcome, 3],
      [receipt, 1],
    ] as const) {
      const page = await b.get(
        `/app/stats?start_date=${day}&end_date=${day}&category=${encodeURIComponent(name)}`,
      );
      expect(page.status, page.text).toBe(200);
      expect(options(page.text).find((o) => o.selected)?.value).toBe(name);
      expect(page.text).toContain(`category “${name}”`);
      const data = island(page.text);
      expect(data.days).toEqual([day]);
      expect(data.values.requests).toEqual([requests]);

      // The same numbers as the API's own answer for that category, metric for metric.
      const res = await call(
        `/v3/categories/stats?start_date=${day}&end_date=${day}&categories=${encodeURIComponent(name)}`,
        { headers: bearer(statsKey) },
      );
      const api = (await res.json()) as {
        date: string;
        stats: { name: string; metrics: Record<string, number> }[];
      }[];
      expect(res.status).toBe(200);
      const metrics = api[0]!.stats[0]!.metrics;
      for (const [metric, values] of Object.entries(data.values))
        expect(values, metric).toEqual([metrics[metric]]);
      expect(row(page.text, day)).toEqual(Object.keys(data.values).map((m) => metrics[m]));
    }

    // A category with nothing in the range: zeros, and the selector still shows it as chosen.
    const quiet = `quiet-${uid()}`;
    const none = await b.get(`/app/stats?start_date=${day}&end_date=${day}&category=${quiet}`);
    expect(none.status).toBe(200);
    expect(options(none.text).find((o) => o.selected)?.value).toBe(quiet);
    expect(island(none.text).values.requests).toEqual([0]);
    // Another tenant's category reads this tenant's counters: zeros, not theirs.
    const theirs = await b.get(`/app/stats?start_date=${day}&end_date=${day}&category=${secret}`);
    expect(island(theirs.text).values.requests).toEqual([0]);

    expect((await b.get(`/app/stats?category=${"x".repeat(256)}`)).status).toBe(400);
    expect((await b.get(`/app/stats?categories=${welcome}`)).status).toBe(400);
  });
});
