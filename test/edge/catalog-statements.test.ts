/**
 * The hub's D1 writes (edge/src/db/messages.ts): catalog rows, `sending` marks and outcomes bound as
 * one JSON list per statement. Each is checked against what drizzle's own insert / update writes for
 * the same rows, column by column, in real D1.
 */
import { env } from "cloudflare:workers";
import { eq, inArray, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import {
  catalogStatements,
  HUB_UPDATE_SQL,
  markSendingStatements,
  MAX_JSON_PARAM_UNITS,
  resultStatements,
  type NewEvent,
  type NewMessage,
  type NewRecipient,
  type ResultWrite,
} from "../../edge/src/db/messages.ts";
import { events, messageRecipients, messages } from "../../edge/src/db/schema.ts";
import { createTenant, uid } from "./helpers.ts";

const db = createDb(env.DB);
const NOW = 1_800_000_000_123;

function message(id: string, tenantId: string, over: Partial<NewMessage> = {}): NewMessage {
  return {
    id,
    tenantId,
    status: "queued",
    mode: "live",
    apiKeyId: "key_1",
    fromEmail: "sender@example.com",
    fromName: 'Zoë "Q" \\ O\'Brien',
    subject: "Grüße 🎉 \u2028 line\nbreak, a lone \ud83d surrogate",
    toEmails: ["a@example.net"],
    recipients: { to: [{ email: "a@example.net", name: "Ä" }], cc: [], bcc: [], replyTo: [] },
    headers: { "X-Quote": 'say "hi"', "X-Unicode": "日本語" },
    categories: ["one", "two"],
    customArgs: { nested: '{"json":"inside"}' },
    textBody: "text\u0000with nul",
    htmlBody: "<p>html</p>",
    templateId: null,
    batchId: null,
    messageIdHeader: `${id.toLowerCase()}@example.com`,
    dispatches: 0,
    deferrals: 0,
    createdAt: NOW,
    updatedAt: NOW,
    ...over,
  };
}

const recipient = (messageId: string, tenantId: string, email: string): NewRecipient => ({
  messageId,
  tenantId,
  email,
  kind: "to",
});

const processed = (messageId: string, tenantId: string, email: string): NewEvent => ({
  id: `evt_${uid()}`,
  tenantId,
  messageId,
  eventType: "processed",
  recipientEmail: email,
  timestamp: NOW,
  attempt: 0,
  metadata: { note: "ünïcode", n: 1.5 },
});

/** Every column of a message row but its id (and what names it), as D1 returns them. */
async function storedMessage(id: string): Promise<Record<string, unknown>> {
  const row = await env.DB.prepare("SELECT * FROM messages WHERE id = ?")
    .bind(id)
    .first<Record<string, unknown>>();
  expect(row, id).not.toBeNull();
  const { id: _id, message_id_header: _h, ...rest } = row!;
  return rest;
}

describe("catalog statements (one JSON list per table)", () => {
  it("store every column exactly as drizzle's insert does, and replaying them changes nothing", async () => {
    const tenantId = await createTenant();
    const byDrizzle = `msg_D${uid()}`;
    const byList = `msg_L${uid()}`;
    // A row without the optional columns takes the same defaults both ways.
    const sparse = (id: string): NewMessage => {
      const { fromName: _n, textBody: _t, apiKeyId: _k, ...m } = message(id, tenantId);
      return m;
    };
    await db.batch([
      db.insert(messages).values([message(byDrizzle, tenantId), sparse(`${byDrizzle}s`)]),
      db.insert(messageRecipients).values(recipient(byDrizzle, tenantId, "a@example.net")),
    ]);
    const ev = processed(byList, tenantId, "a@example.net");
    const statements = catalogStatements(
      env.DB,
      [message(byList, tenantId), sparse(`${byList}s`)],
      [recipient(byList, tenantId, "a@example.net"), recipient(byList, tenantId, "b@example.net")],
      [ev],
    );
    expect(statements).toHaveLength(3);
    await env.DB.batch(statements);
    expect(await storedMessage(byList)).toEqual(await storedMessage(byDrizzle));
    expect(await storedMessage(`${byList}s`)).toEqual(await storedMessage(`${byDrizzle}s`));
    const rcpt = await db.select().from(messageRecipients).where(eq(messageRecipients.messageId, byList));
    expect(rcpt.map((r) => [r.email, r.status, r.kind])).toEqual([
      ["a@example.net", "pending", "to"],
      ["b@example.net", "pending", "to"],
    ]);
    const stored = await db.select().from(events).where(eq(events.messageId, byList));
    expect(stored).toEqual([{ ...ev, metadata: { note: "ünïcode", n: 1.5 } }]);

    // A result lands, then the flush is replayed: nothing duplicated, nothing overwritten.
    await env.DB.prepare("UPDATE messages SET status = 'delivered' WHERE id = ?").bind(byList).run();
    await env.DB.batch(
      catalogStatements(
        env.DB,
        [message(byList, tenantId)],
        [recipient(byList, tenantId, "a@example.net")],
        [ev],
      ),
    );
    expect((await storedMessage(byList)).status).toBe("delivered");
    const counts = await env.DB.prepare(
      `SELECT (SELECT count(*) FROM message_recipients WHERE message_id = ?1) AS r,
              (SELECT count(*) FROM events WHERE message_id = ?1) AS e`,
    )
      .bind(byList)
      .first<{ r: number; e: number }>();
    expect(counts).toEqual({ r: 2, e: 1 });
  });

  it("cut a list before it outgrows one D1 parameter, and write a row too large for any list on its own", async () => {
    const tenantId = await createTenant();
    const big = "x".repeat(Math.floor(MAX_JSON_PARAM_UNITS / 3));
    const huge = "é".repeat(MAX_JSON_PARAM_UNITS);
    const ids = [0, 1, 2, 3].map((i) => `msg_C${i}${uid()}`);
    const rows = [
      message(ids[0]!, tenantId, { htmlBody: big }),
      message(ids[1]!, tenantId, { htmlBody: big }),
      message(ids[2]!, tenantId, { htmlBody: huge }),
      message(ids[3]!, tenantId, { htmlBody: big }),
    ];
    const statements = catalogStatements(env.DB, rows, [], []);
    // [0, 1] share a list; [2] alone with positional parameters; [3] in a list after it.
    expect(statements).toHaveLength(3);
    await env.DB.batch(statements);
    const stored = await db
      .select({ id: messages.id, html: messages.htmlBody })
      .from(messages)
      .where(inArray(messages.id, ids));
    expect(new Map(stored.map((r) => [r.id, r.html]))).toEqual(
      new Map([
        [ids[0], big],
        [ids[1], big],
        [ids[2], huge],
        [ids[3], big],
      ]),
    );
  });
});

describe("outcome statements (one statement per kind of row)", () => {
  async function seed(tenantId: string, n: number): Promise<string[]> {
    const ids = Array.from({ length: n }, (_, i) => `msg_R${i}${uid()}`);
    await env.DB.batch(
      catalogStatements(
        env.DB,
        ids.map((id) => message(id, tenantId)),
        ids.flatMap((id) => [
          recipient(id, tenantId, "a@example.net"),
          recipient(id, tenantId, "b@example.net"),
        ]),
        [],
      ),
    );
    return ids;
  }

  const row = (id: string) =>
    env.DB.prepare(
      "SELECT status, updated_at, next_attempt_at, delivered_at, error_message, deferrals, dispatches FROM messages WHERE id = ?",
    )
      .bind(id)
      .first();
  const statuses = async (id: string) =>
    (
      await env.DB.prepare("SELECT email, status FROM message_recipients WHERE message_id = ? ORDER BY email")
        .bind(id)
        .all()
    ).results;

  it("write what one statement per outcome wrote, a message named twice in order", async () => {
    const tenantId = await createTenant();
    const [a, b, c] = await seed(tenantId, 3);
    await env.DB.prepare("UPDATE messages SET error_message = 'earlier', delivered_at = 5 WHERE id = ?")
      .bind(c)
      .run();
    const ev = (id: string, type: NewEvent["eventType"], attempt: number): NewEvent => ({
      ...processed(id!, tenantId, "a@example.net"),
      eventType: type,
      attempt,
    });
    const writes: ResultWrite[] = [
      // a: deferred, then (same flush) delivered: the second outcome must land after the first.
      {
        messageId: a!,
        now: NOW + 1,
        events: [ev(a!, "deferred", 1)],
        recipientStatuses: [{ email: "a@example.net", status: "deferred" }],
        status: "queued",
        errorMessage: "451 later",
        nextAttemptAt: NOW + 60_000,
        deferrals: 1,
      },
      {
        messageId: b!,
        now: NOW + 2,
        events: [ev(b!, "bounce", 1)],
        recipientStatuses: [
          { email: "a@example.net", status: "bounced" },
          { email: "b@example.net", status: "failed" },
          { email: "a@example.net", status: "failed" },
        ],
        status: "bounced",
        errorMessage: null,
        nextAttemptAt: null,
      },
      {
        messageId: a!,
        now: NOW + 3,
        events: [ev(a!, "delivered", 2)],
        recipientStatuses: [{ email: "a@example.net", status: "delivered" }],
        status: "delivered",
        deliveredAt: NOW + 3,
        nextAttemptAt: null,
      },
      // c: delivered again: delivered_at keeps the first; an absent errorMessage leaves the column.
      {
        messageId: c!,
        now: NOW + 4,
        events: [],
        recipientStatuses: [],
        status: "delivered",
        deliveredAt: NOW + 4,
        nextAttemptAt: null,
      },
    ];
    const statements = resultStatements(env.DB, writes);
    // Two rounds (a is named twice); c has no recipient statuses, so nothing to update there.
    expect(statements).toHaveLength(6);
    await env.DB.batch(statements);
    expect(await row(a!)).toEqual({
      status: "delivered",
      updated_at: NOW + 3,
      next_attempt_at: null,
      delivered_at: NOW + 3,
      error_message: "451 later",
      deferrals: 1,
      dispatches: 0,
    });
    expect(await statuses(a!)).toEqual([
      { email: "a@example.net", status: "delivered" },
      { email: "b@example.net", status: "pending" },
    ]);
    expect(await row(b!)).toMatchObject({ status: "bounced", error_message: null, deferrals: 0 });
    expect(await statuses(b!)).toEqual([
      { email: "a@example.net", status: "failed" },
      { email: "b@example.net", status: "failed" },
    ]);
    expect(await row(c!)).toMatchObject({ status: "delivered", delivered_at: 5, error_message: "earlier" });
    const types = await db
      .select({ t: events.eventType })
      .from(events)
      .where(eq(events.messageId, a!))
      .orderBy(events.timestamp, sql`rowid`);
    expect(types.map((t) => t.t)).toEqual(["deferred", "delivered"]);
    // Replayed (a lost acknowledgement): the events are not duplicated.
    await env.DB.batch(resultStatements(env.DB, writes));
    expect(await db.select().from(events).where(eq(events.messageId, a!))).toHaveLength(2);
  });

  it("mark messages processing once per hand-over, never moving a final status back", async () => {
    const tenantId = await createTenant();
    const [a, b, c] = await seed(tenantId, 3);
    await env.DB.prepare("UPDATE messages SET status = 'delivered' WHERE id = ?").bind(c).run();
    // b was handed over twice before the flush (a dropped link, then again).
    const statements = markSendingStatements(env.DB, [a!, b!, c!, b!], NOW + 9);
    expect(statements).toHaveLength(2);
    await env.DB.batch(statements);
    expect(await row(a!)).toMatchObject({ status: "processing", dispatches: 1, updated_at: NOW + 9 });
    expect(await row(b!)).toMatchObject({ status: "processing", dispatches: 2 });
    expect(await row(c!)).toMatchObject({ status: "delivered", dispatches: 0, updated_at: NOW });
  });

  it("find each recipient and message by its index, never by scanning the catalog", async () => {
    const list = JSON.stringify([["msg_X", "a@example.net", "delivered"]]);
    const plans = [
      [HUB_UPDATE_SQL.markSending, [NOW, 1, JSON.stringify(["msg_X"])]],
      [HUB_UPDATE_SQL.recipientStatus, [list]],
      [
        HUB_UPDATE_SQL.messageResult,
        [JSON.stringify([["msg_X", "delivered", NOW, null, null, 0, null, null]])],
      ],
    ] as const;
    for (const [q, params] of plans) {
      const plan = await env.DB.prepare(`EXPLAIN QUERY PLAN ${q}`)
        .bind(...params)
        .all<{ detail: string }>();
      const details = plan.results.map((p) => p.detail).join("\n");
      expect(details, details).not.toMatch(/SCAN (messages|message_recipients)\b/);
      expect(details, details).toMatch(/SEARCH (messages|message_recipients) USING/);
    }
  });
});
