/**
 * The cron sweeper (edge/src/services/sweeper.ts): a hub-accepted message is its shard's alone and
 * is never re-enqueued; the cron wakes every shard to write catalog rows that wait for D1; and the
 * legacy guard still hands back to the hub a live message accepted before the hub was the point of
 * acceptance (an id that names no shard) whose enqueue was lost, leaving alone one that waits for a
 * scheduled retry.
 */
import {
  createExecutionContext,
  createScheduledController,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../edge/src/index.ts";
import type { OriginHub } from "../../edge/src/objects/origin-hub.ts";
import { shardFor } from "../../edge/src/lib/shards.ts";
import { STALE_AFTER_MS } from "../../edge/src/services/sweeper.ts";
import { ulid } from "../../shared/ids.ts";
import { mailBody, sendOne, setupTenant, type TenantFixture } from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

function outboxIds(): Promise<string[]> {
  return runInDurableObject(hub(), (_instance: OriginHub, state) =>
    state.storage.sql
      .exec<{ message_id: string }>("SELECT message_id FROM outbox")
      .toArray()
      .map((r) => r.message_id),
  );
}

const HELD = "events_held_by_sweeper_test";
const old = () => Date.now() - STALE_AFTER_MS - 60_000;

/** A live message as the send path wrote it before the hub accepted messages: D1 first, then the hub. */
async function legacyMessage(t: TenantFixture, nextAttemptAt: number | null = null): Promise<string> {
  const id = `msg_${ulid()}`;
  expect(shardFor(id)).toBeNull();
  await env.DB.batch([
    env.DB.prepare(
      `INSERT INTO messages (id, tenant_id, status, mode, from_email, subject, to_emails, recipients, headers,
         categories, custom_args, message_id_header, next_attempt_at, created_at, updated_at)
       VALUES (?, ?, 'queued', 'live', ?, 'legacy', '["r@example.net"]',
         '{"to":[{"email":"r@example.net"}],"cc":[],"bcc":[],"replyTo":[]}', '{}', '[]', '{}', ?, ?, ?, ?)`,
    ).bind(id, t.tenantId, t.from, `${id}@${t.domain}`, nextAttemptAt, old(), old()),
    env.DB.prepare(
      "INSERT INTO message_recipients (message_id, tenant_id, email, kind) VALUES (?, ?, 'r@example.net', 'to')",
    ).bind(id, t.tenantId),
  ]);
  return id;
}

async function runCron(): Promise<void> {
  const ctx = createExecutionContext();
  await worker.scheduled(
    createScheduledController({ cron: "*/5 * * * *", scheduledTime: Date.now() }),
    env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
}

describe("cron sweeper", () => {
  it("never re-enqueues a hub-accepted message, even one its hub no longer holds", async () => {
    const t = await setupTenant();
    const id = await sendOne(t.liveKey, mailBody(t.from));
    expect(shardFor(id)).toEqual({ region: null, index: 0 });
    await hub().flush();
    await runInDurableObject(hub(), (_instance: OriginHub, state) => {
      state.storage.sql.exec("DELETE FROM outbox WHERE message_id = ?", id);
    });
    await env.DB.prepare("UPDATE messages SET updated_at = ? WHERE id = ?").bind(old(), id).run();

    await runCron();
    expect(await outboxIds()).not.toContain(id);
  });

  it("wakes every shard to write catalog rows still waiting for D1 (timers and alarm lost)", async () => {
    const t = await setupTenant();
    // D1 refuses the catalog batch while the message is accepted, so its rows wait in the shard.
    await env.DB.prepare(`ALTER TABLE events RENAME TO ${HELD}`).run();
    let id: string;
    try {
      id = await sendOne(t.liveKey, mailBody(t.from));
      // Lose the alarm, then every timer with the object itself: only a wake-up can write the rows now.
      await runInDurableObject(hub(), async (_instance: OriginHub, state) => {
        await state.storage.deleteAlarm();
      });
      await expect(
        runInDurableObject(hub(), (_instance: OriginHub, state) => state.abort("test: lose the timers")),
      ).rejects.toThrow();
    } finally {
      await env.DB.prepare(`ALTER TABLE ${HELD} RENAME TO events`).run();
    }
    expect(await env.DB.prepare("SELECT 1 FROM messages WHERE id = ?").bind(id).first()).toBeNull();

    await runCron();
    const row = await env.DB.prepare("SELECT status FROM messages WHERE id = ?").bind(id).first();
    expect(row).toEqual({ status: "queued" });
  });

  it("legacy guard: re-enqueues a queued live message (id naming no shard) the hub does not hold", async () => {
    const t = await setupTenant();
    const id = await legacyMessage(t);
    expect(await outboxIds()).not.toContain(id);

    await runCron();
    expect(await outboxIds()).toContain(id);
  });

  it("legacy guard: leaves a message waiting for its retry to the hub", async () => {
    const t = await setupTenant();
    const id = await legacyMessage(t, Date.now() + 3_600_000);

    await runCron();
    expect(await outboxIds()).not.toContain(id);
  });

  it("never enqueues sandbox messages", async () => {
    const t = await setupTenant();
    const id = await sendOne(t.testKey, mailBody(t.from));
    expect(shardFor(id)).toBeNull();
    await env.DB.prepare("UPDATE messages SET updated_at = 0 WHERE id = ?").bind(id).run();

    await runCron();
    expect(await outboxIds()).not.toContain(id);
  });
});
