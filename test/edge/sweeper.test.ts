/**
 * The cron sweeper hands back to the hub any live message whose enqueue was lost, and leaves alone
 * messages that are waiting for a scheduled retry.
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
import { STALE_AFTER_MS } from "../../edge/src/services/sweeper.ts";
import { mailBody, sendOne, setupTenant } from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

function outboxIds(): Promise<string[]> {
  return runInDurableObject(hub(), (_instance: OriginHub, state) =>
    state.storage.sql
      .exec<{ message_id: string }>("SELECT message_id FROM outbox")
      .toArray()
      .map((r) => r.message_id),
  );
}

async function loseFromOutbox(id: string, patch: { nextAttemptAt?: number }): Promise<void> {
  await runInDurableObject(hub(), (_instance: OriginHub, state) => {
    state.storage.sql.exec("DELETE FROM outbox WHERE message_id = ?", id);
  });
  const old = Date.now() - STALE_AFTER_MS - 60_000;
  await env.DB.prepare("UPDATE messages SET updated_at = ?, next_attempt_at = ? WHERE id = ?")
    .bind(old, patch.nextAttemptAt ?? null, id)
    .run();
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
  it("re-enqueues a queued live message the hub does not hold", async () => {
    const t = await setupTenant();
    const id = await sendOne(t.liveKey, mailBody(t.from));
    expect(await outboxIds()).toContain(id);

    await loseFromOutbox(id, {});
    expect(await outboxIds()).not.toContain(id);

    await runCron();
    expect(await outboxIds()).toContain(id);
  });

  it("leaves a message waiting for its retry to the hub", async () => {
    const t = await setupTenant();
    const id = await sendOne(t.liveKey, mailBody(t.from));
    await loseFromOutbox(id, { nextAttemptAt: Date.now() + 3_600_000 });

    await runCron();
    expect(await outboxIds()).not.toContain(id);
  });

  it("never enqueues sandbox messages", async () => {
    const t = await setupTenant();
    const id = await sendOne(t.testKey, mailBody(t.from));
    await env.DB.prepare("UPDATE messages SET updated_at = 0 WHERE id = ?").bind(id).run();

    await runCron();
    expect(await outboxIds()).not.toContain(id);
  });
});
