/**
 * GET /v1/messages?tail=1 (docs/api/senderkit.md#live-tail): a Server-Sent Events stream.
 *  1. backfill: the newest BACKFILL messages matching the filters, one `message` event each, newest first;
 *  2. `ready`;
 *  3. live: this isolate polls the D1 catalog every POLL_MS for rows of the key's workspace and mode
 *     changed since the last poll (sk_messages.updated_at, or its messages row's updated_at for a live
 *     email), and sends each as a `message` event — new messages and status changes alike; a failed
 *     poll is an `error` event `{code:"poll_failed",message}` and the stream stays open;
 *  4. closed by the server after SENDERKIT_TAIL_MAX_SECONDS (default 30 minutes; EventSource clients
 *     reconnect and get a fresh backfill), so no stream holds a poll loop forever.
 * A comment line every HEARTBEAT_MS keeps proxies from closing an idle stream. The loop stops as soon
 * as the client goes away (a write fails). Each poll is one bounded query (POLL_LIMIT rows).
 * A message becomes visible here once its hub shard's catalog flush put it in D1 (milliseconds).
 */
import type { Context } from "hono";
import type { AppEnv } from "../../context.ts";
import {
  listChangedSkMessages,
  listSkMessages,
  messageJson,
  type ListFilters,
} from "../../services/senderkit/messages.ts";

export const BACKFILL = 50;
export const POLL_MS = 1_000;
export const POLL_LIMIT = 100;
export const HEARTBEAT_MS = 15_000;

export function tailStream(
  c: Context<AppEnv>,
  scope: { tenantId: string; livemode: boolean },
  filters: ListFilters,
  workspaceUuid: string,
): Response {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const enc = new TextEncoder();
  const db = c.get("db");
  const maxStreamMs = c.get("config").SENDERKIT_TAIL_MAX_SECONDS * 1000;
  const send = (event: string, data: unknown) =>
    writer.write(enc.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));

  const run = async () => {
    const started = Date.now();
    // Changes are looked for from just before the backfill was read, so none falls between the two.
    let since = started - 1;
    try {
      const backfill = await listSkMessages(db, scope, filters, { limit: BACKFILL }, started);
      for (const v of backfill) await send("message", messageJson(v, workspaceUuid));
      await send("ready", {});
      let lastBeat = Date.now();
      for (;;) {
        const left = started + maxStreamMs - Date.now();
        if (left <= 0) break;
        await new Promise((r) => setTimeout(r, Math.min(POLL_MS, left)));
        try {
          const now = Date.now();
          const changed = await listChangedSkMessages(db, scope, filters, since, POLL_LIMIT, now);
          for (const { view, changedAt } of changed) {
            await send("message", messageJson(view, workspaceUuid));
            since = Math.max(since, changedAt);
          }
        } catch (err) {
          await send("error", {
            code: "poll_failed",
            message: `Polling for new messages failed; the stream stays open: ${err instanceof Error ? err.message : String(err)}`,
          });
        }
        if (Date.now() - lastBeat >= HEARTBEAT_MS) {
          await writer.write(enc.encode(": keep-alive\n\n"));
          lastBeat = Date.now();
        }
      }
      await writer.close();
    } catch {
      // The client went away (a write failed): stop polling.
      await writer.abort().catch(() => undefined);
    }
  };
  c.executionCtx.waitUntil(run());
  return new Response(readable, {
    status: 200,
    headers: {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      "X-Request-Id": c.get("requestId"),
    },
  });
}
