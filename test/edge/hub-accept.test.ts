/**
 * The hub shard as the point of acceptance (docs/architecture.md, "The accept path"): a live send
 * is in its shard before the 202 and in the D1 catalog after the shard's flush; a shard restarted
 * between the two loses nothing and duplicates nothing; a replayed flush changes nothing; a request's
 * messages are accepted all together or not at all; and no result reaches D1 before its message row.
 * Every test shares hub-0 (HUB_SHARDS = 1, storage per file) and starts with no links.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { OriginHub } from "../../edge/src/objects/origin-hub.ts";
import { newMessageId, shardFor } from "../../edge/src/lib/shards.ts";
import type { NewMessage } from "../../edge/src/db/messages.ts";
import {
  buildOutboxEntry,
  catalogRowsOf,
  envelopeRecipients,
  type AcceptedMessage,
} from "../../edge/src/services/outbox-entry.ts";
import { newId } from "../../shared/ids.ts";
import {
  getMessage,
  LinkClient,
  mailBody,
  openLink,
  sendMail,
  setupTenant,
  type TenantFixture,
  resetHub,
  breakD1,
  restoreD1,
  EVENTS_HELD,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

/** A live message as the send path builds it, for calling the hub's accept directly. */
function accepted(t: TenantFixture, subject: string, tenantId = t.tenantId): AcceptedMessage {
  const now = Date.now();
  const id = newMessageId({ region: null, index: 0 }, now);
  const row = {
    id,
    tenantId,
    status: "queued",
    mode: "live",
    apiKeyId: t.liveKeyId,
    fromEmail: t.from,
    fromName: null,
    subject,
    toEmails: ["a@example.net", "b@example.net"],
    recipients: {
      to: [{ email: "a@example.net" }, { email: "b@example.net" }],
      cc: [],
      bcc: [],
      replyTo: [],
    },
    headers: {},
    categories: [],
    customArgs: {},
    textBody: "hello",
    htmlBody: null,
    templateId: null,
    batchId: null,
    messageIdHeader: `${id.slice(4).toLowerCase()}@${t.domain}`,
    dispatches: 0,
    deferrals: 0,
    nextAttemptAt: null,
    errorMessage: null,
    createdAt: now,
    updatedAt: now,
    deliveredAt: null,
  } satisfies NewMessage;
  const recipients = envelopeRecipients(row).map((email) => ({
    messageId: id,
    tenantId,
    email,
    kind: "to" as const,
  }));
  const events = envelopeRecipients(row).map((email) => ({
    id: newId("evt", now),
    tenantId,
    messageId: id,
    eventType: "processed" as const,
    recipientEmail: email,
    timestamp: now,
    attempt: 0,
    metadata: {},
  }));
  return { entry: buildOutboxEntry(row, undefined), catalog: catalogRowsOf(row, recipients, events) };
}

interface D1Counts {
  messages: number;
  recipients: number;
  events: number;
}

async function d1Counts(id: string): Promise<D1Counts> {
  const n = async (sql: string) => (await env.DB.prepare(sql).bind(id).first<{ n: number }>())!.n;
  return {
    messages: await n("SELECT count(*) AS n FROM messages WHERE id = ?"),
    recipients: await n("SELECT count(*) AS n FROM message_recipients WHERE message_id = ?"),
    events: await n("SELECT count(*) AS n FROM events WHERE message_id = ?"),
  };
}

function hubRow(id: string): Promise<{ catalogued: number; catalog: number } | undefined> {
  return runInDurableObject(hub(), (_instance, state) => {
    const sql = state.storage.sql;
    if (sql.exec("SELECT 1 FROM outbox WHERE message_id = ?", id).toArray().length === 0) return undefined;
    // A message is catalogued once its catalog copy is gone (the flush drops it when D1 took the rows).
    const catalog = sql.exec("SELECT 1 FROM catalog WHERE message_id = ?", id).toArray().length;
    return { catalogued: catalog === 0 ? 1 : 0, catalog };
  });
}

/** Flushes until the shard says nothing waits for D1 (the deterministic signal of a finished flush). */
async function flushed(): Promise<void> {
  for (let i = 0; i < 50; i++) if ((await hub().flush()).uncatalogued === 0) return;
  throw new Error("the hub never finished its catalog flush");
}

const opened: LinkClient[] = [];
let t: TenantFixture;
beforeEach(async () => {
  t = await setupTenant();
  await resetHub();
});
afterEach(async () => {
  await restoreD1();
  for (const l of opened.splice(0)) l.close();
});

