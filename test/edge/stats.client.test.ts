/**
 * @sendgrid/client, SendGrid's own Node client, reading stats from the Worker
 * (docs/api/sendgrid.md#stats): its axios serialises `qs` (a list as `categories[]=…`) as it does
 * against api.sendgrid.com; only the transport is pointed at the Worker (axios's fetch adapter with
 * SELF.fetch), nothing of the client is replaced. The counters are written by the hub's own
 * catalog statements into the test's D1.
 */
import { env } from "cloudflare:workers";
import client from "@sendgrid/client";
import { describe, expect, it } from "vitest";
import { catalogStatements } from "../../edge/src/db/messages.ts";
import { createApiKey, createTenant, uid } from "./helpers.ts";
import { useKey } from "./sendgrid-client.ts";

async function liveMessages(tenantId: string, createdAt: number, categories: string[], n: number) {
  const rows = Array.from({ length: n }, () => {
    const id = `msg_${uid()}`;
    return {
      id,
      tenantId,
      status: "queued" as const,
      mode: "live" as const,
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
  });
  const events = rows.map((r) => ({
    id: `evt_${uid()}`,
    tenantId,
    messageId: r.id,
    eventType: "processed" as const,
    recipientEmail: "rcpt@example.net",
    timestamp: createdAt,
    attempt: 0,
    metadata: {},
  }));
  await env.DB.batch(catalogStatements(env.DB, rows, [], events));
}

describe("@sendgrid/client against the stats endpoints", () => {
  it("reads global, category and summed category stats, and a 400 in SendGrid's shape", async () => {
    const tenantId = await createTenant();
    const { key } = await createApiKey(tenantId, { scopes: ["stats.read"] });
    await liveMessages(tenantId, Date.parse("2026-04-06T08:00:00Z"), ["welcome"], 2);
    await liveMessages(tenantId, Date.parse("2026-04-07T08:00:00Z"), ["welcome", "reset"], 1);

    useKey(key);

    const [global, globalBody] = await client.request({
      method: "GET",
      url: "/v3/stats",
      qs: { start_date: "2026-04-06", end_date: "2026-04-07", aggregated_by: "day" },
    });
    expect(global.statusCode).toBe(200);
    const g = globalBody as { stats: { date: string; metrics: Record<string, number> }[] };
    expect(g.stats.map((s) => [s.date, s.metrics["requests"], s.metrics["processed"]])).toEqual([
      ["2026-04-06", 2, 2],
      ["2026-04-07", 1, 1],
    ]);
    expect(Object.keys(g.stats[0]!.metrics)).toHaveLength(16);

    const [cats, catsBody] = await client.request({
      method: "GET",
      url: "/v3/categories/stats",
      qs: { start_date: "2026-04-06", end_date: "2026-04-07", categories: ["welcome", "reset"] },
    });
    expect(cats.statusCode).toBe(200);
    const c = catsBody as {
      date: string;
      stats: { type: string; name: string; metrics: Record<string, number> }[];
    }[];
    expect(
      c.map((d) => [d.date, d.stats.map((s) => `${s.type}:${s.name}:${s.metrics["requests"]}`)]),
    ).toEqual([
      ["2026-04-06", ["category:welcome:2", "category:reset:0"]],
      ["2026-04-07", ["category:welcome:1", "category:reset:1"]],
    ]);

    const [sums, sumsBody] = await client.request({
      method: "GET",
      url: "/v3/categories/stats/sums",
      qs: { start_date: "2026-04-06", end_date: "2026-04-07", sort_by_metric: "requests", limit: 1 },
    });
    expect(sums.statusCode).toBe(200);
    expect(sumsBody).toMatchObject({ date: "2026-04-06", stats: [{ type: "category", name: "welcome" }] });

    const err = await client
      .request({ method: "GET", url: "/v3/categories/stats", qs: { start_date: "2026-04-06" } })
      .then(
        () => null,
        (e: { code: number; response: { body: unknown } }) => e,
      );
    expect(err?.code).toBe(400);
    expect(err?.response.body).toEqual({
      errors: [{ field: "categories", message: "missing required argument", help: null }],
    });
  });
});
