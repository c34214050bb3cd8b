/**
 * Deferrals the origin timed (`retryAfterMs` on a deferred outcome: its own rate limit, back-off
 * pause or warm-up allowance; docs/link-protocol.md) are retried no sooner than that, through the
 * real hub in workerd: a result that only paces uses no retry step, a mixed one takes the later of the
 * schedule and retryAfterMs, and nothing is scheduled past the maximum queue age. Plus planResult's
 * arithmetic on its own (services/result-plan.ts).
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createRetrySchedule } from "../../shared/delivery/retry-schedule.ts";
import type { RecipientOutcome } from "../../shared/link/protocol.ts";
import { loadConfig } from "../../edge/src/env.ts";
import { planResult } from "../../edge/src/services/result-plan.ts";
import {
  getMessage,
  LinkClient,
  mailBody,
  openLink,
  resetHub,
  sendOne,
  setupTenant,
  type TenantFixture,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");
const HOUR = 3_600_000;

function maxQueueAgeMs(): number {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new Error(loaded.problems.join("; "));
  return loaded.config.MAX_QUEUE_AGE_MS;
}

type Row = {
  state: string;
  due_at: number;
  deferrals: number;
  enqueued_at: number;
  recipients: string;
};
function outboxRow(messageId: string): Promise<Row | undefined> {
  return runInDurableObject(
    hub(),
    (_instance, state) =>
      state.storage.sql
        .exec<Row>(
          "SELECT state, due_at, deferrals, enqueued_at, recipients FROM outbox WHERE message_id = ?",
          messageId,
        )
        .toArray()[0],
  );
}

const paced = (recipient: string, retryAfterMs: number): RecipientOutcome => ({
  recipient,
  status: "deferred",
  response: "rate limit for example.net (20 per 1s): no token within 30 s; retry after 7200 s",
  retryAfterMs,
});
const greylisted = (recipient: string): RecipientOutcome => ({
  recipient,
  status: "deferred",
  smtpCode: 451,
  enhancedCode: "4.7.1",
  response: "451 4.7.1 Greylisted, try again later",
  mxHost: "mx.example.net",
});

const opened: LinkClient[] = [];
beforeEach(async () => {
  await resetHub();
});
afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

describe("retryAfterMs through the hub", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  /** One message with `to`, handed to a link, answered with `outcomes`; the times around the result. */
  async function deliverWith(to: string[], outcomes: (to: string[]) => RecipientOutcome[]) {
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(1);
    const id = await sendOne(
      t.liveKey,
      mailBody(t.from, { personalizations: [{ to: to.map((email) => ({ email })) }] }),
    );
    const [job] = await origin.jobs(1);
    origin.send({ type: "ack", jobIds: [job!.jobId] });
    const before = Date.now();
    origin.send({
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: job!.attempt,
      recipients: outcomes(to),
    });
    await origin.next("resultAck");
    return { id, before, after: Date.now() };
  }

  it("a result that only paces is retried at its retryAfterMs, not the schedule's 1 min, and uses no retry step", async () => {
    const { id, before, after } = await deliverWith(["a@example.net"], ([a]) => [paced(a!, 2 * HOUR)]);
    const row = await outboxRow(id);
    expect(row).toMatchObject({ state: "ready", deferrals: 0 });
    expect(row!.due_at).toBeGreaterThanOrEqual(before + 2 * HOUR);
    expect(row!.due_at).toBeLessThanOrEqual(after + 2 * HOUR);
    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("queued");
    expect(m.events.at(-1)).toMatchObject({ event_type: "deferred" });
    expect(m.events.at(-1)!.metadata.next_retry_at).toBe(Math.floor(row!.due_at / 1000));
  });

  it("a result with a destination's own deferral too takes a retry step and the later of the two times", async () => {
    const { id, before } = await deliverWith(["a@example.net", "b@example.org"], ([a, b]) => [
      greylisted(a!),
      paced(b!, 10 * 60_000),
    ]);
    const row = await outboxRow(id);
    expect(row).toMatchObject({ state: "ready", deferrals: 1 });
    // The schedule's first step is 1 min; the pacing says 10 min.
    expect(row!.due_at).toBeGreaterThanOrEqual(before + 10 * 60_000);
    expect(JSON.parse(row!.recipients)).toEqual(["a@example.net", "b@example.org"]);
  });

  it("a result without retryAfterMs (an older origin) keeps the schedule", async () => {
    const { id, before, after } = await deliverWith(["a@example.net"], ([a]) => [greylisted(a!)]);
    const row = await outboxRow(id);
    expect(row).toMatchObject({ deferrals: 1 });
    expect(row!.due_at).toBeGreaterThanOrEqual(before + 60_000);
    expect(row!.due_at).toBeLessThanOrEqual(after + 60_000);
  });

  it("a retryAfterMs past the maximum queue age is capped at it, where the expiry ends the message", async () => {
    const { id } = await deliverWith(["a@example.net"], ([a]) => [paced(a!, maxQueueAgeMs() + 24 * HOUR)]);
    const row = await outboxRow(id);
    expect(row!.due_at).toBe(row!.enqueued_at + maxQueueAgeMs());
  });
});

describe("planResult and retryAfterMs", () => {
  const schedule = createRetrySchedule("1m,5m");
  const NOW = 1_800_000_000_000;
  const row = {
    message_id: "m",
    tenant_id: "t",
    dispatches: 3,
    deferrals: 2,
    delivered: 0,
    bounced: 0,
    failed: 0,
  };

  it("a paced deferral is retried even when the schedule is used up (no step taken); the queue age still bounds it", () => {
    const plan = planResult(row, [paced("a@x.test", 30_000)], schedule, NOW, { notAfter: NOW + HOUR });
    expect(plan).toMatchObject({ status: "queued", deferrals: 2, retryAt: NOW + 30_000 });
    expect(plan.retryRecipients).toEqual(["a@x.test"]);
    // The same without retryAfterMs: the schedule is exhausted, the recipient bounces (soft).
    expect(planResult(row, [greylisted("a@x.test")], schedule, NOW).status).toBe("bounced");
  });

  it("the latest retryAfterMs of a result wins; delivered recipients do not count", () => {
    const plan = planResult(
      { ...row, deferrals: 0 },
      [
        paced("a@x.test", 5_000),
        paced("b@x.test", 90_000),
        { recipient: "c@x.test", status: "delivered", response: "250 ok" },
      ],
      schedule,
      NOW,
    );
    expect(plan.retryAt).toBe(NOW + 90_000);
    expect(plan.deferrals).toBe(0);
    expect(plan.retryRecipients).toEqual(["a@x.test", "b@x.test"]);
  });
});
