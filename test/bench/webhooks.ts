/**
 * Issue 10's bench row: do webhook events keep up with delivery? Through the whole local stack (the
 * Worker bundle on Miniflare, as the other through-the-edge runs; the real origin; a Node SMTP sink
 * that times each message by its Message-ID) with one ScaiSend webhook endpoint subscribed to
 * `delivered`, posting to a Node HTTP receiver on 127.0.0.1 (allowed by WEBHOOK_ALLOW_PRIVATE, as in
 * the e2e tests). For each message: the moment its DATA ended at the sink, and the moment its
 * `delivered` event's POST body had arrived at the receiver.
 *
 * Reported: the delivery rate (messages over the sink's first-to-last window) beside the event rate
 * (delivered events over the receiver's first-to-last window) of the same run, the delay from a
 * message's delivery to its event's POST (p50/p95/p99/max), and duplicates (an event id posted twice).
 * A warm-up of 10 messages goes first and is not reported.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { postMail, type BenchEdge } from "./lib/edge.ts";
import { mailSendBody, messageIdHeaderFor, recipient } from "./lib/mail.ts";
import { startOrigin } from "./lib/origin.ts";
import { onCleanup, say } from "./lib/procs.ts";
import { startTimingSink } from "./lib/sink.ts";
import { round, summarize, type Summary } from "./lib/stats.ts";

export interface WebhooksBenchResult {
  messages: number;
  requests: number;
  /** Messages per second between the first and the last arrival at the sink. */
  deliveryPerSec: number;
  /** Delivered events per second between the first and the last arrival at the receiver. */
  eventsPerSec: number;
  keepsUp: boolean;
  /** From the first POST /v3/mail/send to the last message at the sink / the last event at the receiver. */
  msToLastDelivered: number;
  msToLastPosted: number;
  deliveryToPostMs: Summary;
  webhookPosts: number;
  duplicates: number;
  notes: string;
}

export async function benchWebhooks(
  edge: BenchEdge,
  opts: { quick: boolean; html: string; dnsServer: string; workDir: string },
): Promise<WebhooksBenchResult> {
  // The receiver: arrival time of each message's delivered event, by message id.
  const posted = new Map<string, number>();
  const seenIds = new Set<string>();
  let duplicates = 0;
  let posts = 0;
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const at = Date.now();
      posts++;
      try {
        for (const e of JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
          event_id: string;
          event_type: string;
          message_id: string;
        }[]) {
          if (seenIds.has(e.event_id)) duplicates++;
          seenIds.add(e.event_id);
          if (e.event_type === "delivered" && !posted.has(e.message_id)) posted.set(e.message_id, at);
        }
      } catch {
        // not an event array: counted as a post, nothing else
      }
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const stopReceiver = onCleanup(
    "webhook receiver",
    () => new Promise<void>((resolve) => receiver.close(() => resolve())),
  );
  const port = (receiver.address() as AddressInfo).port;

  const key = await edge.admin.createApiKey(edge.tenantId, {
    name: "bench-webhooks",
    environment: "live",
    scopes: ["webhooks.read", "webhooks.write"],
  });
  const created = await fetch(`${edge.url}/v3/user/webhooks`, {
    method: "POST",
    headers: { authorization: `Bearer ${key.api_key}`, "content-type": "application/json" },
    body: JSON.stringify({ url: `http://127.0.0.1:${port}/hook`, enabled_events: ["delivered"] }),
  });
  if (created.status !== 201)
    throw new Error(
      `POST /v3/user/webhooks answered ${created.status}: ${(await created.text()).slice(0, 300)}`,
    );

  const sink = await startTimingSink();
  const stopSink = onCleanup("timing sink (webhooks)", () => sink.close());
  try {
    const origin = await startOrigin({
      edgeUrl: edge.workerUrl,
      originToken: edge.originToken,
      dnsServer: opts.dnsServer,
      smtpPort: sink.port,
      workDir: opts.workDir,
      name: "origin-webhooks",
    });
    try {
      let next = 7_000_000;
      const send = async (n: number): Promise<string[]> => {
        const rcpts = Array.from({ length: n }, () => recipient(next++));
        const res = await postMail(edge, JSON.stringify(mailSendBody(opts.html, rcpts)));
        if (res.status !== 202 || res.messageIds.length !== n)
          throw new Error(`send answered ${res.status}: ${res.text.slice(0, 300)}`);
        return res.messageIds;
      };
      const waitAll = async (ids: string[], timeoutMs: number) => {
        const until = Date.now() + timeoutMs;
        while (Date.now() < until) {
          if (ids.every((id) => posted.has(id) && sink.arrivals.has(messageIdHeaderFor(id)))) return;
          await new Promise((r) => setTimeout(r, 50));
        }
        const atSink = ids.filter((id) => sink.arrivals.has(messageIdHeaderFor(id))).length;
        const atReceiver = ids.filter((id) => posted.has(id)).length;
        throw new Error(
          `within ${timeoutMs} ms: ${atSink} of ${ids.length} at the sink, ${atReceiver} delivered events at the receiver`,
        );
      };

      await waitAll(await send(10), 60_000); // warm-up, not reported
      duplicates = 0;
      const requests = opts.quick ? 1 : 2;
      const per = opts.quick ? 200 : 500;
      const t0 = Date.now();
      const ids: string[] = [];
      for (let r = 0; r < requests; r++) ids.push(...(await send(per)));
      await waitAll(ids, opts.quick ? 90_000 : 180_000);

      const delivered = ids.map((id) => sink.arrivals.get(messageIdHeaderFor(id))!);
      const postedAt = ids.map((id) => posted.get(id)!);
      const span = (xs: number[]) => Math.max(1, Math.max(...xs) - Math.min(...xs));
      const deliveryPerSec = round(ids.length / (span(delivered) / 1000), 0);
      const eventsPerSec = round(ids.length / (span(postedAt) / 1000), 0);
      const delays = ids.map((_id, i) => postedAt[i]! - delivered[i]!);
      const s = summarize(delays);
      const result: WebhooksBenchResult = {
        messages: ids.length,
        requests,
        deliveryPerSec,
        eventsPerSec,
        keepsUp: eventsPerSec >= deliveryPerSec,
        msToLastDelivered: Math.max(...delivered) - t0,
        msToLastPosted: Math.max(...postedAt) - t0,
        deliveryToPostMs: {
          count: s.count,
          p50: round(s.p50, 0),
          p95: round(s.p95, 0),
          p99: round(s.p99, 0),
          max: round(s.max, 0),
          mean: round(s.mean, 0),
        },
        webhookPosts: posts,
        duplicates,
        notes:
          "delivery = DATA ended at the Node timing sink; POST = the receiver had the whole body; one ScaiSend endpoint subscribed to delivered; rates over each side's own first-to-last window",
      };
      say(
        `   webhooks: ${ids.length} delivered at ${deliveryPerSec} msg/s, events posted at ${eventsPerSec}/s; delivery → POST p50 ${result.deliveryToPostMs.p50} ms, p99 ${result.deliveryToPostMs.p99} ms`,
      );
      return result;
    } finally {
      await origin.stop();
    }
  } finally {
    await stopSink();
    await stopReceiver();
  }
}
