/**
 * What one message costs the hub in calls (edge/src/objects/origin-hub.ts, "Storage"): its SQLite
 * statements (every `sql.exec` of the object and the services it passes its storage to) and its D1
 * calls (each costs far more than a statement: docs/performance.md, 2026-12-03), counted while 40
 * personalizations are accepted and catalogued, then while an origin link takes them, acknowledges
 * them in one frame and answers them in `results` frames of 10 with a `credit` after each, as an
 * origin coalescing its results does. The bounds are what the batching keeps (frames and D1 batches
 * shared by many messages), with room for the timing of the flush timers and the alarm under load
 * (3.2–3.7 statements per accepted message, 1.3–2.0 per delivered one on the shared machine); one more
 * statement per message, or D1 calls per message instead of per batch, fails them.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { LinkResult } from "../../shared/link/protocol.ts";
import {
  mailBody,
  openLink,
  resetHub,
  sendMail,
  setupTenant,
  type LinkClient,
  type TenantFixture,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");
const N = 40;

const counts = { sql: 0, d1: 0 };
let counting = false;
const restore: (() => void)[] = [];

/** Wraps `names` of `proto` so each call counts once while `counting` (nested calls, e.g. first → all, once). */
function countCalls(proto: Record<string, unknown>, names: string[], key: keyof typeof counts): void {
  let depth = 0;
  for (const name of names) {
    const original = proto[name];
    if (typeof original !== "function") continue;
    proto[name] = function (this: unknown, ...args: unknown[]) {
      if (counting && depth === 0) counts[key]++;
      depth++;
      try {
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } finally {
        depth--;
      }
    };
    restore.push(() => (proto[name] = original));
  }
}

/** A read by the test itself, not counted. */
async function probe<T>(fn: () => Promise<T>): Promise<T> {
  const was = counting;
  counting = false;
  try {
    return await fn();
  } finally {
    counting = was;
  }
}

const inHub = (table: string) =>
  probe(() =>
    runInDurableObject(
      hub(),
      (_i, state) => state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM ${table}`).one().n,
    ),
  );

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

let t: TenantFixture;
const opened: LinkClient[] = [];
beforeEach(async () => {
  t = await setupTenant();
  await resetHub();
  await runInDurableObject(hub(), (_i, state) => {
    countCalls(Object.getPrototypeOf(state.storage.sql), ["exec"], "sql");
  });
  const stmt = env.DB.prepare("SELECT 1");
  countCalls(Object.getPrototypeOf(env.DB), ["batch", "exec"], "d1");
  countCalls(Object.getPrototypeOf(stmt), ["all", "first", "run", "raw"], "d1");
});
afterEach(() => {
  counting = false;
  for (const r of restore.splice(0).reverse()) r();
  for (const l of opened.splice(0)) l.close();
});

it("accepts, catalogues and delivers 40 messages in a few statements and D1 calls each", async () => {
  const origin = await openLink();
  opened.push(origin);
  const personalizations = Array.from({ length: N }, (_, i) => ({ to: [{ email: `r${i}@example.net` }] }));

  counts.sql = counts.d1 = 0;
  counting = true;
  const res = await sendMail(t.liveKey, mailBody(t.from, { personalizations }));
  expect(res.status).toBe(202);
  const { message_ids: ids } = (await res.json()) as { message_ids: string[] };
  expect(ids).toHaveLength(N);
  await until("the catalog flush", async () => (await inHub("catalog")) === 0);
  counting = false;
  const accept = { ...counts };

  counts.sql = counts.d1 = 0;
  counting = true;
  await origin.hello(N);
  const jobs = await origin.jobs(N);
  origin.send({ type: "ack", jobIds: jobs.map((j) => j.jobId) });
  for (let i = 0; i < N; i += 10) {
    const results: LinkResult[] = jobs.slice(i, i + 10).map((j) => ({
      jobId: j.jobId,
      messageId: j.messageId,
      attempt: j.attempt,
      recipients: j.recipients.map((recipient) => ({
        recipient,
        status: "delivered",
        smtpCode: 250,
        response: "250 2.0.0 Ok",
      })),
    }));
    origin.send({ type: "results", results });
    origin.send({ type: "credit", credits: results.length });
  }
  let acked = 0;
  while (acked < N) acked += (await origin.next("resultAck", 5000)).jobIds.length;
  await until("the outbox to empty", async () => (await inHub("outbox")) === 0);
  counting = false;
  const delivery = { ...counts };

  const per = (n: number) => Math.round((n / N) * 100) / 100;
  console.log(
    `hub per message: accept + catalog ${per(accept.sql)} statements, ${per(accept.d1)} D1 calls; ` +
      `delivery ${per(delivery.sql)} statements, ${per(delivery.d1)} D1 calls`,
  );
  // Accept: an outbox row, its payload and its catalog row per message, plus a few per request and
  // per flush; the catalog goes to D1 in one batch per flush (the Worker's own D1 reads count too).
  expect(accept.sql / N).toBeLessThanOrEqual(4.25);
  expect(accept.d1).toBeLessThanOrEqual(8);
  // Delivery: statements per frame and per D1 batch, not per message.
  expect(delivery.sql / N).toBeLessThanOrEqual(2.5);
  expect(delivery.d1).toBeLessThanOrEqual(8);
});
