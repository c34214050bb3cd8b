/**
 * The hub's durable hand-off to the WebhookQueue (edge/src/services/webhook-handoff.ts,
 * docs/api/webhooks.md#guarantees): a queue that refuses, and a hub restarted between D1's write
 * and the queue's answer, still end with every event posted once; a hand-off repeated after the
 * queue took it (the hub stopped before deleting its row) posts nothing twice; a tenant without
 * webhooks costs one queue call per window, not one per flush.
 *
 * The hub, D1 and the queue are the real objects; the receiver is the queue's fetcher (its resolver
 * points the endpoint's name at a public address), as in events-pipeline.test.ts — workerd cannot
 * listen on a socket; test/e2e/webhooks.e2e.test.ts posts to a real loopback HTTP receiver.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { OriginHub } from "../../edge/src/objects/origin-hub.ts";
import type { WebhookQueue } from "../../edge/src/objects/webhook-queue.ts";
import { NO_WEBHOOKS_TTL_MS } from "../../edge/src/services/webhook-handoff.ts";
import {
  bearer,
  call,
  createApiKey,
  eventually,
  getMessage,
  linkSettled,
  mailBody,
  openLink,
  resetHub,
  sendOne,
  setupTenant,
  type LinkClient,
} from "./helpers.ts";
import { inQueue } from "./webhooks.helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");
const opened: LinkClient[] = [];

beforeEach(async () => {
  await resetHub();
  await runInDurableObject(hub(), (_i, state) => {
    state.storage.sql.exec("DELETE FROM webhook_handoff");
  });
});
afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

interface Staged {
  seq: number;
  tenant_id: string;
  events: string;
  attempts: number;
  next_at: number;
}
const staged = () =>
  runInDurableObject(hub(), (_i, state) =>
    state.storage.sql
      .exec<Staged & Record<string, SqlStorageValue>>("SELECT * FROM webhook_handoff")
      .toArray(),
  );

/** A tenant whose Event Webhook posts every event to a receiver the test reads; `calls` counts hand-offs. */
async function rig(opts: { webhook?: boolean } = {}) {
  const t = await setupTenant();
  const posts: Record<string, unknown>[] = [];
  await inQueue(t.tenantId, (q: WebhookQueue) => {
    q.clock = () => Date.now();
    q.resolver = async (host) => (host === "hooks.example.com" ? ["93.184.216.34"] : []);
    q.fetcher = async (req) => {
      posts.push(...(JSON.parse(await req.text()) as Record<string, unknown>[]));
      return new Response("ok");
    };
  });
  if (opts.webhook !== false) {
    const hooksKey = (await createApiKey(t.tenantId, { scopes: ["webhooks.read", "webhooks.write"] })).key;
    const res = await call("/v3/user/webhooks/event/settings", {
      method: "PATCH",
      headers: bearer(hooksKey),
      body: JSON.stringify({
        enabled: true,
        url: "https://hooks.example.com/sg",
        processed: true,
        delivered: true,
      }),
    });
    expect(res.status, await res.text()).toBe(200);
  }
  const refuse = (why: string | null) =>
    inQueue(t.tenantId, (q) => {
      q.refuseHandoffs = why;
    });
  /** Hand-offs the queue answered so far (refused ones too). */
  const calls = () => inQueue(t.tenantId, (q) => q.handoffs);
  return { ...t, posts, calls, refuse };
}

/** Sends one message and has an origin deliver it; resolves once the hub acknowledged the result. */
async function deliverOne(r: Awaited<ReturnType<typeof rig>>): Promise<string> {
  const origin = await openLink();
  opened.push(origin);
  await origin.hello(1);
  const id = await sendOne(r.liveKey, mailBody(r.from));
  const [job] = await origin.jobs(1);
  origin.send({ type: "ack", jobIds: [job!.jobId] });
  origin.send({
    type: "result",
    jobId: job!.jobId,
    messageId: id,
    attempt: 1,
    recipients: [
      { recipient: "rcpt@example.net", status: "delivered", smtpCode: 250, response: "250 2.0.0 OK" },
    ],
  });
  await origin.next("resultAck");
  await linkSettled(origin);
  return id;
}

const idsOf = (posts: Record<string, unknown>[]) => posts.map((p) => String(p["sg_event_id"]));