describe("accept", () => {
  it("a live send is in its shard (outbox and catalog rows) when the 202 arrives, and in D1 after the flush", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [
          { to: [{ email: "one@example.net" }], cc: [{ email: "cc@example.net" }] },
          { to: [{ email: "two@example.net" }] },
        ],
      }),
    );
    expect(res.status).toBe(202);
    const { message_ids: ids } = (await res.json()) as { message_ids: string[] };
    expect(ids).toHaveLength(2);
    // One request, one shard, named by every id.
    for (const id of ids) expect(shardFor(id)).toEqual({ region: null, index: 0 });
    for (const id of ids) expect(await hubRow(id)).toBeDefined();

    await flushed();
    for (const id of ids) expect(await hubRow(id)).toEqual({ catalogued: 1, catalog: 0 });
    expect(await d1Counts(ids[0]!)).toEqual({ messages: 1, recipients: 2, events: 2 });
    expect(await d1Counts(ids[1]!)).toEqual({ messages: 1, recipients: 1, events: 1 });
    const row = await env.DB.prepare("SELECT status, mode, subject, text_body FROM messages WHERE id = ?")
      .bind(ids[0]!)
      .first();
    expect(row).toEqual({ status: "queued", mode: "live", subject: "Hello", text_body: "Hello there" });
  });

  it("a send is accepted while D1 cannot take the catalog rows, and they reach D1 once it can", async () => {
    await breakD1();
    const res = await sendMail(t.liveKey, mailBody(t.from));
    expect(res.status).toBe(202);
    const { message_id: id } = (await res.json()) as { message_id: string };
    expect((await hub().flush()).uncatalogued).toBeGreaterThan(0);
    expect(await hubRow(id)).toEqual({ catalogued: 0, catalog: 1 });
    // Read-your-writes does not need the catalog.
    expect(await getMessage(t.liveKey, id)).toMatchObject({ id, status: "queued" });

    await restoreD1();
    await flushed();
    expect(await d1Counts(id)).toEqual({ messages: 1, recipients: 1, events: 1 });
  });

  it("a request's messages are accepted all together or not at all", async () => {
    const good = accepted(t, "first");
    const other = accepted(t, "second", "tnt_someone_else");
    // The second message fails inside the transaction, after the first one's rows were written.
    await runInDurableObject(hub(), async (instance: OriginHub) => {
      await expect(instance.accept({ tenantId: t.tenantId, messages: [good, other] })).rejects.toThrow(
        /another tenant/,
      );
    });
    expect(await hubRow(good.entry.messageId)).toBeUndefined();
    expect(await hubRow(other.entry.messageId)).toBeUndefined();
  });
});

/** The hub's flush scheduling, as the tests below read it (objects/origin-hub.ts `scheduleFlush`). */
interface FlushInternals {
  flushResults(): Promise<void>;
  flushTimer: unknown;
  flushAt: number;
}

describe("the catalog flush's cadence", () => {
  it("a row accepted while a batch is being written waits for the flush its accept scheduled, not the next instant", async () => {
    const a = accepted(t, "cadence a");
    const b = accepted(t, "cadence b");
    await runInDurableObject(hub(), async (instance: OriginHub) => {
      const hubFlush = instance as unknown as FlushInternals;
      expect(await instance.accept({ tenantId: t.tenantId, messages: [a] })).toMatchObject({ ok: true });
      // Reads a's catalog row, then waits for D1; b arrives meanwhile.
      const writing = hubFlush.flushResults();
      expect(await instance.accept({ tenantId: t.tenantId, messages: [b] })).toMatchObject({ ok: true });
      await writing;
      // Either b's own flush (CATALOG_FLUSH_MS after its accept) is still ahead, or it has begun
      // already; flushing again at once (what made busy hubs write ~5 rows a batch) would set a
      // flush that is due now.
      if (hubFlush.flushTimer !== null) expect(hubFlush.flushAt).toBeGreaterThan(Date.now());
    });
    await flushed();
    for (const m of [a, b])
      expect(await d1Counts(m.entry.messageId)).toEqual({ messages: 1, recipients: 2, events: 2 });
  });

  it("a full batch that leaves rows behind is followed by the next one at once", async () => {
    // More than one batch (CATALOG_BATCH_MAX, 100 rows) in one request.
    const many = Array.from({ length: 101 }, (_, i) => accepted(t, `backlog ${i}`));
    await runInDurableObject(hub(), async (instance: OriginHub) => {
      const hubFlush = instance as unknown as FlushInternals;
      expect(await instance.accept({ tenantId: t.tenantId, messages: many })).toMatchObject({ ok: true });
      await hubFlush.flushResults();
      expect(hubFlush.flushTimer).not.toBeNull();
      expect(hubFlush.flushAt).toBeLessThanOrEqual(Date.now());
    });
    await flushed();
    expect(await d1Counts(many[100]!.entry.messageId)).toEqual({ messages: 1, recipients: 2, events: 2 });
  });
});

