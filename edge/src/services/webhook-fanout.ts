/**
 * Hands events written outside a hub to each tenant's WebhookQueue (edge/src/objects/webhook-queue.ts),
 * after D1 took them. Tracking hits normally go through their message's hub shard and its durable
 * hand-off (services/webhook-handoff.ts, docs/api/tracking.md); this path is their fallback when
 * that shard cannot be reached (services/tracking-events.ts) — best effort, as below.
 *
 * The hand-off is retried a few times with back-off while the isolate lives; the queue de-duplicates
 * by event. What this does not survive is the isolate going away between the D1 write and a
 * successful hand-off: those events are on the message timeline but are not posted
 * (docs/api/webhooks.md#guarantees).
 */
import type { Bindings } from "../env.ts";
import type { FlushedEvent } from "./webhook-events.ts";

const RETRY_DELAYS_MS = [200, 1000, 5000, 15000];

export function fanOutWebhookEvents(
  env: Pick<Bindings, "WEBHOOK_QUEUE">,
  events: FlushedEvent[],
): Promise<void> {
  const byTenant = new Map<string, FlushedEvent[]>();
  for (const e of events) {
    const list = byTenant.get(e.tenantId);
    if (list) list.push(e);
    else byTenant.set(e.tenantId, [e]);
  }
  return Promise.all(
    [...byTenant].map(async ([tenantId, list]) => {
      for (let attempt = 0; ; attempt++) {
        try {
          await env.WEBHOOK_QUEUE.getByName(tenantId).enqueue(tenantId, list);
          return;
        } catch (err) {
          const delay = RETRY_DELAYS_MS[attempt];
          if (delay === undefined) {
            console.error(
              JSON.stringify({
                level: "error",
                msg: "webhook events not handed to the queue",
                tenantId,
                events: list.length,
                error: err instanceof Error ? err.message : String(err),
              }),
            );
            return;
          }
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    }),
  ).then(() => undefined);
}
