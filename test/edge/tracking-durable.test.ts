/**
 * Tracking hits are durable before the answer (docs/api/webhooks.md#guarantees, "Tracking hits"):
 * the /t/* route hands the hit's event to the hub shard its message id names, which keeps it in its
 * SQLite, writes it to D1 and hands it to the tenant's WebhookQueue through its durable hand-off
 * (edge/src/services/tracking-events.ts, TrackingInbox). A replayed hit makes no second event, and a
 * hub stopped between keeping a hit and writing it loses nothing.
 *
 * The Worker, the hub, D1 and the queue are the real ones; the receiver is the queue's fetcher (its
 * resolver points the endpoint's name at a public address), as in webhooks.handoff.test.ts. The D1
 * outage is real too: the events table renamed away (helpers.ts, breakD1).
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { newMessageId } from "../../edge/src/lib/shards.ts";
import type { OriginHub } from "../../edge/src/objects/origin-hub.ts";
import type { WebhookQueue } from "../../edge/src/objects/webhook-queue.ts";
import { createTrackingSigner, deriveTrackingKey, type TrackingSigner } from "../../shared/tracking/token.ts";
import { bearer, breakD1, call, createApiKey, createTenant, eventually, restoreD1 } from "./helpers.ts";
import { inQueue } from "./webhooks.helpers.ts";

const HUB = { region: null, index: 0 } as const;
const hub = () => env.ORIGIN_HUB.getByName("hub-0");

let signer: TrackingSigner;
beforeAll(async () => {
  signer = createTrackingSigner(await deriveTrackingKey(env.TRACKING_SECRET));
});
afterEach(async () => {
  await restoreD1();
});

/** A tenant whose Event Webhook posts opens and clicks to a receiver the test reads. */
async function rig() {
  const tenantId = await createTenant();
  const posts: Record<string, unknown>[] = [];
  await inQueue(tenantId, (q: WebhookQueue) => {
    q.clock = () => Date.now();
    q.resolver = async (host) => (host === "hooks.example.com" ? ["93.184.216.34"] : []);
    q.fetcher = async (req) => {
      posts.push(...(JSON.parse(await req.text()) as Record<string, unknown>[]));
      return new Response("ok");
    };
  });
  const key = (await createApiKey(tenantId, { scopes: ["webhooks.read", "webhooks.write"] })).key;
  const res = await call("/v3/user/webhooks/event/settings", {
    method: "PATCH",
    headers: bearer(key),
    body: JSON.stringify({ enabled: true, url: "https://hooks.example.com/sg", open: true, click: true }),
  });
  expect(res.status, await res.text()).toBe(200);
  // A message id that names hub-0, as the accept path makes them.
  const messageId = newMessageId(HUB);
  const eventsOf = async () =>
    (
      await env.DB.prepare("SELECT id, event_type FROM events WHERE message_id = ?")
        .bind(messageId)
        .all<{ id: string; event_type: string }>()
    ).results;
  const handoffs = () => inQueue(tenantId, (q) => q.handoffs);
  return { tenantId, messageId, posts, eventsOf, handoffs };
}

const kept = () =>
  runInDurableObject(hub(), (_i, state) =>
    state.storage.sql.exec<{ event_id: string }>("SELECT event_id FROM tracking_hit").toArray(),
  );

/** Hits within one minute are one event: start a replay test well inside a minute. */
async function awayFromMinuteEdge(): Promise<void> {
  const into = Date.now() % 60_000;
  if (into > 55_000) await new Promise((r) => setTimeout(r, 60_000 - into + 50));
}

describe("tracking hits through the hub", () => {
  it("a click reaches D1 and the webhook queue through its hub shard's hand-off; a replayed click makes no second event", async () => {
    const r = await rig();
    await awayFromMinuteEdge();
    const url = "https://shop.example.com/p?id=7";
    const token = await signer.sign(
      "click",
      { tenantId: r.tenantId, messageId: r.messageId, recipient: "a@example.net" },
      url,
    );
    const click = () => call(`/t/c/${token}?u=${encodeURIComponent(url)}`, { redirect: "manual" });
    const res = await click();
    expect([res.status, res.headers.get("location")]).toEqual([302, url]);

    const rows = await eventually(r.eventsOf, (e) => e.length === 1);
    expect(rows.map((e) => e.event_type)).toEqual(["click"]);
    const posts = await eventually(
      async () => r.posts,
      (p) => p.length === 1,
    );
    expect(posts.map((p) => [p["sg_event_id"], p["event"], p["url"]])).toEqual([[rows[0]!.id, "click", url]]);
    // It came by the hub's durable hand-off (the fallback path calls the queue's enqueue instead).
    expect(await r.handoffs()).toBeGreaterThan(0);
    expect(await eventually(kept, (k) => k.length === 0)).toEqual([]);

    // The same click again within the minute: the same event id, kept once in D1, posted once.
    const again = await click();
    expect(again.status).toBe(302);
    await eventually(kept, (k) => k.length === 0);
    await new Promise((res) => setTimeout(res, 500));
    expect(await r.eventsOf()).toEqual(rows);
    expect(r.posts).toHaveLength(1);
  });

  it("a hub stopped after keeping a hit and before D1 took it writes and posts it after its restart", async () => {
    const r = await rig();
    const token = await signer.sign("open", {
      tenantId: r.tenantId,
      messageId: r.messageId,
      recipient: "b@example.net",
    });
    // D1 is down: the hub keeps the hit (the answer does not wait for D1) and its flush fails.
    await breakD1();
    const res = await call(`/t/o/${token}.gif`, { headers: { "user-agent": "Thunderbird/128" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/gif");
    const held = await kept();
    expect(held).toHaveLength(1);
    // The hub stops: its timers are gone, the kept hit is in its storage.
    await expect(
      runInDurableObject(hub(), (_i: OriginHub, state) => {
        state.abort("test: restart with a kept tracking hit");
      }),
    ).rejects.toThrow();
    await restoreD1();
    // Nothing but the restarted hub's own alarm writes it (armed when the hit was kept).
    const rows = await eventually(r.eventsOf, (e) => e.length === 1, 12_000);
    expect(rows).toEqual([{ id: held[0]!.event_id, event_type: "open" }]);
    const posts = await eventually(
      async () => r.posts,
      (p) => p.length === 1,
      12_000,
    );
    expect(posts.map((p) => [p["sg_event_id"], p["event"], p["email"]])).toEqual([
      [held[0]!.event_id, "open", "b@example.net"],
    ]);
    expect(await kept()).toEqual([]);
  }, 30_000);
});