describe("the hub's hand-off to the webhook queue", () => {
  it("a queue that refuses, then a hub restart, still posts every event once", async () => {
    const r = await rig();
    await r.refuse("queue down (test)");
    const id = await deliverOne(r);
    // The events are in D1 (the timeline shows them) and staged in the hub, refused at least once.
    const timeline = (await getMessage(r.liveKey, id)).events.map((e) => e.event_id).sort();
    expect(timeline).toHaveLength(2);
    const rows = await eventually(staged, (s) => s.length > 0 && s.every((x) => x.attempts > 0), 4000);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((x) => x.attempts > 0 && x.tenant_id === r.tenantId)).toBe(true);
    expect(r.posts).toHaveLength(0);
    // Refused hand-offs are retried with back-off (1 s, 5 s, …), not in a loop.
    expect(await r.calls()).toBeLessThanOrEqual(2 * rows.length + 2);
    // The hub stops with the rows staged: its memory (timers, the drain) is gone.
    await expect(
      runInDurableObject(hub(), (_i: OriginHub, state) => {
        state.abort("test: restart with staged hand-offs");
      }),
    ).rejects.toThrow();
    await r.refuse(null);
    // Nothing but the restarted hub's own alarm hands them off (the retry is ~1-5 s away).
    const posts = await eventually(
      async () => r.posts,
      (p) => p.length >= 2,
      12_000,
    );
    expect(idsOf(posts).sort()).toEqual(timeline);
    expect(await staged()).toEqual([]);
    // And not again: a second alarm run has nothing to hand off, the queue nothing to post.
    await runDurableObjectAlarm(hub());
    await new Promise((res) => setTimeout(res, 500));
    expect(idsOf(r.posts).sort()).toEqual(timeline);
  }, 30_000);

  it("a hand-off repeated after the queue took it (the hub stopped before deleting its row) posts nothing twice", async () => {
    const r = await rig();
    await r.refuse("queue down (test)");
    await deliverOne(r);
    const rows = await eventually(staged, (s) => s.length > 0 && s.every((x) => x.attempts > 0), 4000);
    await r.refuse(null);
    // Due now: the alarm hands them off.
    await runInDurableObject(hub(), (_i, state) => {
      state.storage.sql.exec("UPDATE webhook_handoff SET next_at = 0");
    });
    // On a loaded machine the hub's own alarm may be running at this moment (runDurableObjectAlarm
    // then finds nothing scheduled and returns false), so wait for the rows to go rather than
    // asserting right after this run.
    await runDurableObjectAlarm(hub());
    expect(await eventually(staged, (s) => s.length === 0, 4000)).toEqual([]);
    const first = await eventually(
      async () => r.posts,
      (p) => p.length >= 2,
      4000,
    );
    expect(first).toHaveLength(2);
    // As if the queue's answer had been lost: the same rows staged again (the hub's own alarm may
    // hand them off before the test's run does; either way a call is made and nothing is posted).
    const before = await r.calls();
    await runInDurableObject(hub(), (_i, state) => {
      for (const row of rows)
        state.storage.sql.exec(
          "INSERT INTO webhook_handoff (tenant_id, events, staged_at, attempts, next_at) VALUES (?, ?, ?, 0, 0)",
          row.tenant_id,
          row.events,
          Date.now(),
        );
      // A bare INSERT schedules nothing: make sure an alarm is due for the run below.
      return state.storage.setAlarm(Date.now());
    });
    await runDurableObjectAlarm(hub());
    // The hand-off call may still be under way when the alarm's run returns.
    const after = await eventually(
      async () => ({ calls: await r.calls(), staged: await staged() }),
      (x) => x.calls > before && x.staged.length === 0,
      4000,
    );
    expect(after.calls).toBeGreaterThan(before);
    expect(after.staged).toEqual([]);
    // The queue de-duplicated them: nothing pending, no new delivery.
    const queued = await inQueue(r.tenantId, (_q, state) => ({
      pending: state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM pending").one().n,
      deliveries: state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM delivery").one().n,
    }));
    expect(queued.pending).toBe(0);
    await new Promise((res) => setTimeout(res, 500));
    expect(r.posts).toHaveLength(2);
    expect(new Set(idsOf(r.posts)).size).toBe(2);
    expect(queued.deliveries).toBeGreaterThan(0);
  }, 20_000);

  it("a tenant without webhooks costs one queue call per window, and none is staged meanwhile", async () => {
    const r = await rig({ webhook: false });
    await deliverOne(r);
    // The first flushes ask the queue (one call, or two if the second staged before the first answer).
    await eventually(r.calls, (n) => n >= 1, 3000);
    await new Promise((res) => setTimeout(res, 300));
    const asked = await r.calls();
    expect(asked).toBeGreaterThanOrEqual(1);
    expect(asked).toBeLessThanOrEqual(2);
    // Within the window: another message's processed and delivered events are neither staged nor handed off.
    const started = Date.now();
    await deliverOne(r);
    await new Promise((res) => setTimeout(res, 300));
    expect(Date.now() - started).toBeLessThan(NO_WEBHOOKS_TTL_MS);
    expect(await r.calls()).toBe(asked);
    expect(await staged()).toEqual([]);
    // After the window the queue is asked again (an endpoint made meanwhile gets the events from then on).
    await new Promise((res) => setTimeout(res, NO_WEBHOOKS_TTL_MS));
    await deliverOne(r);
    const after = await eventually(r.calls, (n) => n > asked, 3000);
    expect(after).toBeGreaterThan(asked);
  }, 30_000);
});
