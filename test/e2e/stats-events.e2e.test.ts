/**
 * The events pipeline end to end with real parts (docs/api/sendgrid.md#stats, docs/api/webhooks.md):
 * three messages sent through the edge (wrangler dev) and delivered by the origin to the loopback
 * SMTP server — one accepted, one refused 550 5.1.1, one greylisted once then accepted — produce
 * the right events on each message's timeline, at a real HTTP receiver on 127.0.0.1 (the Event
 * Webhook, reachable because the edge runs with WEBHOOK_ALLOW_PRIVATE=127.0.0.1), and in
 * /v3/stats; POST /v3/stats/rebuild recomputes the same numbers from the events.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

let stack: Stack;
let receiver: http.Server;
let receiverUrl = "";
const received: Record<string, unknown>[] = [];
const greylisted = new Set<string>();
let key = "";

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push(...(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>[]));
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  stack = await startStack({
    edgeVars: { WEBHOOK_ALLOW_PRIVATE: "127.0.0.1" },
    smtp: {
      onRcpt(address) {
        if (address.endsWith("@unknown-user.test")) return { code: 550, message: "5.1.1 User unknown" };
        if (address.endsWith("@greylist.test") && !greylisted.has(address)) {
          greylisted.add(address);
          return { code: 451, message: "4.7.1 Greylisted, try again later" };
        }
        return null;
      },
    },
  });
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
  key = (
    await stack.admin.createApiKey(stack.tenantId, {
      name: "stats-and-hooks",
      environment: "live",
      scopes: ["webhooks.read", "webhooks.write", "stats.read", "stats.export"],
    })
  ).api_key;
});

afterAll(async () => {
  await stack?.stop();
  await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
});

async function waitFor<T>(fn: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error("timed out waiting for the receiver");
    await new Promise((r) => setTimeout(r, 100));
  }
}

const today = () => new Date().toISOString().slice(0, 10);

describe("events, webhooks and stats", () => {
  it("a delivered, a bounced and a deferred-then-delivered message: timeline, webhook and stats agree", async () => {
    const settings = await stack.api("PATCH", "/v3/user/webhooks/event/settings", key, {
      enabled: true,
      url: `${receiverUrl}/sendgrid`,
      processed: true,
      delivered: true,
      deferred: true,
      bounce: true,
    });
    expect(settings.status).toBe(200);
    const day = today();
    const before = await stack.api("GET", `/v3/stats/sum?start_date=${day}`, key);
    expect(before.status).toBe(200);

    const send = async (to: string) => {
      const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
        personalizations: [{ to: [{ email: to }] }],
        from: { email: `app@${SENDER_DOMAIN}` },
        subject: "stats e2e",
        content: [{ type: "text/plain", value: "hello" }],
        categories: ["stats-e2e"],
      });
      expect(r.status).toBe(202);
      return r.headers.get("x-message-id")!;
    };
    const ids = {
      delivered: await send("ok@inbox.test"),
      bounced: await send("nobody@unknown-user.test"),
      deferred: await send("later@greylist.test"),
    };
    const expected: Record<keyof typeof ids, string[]> = {
      delivered: ["processed", "delivered"],
      bounced: ["processed", "bounce"],
      deferred: ["processed", "deferred", "delivered"],
    };
    for (const [name, id] of Object.entries(ids) as [keyof typeof ids, string][]) {
      const m = await stack.waitForMessage(id, (b) => b.events.length >= expected[name].length, 30_000);
      expect(
        m.events.map((e: { event_type: string }) => e.event_type),
        name,
      ).toEqual(expected[name]);
    }

    // The receiver hears each of them once, in SendGrid's event names.
    const posted = await waitFor(() => {
      const mine = received.filter((e) => Object.values(ids).includes(e["sg_message_id"] as string));
      return mine.length >= 7 ? mine : undefined;
    });
    const byMessage = (id: string) =>
      posted
        .filter((e) => e["sg_message_id"] === id)
        .map((e) => e["event"])
        .sort();
    expect(byMessage(ids.delivered)).toEqual(["delivered", "processed"]);
    expect(byMessage(ids.bounced)).toEqual(["bounce", "processed"]);
    expect(byMessage(ids.deferred)).toEqual(["deferred", "delivered", "processed"]);
    expect(new Set(posted.map((e) => e["sg_event_id"])).size).toBe(posted.length);

    // Stats moved at once (no next-day lag), by exactly these events.
    const after = await stack.api("GET", `/v3/stats/sum?start_date=${day}`, key);
    const delta = Object.fromEntries(
      Object.entries(after.body as Record<string, number>).map(([k, v]) => [k, v - before.body[k]]),
    );
    expect(delta).toEqual({
      blocks: 0,
      bounce_drops: 0,
      bounces: 1,
      clicks: 0,
      deferred: 1,
      delivered: 2,
      invalid_emails: 0,
      opens: 0,
      processed: 3,
      requests: 3,
      spam_report_drops: 0,
      spam_reports: 0,
      unique_clicks: 0,
      unique_opens: 0,
      unsubscribe_drops: 0,
      unsubscribes: 0,
    });
    const cats = await stack.api("GET", `/v3/categories/stats?start_date=${day}&categories=stats-e2e`, key);
    expect(cats.status).toBe(200);
    expect(cats.body[0].stats[0]).toMatchObject({
      type: "category",
      name: "stats-e2e",
      metrics: { requests: 3, processed: 3, delivered: 2, deferred: 1, bounces: 1 },
    });

    // A rebuild of today recomputes the same numbers from the events.
    const global = await stack.api("GET", `/v3/stats?start_date=${day}`, key);
    const rebuilt = await stack.api("POST", `/v3/stats/rebuild?start_date=${day}&end_date=${day}`, key);
    expect(rebuilt.status).toBe(200);
    expect(rebuilt.body).toEqual({ rebuilt: true, start_date: day, end_date: day });
    expect((await stack.api("GET", `/v3/stats?start_date=${day}`, key)).body).toEqual(global.body);
    expect(
      (await stack.api("GET", `/v3/categories/stats?start_date=${day}&categories=stats-e2e`, key)).body,
    ).toEqual(cats.body);
  });
});