describe("a hub restart between accept and flush", () => {
  it("loses nothing and duplicates nothing in D1", async () => {
    const a = accepted(t, "restart a");
    const b = accepted(t, "restart b");
    // D1 refuses the catalog batch until the object has been reset, so no flush can land before
    // the restart. The accept's answer, as the Worker gets it, means the rows are durable.
    await breakD1();
    expect(await hub().accept({ tenantId: t.tenantId, messages: [a, b] })).toMatchObject({ ok: true });
    await expect(
      runInDurableObject(hub(), (_instance: OriginHub, state) => {
        state.abort("test: restart before the catalog flush");
      }),
    ).rejects.toThrow();
    // A fresh instance: both messages are still there, still waiting for the catalog.
    expect(await hubRow(a.entry.messageId)).toEqual({ catalogued: 0, catalog: 1 });
    expect(await hubRow(b.entry.messageId)).toEqual({ catalogued: 0, catalog: 1 });
    const none = await env.DB.prepare(
      `SELECT (SELECT count(*) FROM messages WHERE id IN (?1, ?2))
            + (SELECT count(*) FROM message_recipients WHERE message_id IN (?1, ?2))
            + (SELECT count(*) FROM ${EVENTS_HELD} WHERE message_id IN (?1, ?2)) AS n`,
    )
      .bind(a.entry.messageId, b.entry.messageId)
      .first<{ n: number }>();
    expect(none!.n).toBe(0);
    await restoreD1();
    // The restarted shard writes them on its own (its alarm and timers); flush() waits for that.
    await flushed();
    for (const m of [a, b]) {
      expect(await d1Counts(m.entry.messageId)).toEqual({ messages: 1, recipients: 2, events: 2 });
    }
  });

  it("a flush replayed after D1 took it (the hub restarted before noting it) adds no row and overwrites nothing", async () => {
    const a = accepted(t, "replay");
    const copy = JSON.stringify(a.catalog);
    expect(await hub().accept({ tenantId: t.tenantId, messages: [a] })).toMatchObject({ ok: true });
    await flushed();
    // What a later result wrote must survive the replay.
    await env.DB.prepare("UPDATE messages SET status = 'delivered' WHERE id = ?")
      .bind(a.entry.messageId)
      .run();
    // As if the object had stopped after D1's answer and before it marked the row catalogued.
    await runInDurableObject(hub(), (_instance, state) => {
      state.storage.sql.exec("INSERT INTO catalog (message_id, rows) VALUES (?, ?)", a.entry.messageId, copy);
    });
    await flushed();
    expect(await d1Counts(a.entry.messageId)).toEqual({ messages: 1, recipients: 2, events: 2 });
    const row = await env.DB.prepare("SELECT status FROM messages WHERE id = ?")
      .bind(a.entry.messageId)
      .first();
    expect(row).toEqual({ status: "delivered" });
  });
});

describe("catalog before results", () => {
  it("a result that arrives before the message's catalog rows are in D1 is written after them, never lost", async () => {
    await breakD1();
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(1);
    const res = await sendMail(t.liveKey, mailBody(t.from));
    expect(res.status).toBe(202);
    const { message_id: id } = (await res.json()) as { message_id: string };
    const [job] = await origin.jobs(1);
    const result = {
      type: "result" as const,
      jobId: job!.jobId,
      messageId: id,
      attempt: job!.attempt,
      recipients: [
        { recipient: "rcpt@example.net", status: "delivered" as const, smtpCode: 250, response: "250 OK" },
      ],
    };
    origin.send(result);
    // The batch with the catalog rows and the result fails: no resultAck, the message stays.
    expect((await hub().flush()).uncatalogued).toBe(1);
    expect(origin.queued("resultAck")).toBe(0);

    await restoreD1();
    origin.send(result);
    expect((await origin.next("resultAck", 5000)).jobIds).toEqual([job!.jobId]);
    await flushed();
    expect(await d1Counts(id)).toEqual({ messages: 1, recipients: 1, events: 2 });
    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("delivered");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
  });
});
