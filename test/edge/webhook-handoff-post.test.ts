/**
 * A hub's hand-off posts the webhook batches that are already due itself, without waiting for the
 * WebhookQueue's alarm (docs/api/webhooks.md#latency): under a stream of hand-offs the alarm is
 * delivered late. The batching window, retries and de-duplication stay as they are. The queue's
 * clock and receiver are handed in (runInDurableObject), far ahead of the real clock, so the alarm
 * it sets never fires by itself here and is never run by the test: every POST below came from a
 * hand-off.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../shared/ids.ts";
import { BATCH_WINDOW_MS } from "../../edge/src/objects/webhook-queue.ts";
import type { FlushedEvent } from "../../edge/src/services/webhook-events.ts";
import { bearer, call, createApiKey, createTenant, eventually } from "./helpers.ts";
import { inQueue } from "./webhooks.helpers.ts";

const PUBLIC = "93.184.216.34";

async function rig() {
  const tenant = await createTenant();
  const key = (await createApiKey(tenant, { scopes: ["webhooks.read", "webhooks.write"] })).key;
  const stub = env.WEBHOOK_QUEUE.getByName(tenant);
  const state = {
    now: Date.now() + 30 * 24 * 3600_000,
    posts: [] as { body: string; at: number }[],
    status: 200,
  };
  await inQueue(tenant, (q) => {
    q.clock = () => state.now;
    q.resolver = async () => [PUBLIC];
    q.fetcher = async (req) => {
      state.posts.push({ body: await req.text(), at: state.now });
      return new Response("ok", { status: state.status });
    };
  });
  const res = await call("/v3/user/webhooks/event/settings", {
    method: "PATCH",
    headers: bearer(key),
    body: JSON.stringify({ enabled: true, url: "https://hooks.example.com/sg", delivered: true }),
  });
  expect(res.status).toBe(200);
  const event = (): FlushedEvent => ({
    id: newId("evt", state.now),
    tenantId: tenant,
    messageId: newId("msg", state.now),
    eventType: "delivered",
    recipientEmail: "rcpt@inbox.test",
    timestamp: state.now,
    attempt: 1,
    metadata: { smtp_response: "250 2.0.0 OK" },
  });
  /** The queue's deliveries, oldest first. */
  const deliveries = () =>
    inQueue(tenant, (_q, s) =>
      s.storage.sql
        .exec<{ state: string; attempts: number; event_ids: string }>(
          "SELECT state, attempts, event_ids FROM delivery ORDER BY created_at, id",
        )
        .toArray(),
    );
  const settled = async (n: number, check: (d: Awaited<ReturnType<typeof deliveries>>) => boolean) => {
    const d = await eventually(deliveries, (d) => d.length === n && check(d));
    expect(d).toHaveLength(n);
    expect(check(d)).toBe(true);
    return d;
  };
  return { tenant, stub, state, event, deliveries, settled };
}

describe("a hand-off posts the batches already due", () => {
  it("the events of a batching window go out in one POST from the next hand-off, without the alarm", async () => {
    const r = await rig();
    const t0 = r.state.now;
    const first = [r.event(), r.event()];
    expect(await r.stub.handoff(r.tenant, first)).toEqual({ queued: 2, endpoints: 1 });
    // Inside the window: nothing posted, the alarm set for the window's end.
    expect(r.state.posts).toHaveLength(0);
    expect(await r.stub.alarmAt()).toBe(t0 + BATCH_WINDOW_MS);

    r.state.now = t0 + BATCH_WINDOW_MS;
    const second = r.event();
    expect(await r.stub.handoff(r.tenant, [second])).toEqual({ queued: 1, endpoints: 1 });
    const d = await r.settled(1, (d) => d[0]!.state === "succeeded");
    expect(JSON.parse(d[0]!.event_ids)).toEqual([...first, second].map((e) => e.id));
    expect(r.state.posts).toHaveLength(1);
    for (const e of [...first, second]) expect(r.state.posts[0]!.body).toContain(e.id);
    // The alarm is still the one set at the first hand-off: it has not run.
    expect(await r.stub.alarmAt()).toBe(t0 + BATCH_WINDOW_MS);

    // A repeated hand-off of the same events (a lost answer) queues and posts nothing.
    r.state.now += BATCH_WINDOW_MS;
    expect(await r.stub.handoff(r.tenant, [...first, second])).toEqual({ queued: 0, endpoints: 1 });
    await r.settled(1, () => true);
    expect(r.state.posts).toHaveLength(1);
  });

  it("a failed POST keeps its retry schedule; a hand-off after the retry is due posts the same body again", async () => {
    const r = await rig();
    r.state.status = 500;
    const e = r.event();
    await r.stub.handoff(r.tenant, [e]);
    r.state.now += BATCH_WINDOW_MS;
    await r.stub.handoff(r.tenant, []);
    await r.settled(1, (d) => d[0]!.attempts === 1);
    expect(r.state.posts).toHaveLength(1);

    // Before the first retry step (60 s) a hand-off posts nothing again.
    r.state.now += 59_000;
    await r.stub.handoff(r.tenant, []);
    await r.settled(1, (d) => d[0]!.attempts === 1 && d[0]!.state === "pending");
    expect(r.state.posts).toHaveLength(1);

    r.state.status = 200;
    r.state.now += 1_000;
    await r.stub.handoff(r.tenant, []);
    await r.settled(1, (d) => d[0]!.state === "succeeded" && d[0]!.attempts === 2);
    expect(r.state.posts).toHaveLength(2);
    expect(r.state.posts[1]!.body).toBe(r.state.posts[0]!.body);
  });
});
