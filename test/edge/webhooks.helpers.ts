/** Shared by the webhook edge tests: code run inside a tenant's WebhookQueue object. */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { WebhookQueue } from "../../edge/src/objects/webhook-queue.ts";
import { bearer, call } from "./helpers.ts";

export function inQueue<R>(
  tenantId: string,
  fn: (queue: WebhookQueue, state: DurableObjectState) => R | Promise<R>,
): Promise<R> {
  // runInDurableObject cannot infer the class from this namespace's stub type; the instance is one.
  return runInDurableObject(env.WEBHOOK_QUEUE.getByName(tenantId), (instance, state) =>
    fn(instance as unknown as WebhookQueue, state),
  );
}

/** The API as one key calls it: the answer's status and its JSON body (null when empty). */
export function keyApi(key: string) {
  return async (method: string, path: string, body?: unknown) => {
    const res = await call(path, {
      method,
      headers: bearer(key),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as any) : null };
  };
}

/**
 * Moves a queue's fake clock to its next alarm and runs it; returns the alarm's time, or null when
 * none is set. `clock.now` is what the queue's `clock` returns in these tests.
 */
export function alarmAdvancer(tenantId: string, clock: { now: number }) {
  const stub = env.WEBHOOK_QUEUE.getByName(tenantId);
  return async (): Promise<number | null> => {
    const at = await stub.alarmAt();
    if (at === null) return null;
    clock.now = Math.max(clock.now, at);
    await runDurableObjectAlarm(stub);
    return at;
  };
}
