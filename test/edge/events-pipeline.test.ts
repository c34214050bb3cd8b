/**
 * The events pipeline's other writers (docs/api/webhooks.md#events): inbound bounces and
 * complaints, and the hub's queue-age expiry, reach the tenant's webhooks as the flush's events do,
 * and are counted in stats once however often they are recorded. The webhook receiver is the
 * WebhookQueue's fetcher (with its resolver pointing the endpoint's name at a public address), as in
 * webhooks.delivery.test.ts; the hub, D1 and the queue are the real objects.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../edge/src/env.ts";
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
  runScheduledAlarm,
} from "./helpers.ts";
import { inQueue } from "./webhooks.helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");
const opened: LinkClient[] = [];

beforeEach(async () => {
  await resetHub();
});
afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

/** A tenant whose Event Webhook posts every event to a receiver the test reads. */
async function rig() {
  const t = await setupTenant();
  const posts: Record<string, unknown>[] = [];
  await inQueue(t.tenantId, (q) => {
    q.clock = () => Date.now();
    q.resolver = async (host) => (host === "hooks.example.com" ? ["93.184.216.34"] : []);
    q.fetcher = async (req) => {
      posts.push(...(JSON.parse(await req.text()) as Record<string, unknown>[]));
      return new Response("ok");
    };
  });
  const hooksKey = (
    await createApiKey(t.tenantId, { scopes: ["webhooks.read", "webhooks.write", "stats.read"] })
  ).key;
  const res = await call("/v3/user/webhooks/event/settings", {
    method: "PATCH",
    headers: bearer(hooksKey),
    body: JSON.stringify({
      enabled: true,
      url: "https://hooks.example.com/sg",
      processed: true,
      delivered: true,
      bounce: true,
      spam_report: true,
      dropped: true,
    }),
  });
  expect(res.status, await res.text()).toBe(200);
  const sum = async () => {
    const today = new Date().toISOString().slice(0, 10);
    const r = await call(`/v3/stats/sum?start_date=${today}`, { headers: bearer(hooksKey) });
    expect(r.status).toBe(200);
    return (await r.json()) as Record<string, number>;
  };
  return { ...t, posts, sum };
}

const ofType = (posts: Record<string, unknown>[], type: string) => posts.filter((p) => p["event"] === type);

describe("inbound bounces and complaints", () => {
  it("reach the webhook once and are counted once, however often the origin sends them", async () => {
    const r = await rig();
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
    const header = await env.DB.prepare("SELECT message_id_header AS h FROM messages WHERE id = ?")
      .bind(id)
      .first<{ h: string }>();
    const frame = {
      type: "inbound" as const,
      events: [
        {
          eventKey: "01JBOUNCE0000000000000000A",
          type: "bounce" as const,
          messageId: id,
          recipient: "rcpt@example.net",
          messageIdSource: "verp" as const,
          bounceType: "hard" as const,
          reason: "user_unknown",
          status: "5.1.1",
          diagnostic: "550 5.1.1 no such user",
          receivedAt: Date.now(),
        },
        {
          eventKey: "01JCOMPLAINT00000000000000",
          type: "spam_report" as const,
          messageId: id,
          recipient: null,
          messageIdSource: "message-id" as const,
          messageIdHeader: header!.h,
          feedbackType: "abuse",
          receivedAt: Date.now(),
        },
      ],
    };
    origin.send(frame);
    await origin.next("inboundAck");
    origin.send(frame); // re-sent (the first ack was lost, say)
    await origin.next("inboundAck");
    await linkSettled(origin);

    const posts = await eventually(
      async () => r.posts,
      (p) => ofType(p, "bounce").length > 0 && ofType(p, "spamreport").length > 0,
      4000,
    );
    expect(ofType(posts, "bounce")).toHaveLength(1);
    expect(ofType(posts, "bounce")[0]).toMatchObject({ sg_message_id: id, email: "rcpt@example.net" });
    expect(ofType(posts, "spamreport")).toHaveLength(1);
    const timeline = (await getMessage(r.liveKey, id)).events.map((e) => e.event_type);
    expect(timeline.filter((t) => t === "bounce")).toHaveLength(1);
    expect(await r.sum()).toMatchObject({
      requests: 1,
      processed: 1,
      delivered: 1,
      bounces: 1,
      spam_reports: 1,
    });
  });
});

describe("queue-age expiry", () => {
  it("posts the dropped events to the webhook", async () => {
    const r = await rig();
    const id = await sendOne(
      r.liveKey,
      mailBody(r.from, {
        personalizations: [{ to: [{ email: "a@example.net" }, { email: "b@example.net" }] }],
      }),
    );
    const loaded = loadConfig(env);
    if (!loaded.ok) throw new Error(loaded.problems.join("; "));
    await runInDurableObject(hub(), (_i, state) => {
      state.storage.sql.exec(
        "UPDATE outbox SET enqueued_at = enqueued_at - ? WHERE message_id = ?",
        loaded.config.MAX_QUEUE_AGE_MS + 1_000,
        id,
      );
    });
    // The alarm armed for the oldest message's expiry is run here; it may also have fired by itself
    // after the UPDATE and left none to run (as in hub-queue-age). The dropped posts prove the expiry.
    await runScheduledAlarm(hub(), 2_000);
    const posts = await eventually(
      async () => r.posts,
      (p) => ofType(p, "dropped").length >= 2,
      15_000,
    );
    const dropped = ofType(posts, "dropped");
    expect(dropped.map((p) => p["email"]).sort()).toEqual(["a@example.net", "b@example.net"]);
    for (const p of dropped)
      expect(p).toMatchObject({ sg_message_id: id, reason: expect.stringMatching(/expired/) });
    // The timeline names the same events.
    const timeline = (await getMessage(r.liveKey, id)).events.filter((e) => e.event_type === "dropped");
    expect(timeline.map((e) => e.event_id).sort()).toEqual(dropped.map((p) => p["sg_event_id"]).sort());
  });
});
