/** Shared by the webhook edge tests: code run inside a tenant's WebhookQueue object. */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { WebhookQueue } from "../../edge/src/objects/webhook-queue.ts";

export function inQueue<R>(
  tenantId: string,
  fn: (queue: WebhookQueue, state: DurableObjectState) => R | Promise<R>,
): Promise<R> {
  // runInDurableObject cannot infer the class from this namespace's stub type; the instance is one.
  return runInDurableObject(env.WEBHOOK_QUEUE.getByName(tenantId), (instance, state) =>
    fn(instance as unknown as WebhookQueue, state),
  );
}
