/**
 * Queue-age expiry (README "Configuration": MAX_QUEUE_AGE_MS, "a message no origin delivered by then
 * fails, never silently"). A message is aged by moving its outbox row's `enqueued_at` back past the
 * configured maximum, then the hub's alarm is run: the outcome is read back through the messages API.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RecipientOutcome } from "../../shared/link/protocol.ts";
import { loadConfig } from "../../edge/src/env.ts";
import {
  getMessage,
  LinkClient,
  mailBody,
  openLink,
  sendOne,
  setupTenant,
  type TenantFixture,
  resetHub,
  runScheduledAlarm,
  eventually,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

/**
 * The hub keeps an alarm armed for the oldest message's expiry: it is run here, and the message read
 * until it has its end. The alarm may also fire by itself after age() (it is set in real time), and
 * then there is none left to run (runScheduledAlarm's false, which failed CI twice): the message's
 * status, checked by the caller, is what proves the expiry happened either way.
 */
async function expiredByAlarm(key: string, id: string, status: string) {
  await runScheduledAlarm(hub(), 2_000);
  return eventually(
    () => getMessage(key, id),
    (m) => m.status === status,
    15_000,
  );
}

function maxQueueAgeMs(): number {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new Error(loaded.problems.join("; "));
  return loaded.config.MAX_QUEUE_AGE_MS;
}

/** Moves the message's enqueue time back so that it is older than the maximum queue age. */
function age(messageId: string): Promise<void> {
  return runInDurableObject(hub(), (_instance, state) => {
    const cursor = state.storage.sql.exec(
      "UPDATE outbox SET enqueued_at = enqueued_at - ? WHERE message_id = ?",
      maxQueueAgeMs() + 1_000,
      messageId,
    );
    // rowsWritten also counts the index entries the update rewrote.
    expect(cursor.rowsWritten).toBeGreaterThan(0);
  });
}

function outboxState(messageId: string): Promise<string | null> {
  return runInDurableObject(hub(), (_instance, state) => {
    const row = state.storage.sql
      .exec<{ state: string }>("SELECT state FROM outbox WHERE message_id = ?", messageId)
      .toArray()[0];
    return row?.state ?? null;
  });
}

const opened: LinkClient[] = [];
async function link(capacity: number): Promise<LinkClient> {
  const l = await openLink();
  opened.push(l);
  await l.hello(capacity);
  return l;
}

beforeEach(async () => {
  await resetHub();
});

afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

const delivered = (recipient: string): RecipientOutcome => ({
  recipient,
  status: "delivered",
  smtpCode: 250,
  enhancedCode: "2.0.0",
  response: "250 2.0.0 OK",
  mxHost: "mx.example.net",
  tls: true,
});

const deferred = (recipient: string): RecipientOutcome => ({
  recipient,
  status: "deferred",
  smtpCode: 451,
  enhancedCode: "4.7.1",
  response: "451 4.7.1 Greylisted, try again later",
  mxHost: "mx.example.net",
  tls: true,
});

describe("queue-age expiry", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  it("fails a live message no origin took once it is older than MAX_QUEUE_AGE_MS, with a dropped event, and removes it from the outbox", async () => {
    const id = await sendOne(t.liveKey, mailBody(t.from));
    expect(await hub().stats()).toMatchObject({ ready: 1, leased: 0, links: [] });
    expect(await outboxState(id)).toBe("ready");

    // Not yet too old: the alarm leaves it queued.
    await runDurableObjectAlarm(hub());
    expect((await getMessage(t.liveKey, id)).status).toBe("queued");
    expect(await outboxState(id)).toBe("ready");

    await age(id);
    const m = await expiredByAlarm(t.liveKey, id, "failed");
    expect(m.status).toBe("failed");
    expect(m.error_message).toMatch(/maximum queue age/);
    expect(m.events.map((e) => `${e.event_type}:${e.recipient_email}`)).toEqual([
      "processed:rcpt@example.net",
      "dropped:rcpt@example.net",
    ]);
    expect(m.events[1]!.metadata.reason).toMatch(/^expired: .*maximum queue age/);
    expect(await outboxState(id)).toBeNull();
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 0 });
  });

  it("ends a message whose other recipient was delivered as delivered, dropping only the recipient still waiting", async () => {
    const origin = await link(1);
    const id = await sendOne(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "ok@example.net" }, { email: "later@example.org" }] }],
      }),
    );
    const [job] = await origin.jobs(1);
    origin.send({ type: "ack", jobIds: [job!.jobId] });
    origin.send({
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: job!.attempt,
      recipients: [delivered("ok@example.net"), deferred("later@example.org")],
    });
    await origin.next("resultAck");
    expect((await getMessage(t.liveKey, id)).status).toBe("queued");
    expect(await outboxState(id)).toBe("ready");

    // The link has spent its only credit, so nothing takes the retry: it ages out.
    await age(id);
    const m = await expiredByAlarm(t.liveKey, id, "delivered");
    expect(m.status).toBe("delivered");
    // A delivered message says when (as on the normal path, result handling sets it).
    expect(m.delivered_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(m.events.map((e) => `${e.event_type}:${e.recipient_email}`)).toEqual([
      "processed:ok@example.net",
      "processed:later@example.org",
      "delivered:ok@example.net",
      "deferred:later@example.org",
      "dropped:later@example.org",
    ]);
    expect(await outboxState(id)).toBeNull();
  });

  it("does not expire a message an origin holds right now; its result is recorded when it comes", async () => {
    const origin = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await origin.jobs(1);
    origin.send({ type: "ack", jobIds: [job!.jobId] });
    // The ack arms the alarm for the lease's end; wait until the hub has taken the ack.
    await runInDurableObject(hub(), () => undefined);

    await age(id);
    expect(await runScheduledAlarm(hub())).toBe(true);
    expect(await outboxState(id)).toBe("leased");
    expect((await getMessage(t.liveKey, id)).status).toBe("processing");

    origin.send({
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: job!.attempt,
      recipients: [delivered("rcpt@example.net")],
    });
    expect(await origin.next("resultAck")).toEqual({ type: "resultAck", jobIds: [job!.jobId] });
    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("delivered");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
  });
});
