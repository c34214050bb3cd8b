/**
 * POST /v3/messages/{id}/retry (docs/api/sendgrid.md#retrying-a-message) through the real Worker, D1
 * and hub shard (hub-0), the origin's side played over a real /link WebSocket: a bounced or failed
 * message goes back to the queue under its own id with the recipients not delivered (its jobs carry
 * freshFrom), a message waiting for its next retry attempt is made due now, and every other status
 * is refused (400), or 409 while an origin holds it or once its payload is no longer kept. Also
 * SendGrid's own @sendgrid/client calling it.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import client from "@sendgrid/client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { LinkResult } from "../../shared/link/protocol.ts";
import type { Permission } from "../../shared/permissions.ts";
import {
  BASE,
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
  type TenantFixture,
} from "./helpers.ts";
import { useKey } from "./sendgrid-client.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");
const ALL: Permission[] = ["mail.send", "mail.schedule", "mail.cancel"];

async function keyWith(tenantId: string, scopes: Permission[]): Promise<string> {
  return (await createApiKey(tenantId, { environment: "live", scopes })).key;
}

async function retry(key: string, id: string): Promise<{ status: number; body: unknown }> {
  const res = await call(`/v3/messages/${id}/retry`, { method: "POST", headers: bearer(key) });
  const text = await res.text();
  return { status: res.status, body: text === "" ? null : JSON.parse(text) };
}

type Outcome = LinkResult["recipients"][number];
const bounced = (recipient: string): Outcome => ({
  recipient,
  status: "bounced",
  smtpCode: 550,
  enhancedCode: "5.1.1",
  response: "550 5.1.1 no such user",
  bounceType: "hard",
});
const delivered = (recipient: string): Outcome => ({
  recipient,
  status: "delivered",
  smtpCode: 250,
  response: "250 OK",
});
const failed = (recipient: string): Outcome => ({
  recipient,
  status: "failed",
  response: "no MX for the recipient's domain",
});
const deferred = (recipient: string): Outcome => ({
  recipient,
  status: "deferred",
  smtpCode: 451,
  response: "451 try later",
});

function report(
  l: LinkClient,
  job: { jobId: string; messageId: string; attempt: number },
  recipients: Outcome[],
) {
  l.send({ type: "result", jobId: job.jobId, messageId: job.messageId, attempt: job.attempt, recipients });
}

const kept = (id: string) =>
  runInDurableObject(
    hub(),
    (_i, s) =>
      s.storage.sql
        .exec<{ status: string; keep_until: number }>(
          "SELECT status, keep_until FROM outbox_retry WHERE message_id = ?",
          id,
        )
        .toArray()[0],
  );

let t: TenantFixture;
let key: string;
const opened: LinkClient[] = [];

beforeEach(async () => {
  await resetHub();
  await runInDurableObject(hub(), (_i, s) => {
    s.storage.sql.exec("DELETE FROM outbox_retry");
  });
  t = await setupTenant();
  key = await keyWith(t.tenantId, ALL);
});

afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

async function link(capacity: number): Promise<LinkClient> {
  const l = await openLink();
  opened.push(l);
  await l.hello(capacity);
  return l;
}

describe("POST /v3/messages/{id}/retry", () => {
  // Failed rather than bounced here: a hard bounce puts the address on the bounce list, and the
  // retried message is then dropped at dispatch like any send to it (docs/api/sendgrid.md#retrying-a-message).
  it("re-queues a failed message under its own id; its next job carries freshFrom and delivers it", async () => {
    const l = await link(10);
    const m = await sendOne(key, mailBody(t.from));
    const [first] = await l.jobs(1);
    expect(first!.freshFrom).toBeUndefined();
    report(l, first!, [failed("rcpt@example.net")]);
    await eventually(
      () => getMessage(key, m),
      (d) => d.status === "failed",
      5000,
    );
    // Kept for the retry, for at most 72 h.
    const k = await eventually(
      () => kept(m),
      (r) => r !== undefined,
      5000,
    );
    expect(k!.status).toBe("failed");
    expect(k!.keep_until).toBeGreaterThan(Date.now() + 71 * 3600_000);
    expect(k!.keep_until).toBeLessThanOrEqual(Date.now() + 72 * 3600_000);

    expect(await retry(key, m)).toEqual({ status: 200, body: { message_id: m, status: "queued" } });
    const queued = await getMessage(key, m);
    // Queued again (or handed to the open link already).
    expect(queued.status).toMatch(/^(queued|processing)$/);
    expect(queued.error_message).toBeNull();
    const [again] = await l.jobs(1);
    expect(again).toMatchObject({ messageId: m, attempt: 2, jobId: `${m}.2`, freshFrom: 2 });
    expect(again!.recipients).toEqual(["rcpt@example.net"]);
    expect(again!.message.messageIdHeader).toBe(first!.message.messageIdHeader);
    expect(await kept(m)).toBeUndefined();
    report(l, again!, [delivered("rcpt@example.net")]);
    const d = await eventually(
      () => getMessage(key, m),
      (x) => x.status === "delivered",
      5000,
    );
    expect(d.status).toBe("delivered");
    expect(d.events.map((e) => e.event_type)).toEqual(["processed", "dropped", "delivered"]);
    // Delivered now: nothing to retry.
    expect(await retry(key, m)).toEqual({
      status: 400,
      body: {
        detail: `Message ${m} cannot be retried: its status is delivered. Only a message that failed or bounced, or one waiting for its next delivery attempt, can be retried.`,
      },
    });
    await linkSettled(l);
  });

  it("a message waiting for its next attempt is made due now, with only the deferred recipient", async () => {
    const l = await link(10);
    const m = await sendOne(
      key,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "a@example.net" }, { email: "b@example.net" }] }],
      }),
    );
    const [first] = await l.jobs(1);
    report(l, first!, [delivered("a@example.net"), deferred("b@example.net")]);
    // Deferred: back in the outbox, due a minute later (RETRY_SCHEDULE starts at 1m).
    await eventually(
      () =>
        runInDurableObject(
          hub(),
          (_i, s) =>
            s.storage.sql
              .exec<{ due_at: number; state: string }>(
                "SELECT due_at, state FROM outbox WHERE message_id = ?",
                m,
              )
              .toArray()[0],
        ),
      (r) => r?.state === "ready" && r.due_at > Date.now() + 30_000,
      5000,
    );
    expect(await l.nothing("jobs", 0)).toBe(true);
    expect(await retry(key, m)).toEqual({ status: 200, body: { message_id: m, status: "queued" } });
    const [again] = await l.jobs(1);
    expect(again).toMatchObject({ messageId: m, attempt: 2, recipients: ["b@example.net"] });
    // Not a retry of a finished message: the stored outcomes of the message still count.
    expect(again!.freshFrom).toBeUndefined();
  });

  it("a message whose recipients all failed is retried with all of them", async () => {
    const l = await link(10);
    const m = await sendOne(
      key,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "a@example.net" }, { email: "b@example.net" }] }],
      }),
    );
    const [first] = await l.jobs(1);
    report(l, first!, [failed("a@example.net"), failed("b@example.net")]);
    await eventually(
      () => kept(m),
      (r) => r !== undefined,
      5000,
    );
    expect((await retry(key, m)).status).toBe(200);
    const [again] = await l.jobs(1);
    expect(again!.recipients).toEqual(["a@example.net", "b@example.net"]);
    expect(again!.freshFrom).toBe(2);
  });

  it("refuses what cannot be retried: queued, cancelled, sandbox (400); held by an origin (409)", async () => {
    const later = Math.floor(Date.now() / 1000) + 600;
    const q = await sendOne(key, mailBody(t.from, { send_at: later }));
    expect(await retry(key, q)).toEqual({
      status: 400,
      body: {
        detail: `Message ${q} cannot be retried: its status is queued. Only a message that failed or bounced, or one waiting for its next delivery attempt, can be retried.`,
      },
    });
    const c = await sendOne(key, mailBody(t.from, { send_at: later }));
    expect((await call(`/v3/messages/${c}/cancel`, { method: "POST", headers: bearer(key) })).status).toBe(
      200,
    );
    expect(await retry(key, c)).toMatchObject({
      status: 400,
      body: { detail: expect.stringContaining("its status is cancelled.") },
    });
    const sandbox = await keyWith(t.tenantId, ALL);
    const s = await sendOne(sandbox, mailBody(t.from, { mail_settings: { sandbox_mode: { enable: true } } }));
    expect(await retry(key, s)).toMatchObject({
      status: 400,
      body: { detail: expect.stringContaining("its status is sandbox.") },
    });

    const l = await link(10);
    const m = await sendOne(key, mailBody(t.from));
    expect((await l.jobs(1))[0]!.messageId).toBe(m);
    expect(await retry(key, m)).toEqual({
      status: 409,
      body: {
        detail: `Message ${m} cannot be retried now: a delivery node holds it (status processing). Its outcome comes from that node, or it returns to the queue when its lease ends.`,
      },
    });
  });

  it("409 once the payload is no longer kept; 404 for another tenant; needs mail.send", async () => {
    const l = await link(10);
    const m = await sendOne(key, mailBody(t.from));
    const [job] = await l.jobs(1);
    report(l, job!, [bounced("rcpt@example.net")]);
    await eventually(
      () => kept(m),
      (r) => r !== undefined,
      5000,
    );
    const other = await setupTenant();
    expect(await retry(await keyWith(other.tenantId, ALL), m)).toEqual({
      status: 404,
      body: { detail: `Message not found: ${m}` },
    });
    expect(await retry(await keyWith(t.tenantId, ["mail.cancel"]), m)).toEqual({
      status: 403,
      body: { detail: "Missing required scope: mail.send" },
    });
    // Still kept: the refusals above changed nothing.
    expect(await kept(m)).toBeDefined();
    await runInDurableObject(hub(), (_i, s) => {
      s.storage.sql.exec("UPDATE outbox_retry SET keep_until = ? WHERE message_id = ?", Date.now() - 1, m);
    });
    expect(await retry(key, m)).toEqual({
      status: 409,
      body: {
        detail: `Message ${m} cannot be retried: its status is bounced and its content is no longer kept (a failed or bounced message can be retried for up to 72 hours after it ended).`,
      },
    });
    expect(await l.nothing("jobs", 50)).toBe(true);
  });

  it("a message ended by /fail can be retried; two retries at once re-queue it once", async () => {
    const m = await sendOne(key, mailBody(t.from, { send_at: Math.floor(Date.now() / 1000) + 600 }));
    expect((await call(`/v3/messages/${m}/fail`, { method: "POST", headers: bearer(key) })).status).toBe(200);
    await eventually(
      () => kept(m),
      (r) => r !== undefined,
      5000,
    );
    const [a, b] = await Promise.all([retry(key, m), retry(key, m)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const l = await link(10);
    const [job] = await l.jobs(1);
    // Never dispatched before the /fail, so the retry's first dispatch is the first.
    expect(job).toMatchObject({ messageId: m, attempt: 1, freshFrom: 1 });
    expect(await l.nothing("jobs", 100)).toBe(true);
    expect((await getMessage(key, m)).status).toMatch(/^(queued|processing)$/);
  });
});

describe("a message that expired in the queue", () => {
  it("is kept like any failure and can be retried", async () => {
    const m = await sendOne(key, mailBody(t.from));
    // Catalogued first (the expiry updates the catalog's row), then older than MAX_QUEUE_AGE_MS.
    await eventually(
      () => getMessage(key, m).then((d) => d.status),
      (s) => s === "queued",
    );
    await runInDurableObject(hub(), async (instance, s) => {
      await (instance as unknown as { flush(): Promise<unknown> }).flush();
      s.storage.sql.exec("UPDATE outbox SET enqueued_at = 0 WHERE message_id = ?", m);
    });
    // Run the alarm now. The hub's own alarm (a flush retry, a hand-off) may already be running, or
    // run the expiry first and leave nothing scheduled (seen on a loaded machine): either way the
    // message must end failed, which is what is checked.
    await runDurableObjectAlarm(hub());
    const d = await eventually(
      () => getMessage(key, m),
      (x) => x.status === "failed",
      15_000,
    );
    expect(d.error_message).toMatch(/maximum queue age/);
    expect((await kept(m))?.status).toBe("failed");
    expect(await retry(key, m)).toEqual({ status: 200, body: { message_id: m, status: "queued" } });
    const l = await link(10);
    const [job] = await l.jobs(1);
    expect(job).toMatchObject({ messageId: m, attempt: 1, freshFrom: 1, recipients: ["rcpt@example.net"] });
  });
});

describe("@sendgrid/client calling /v3/messages/{id}/retry", () => {
  it("gets 200 with the body, and a ResponseError with code 409 while an origin holds the message", async () => {
    const l = await link(10);
    const m = await sendOne(key, mailBody(t.from));
    const [job] = await l.jobs(1);
    report(l, job!, [failed("rcpt@example.net")]);
    await eventually(
      () => kept(m),
      (r) => r !== undefined,
      5000,
    );
    useKey(key);
    const [res, body] = await client.request({ method: "POST", url: `/v3/messages/${m}/retry` });
    expect([res.statusCode, body]).toEqual([200, { message_id: m, status: "queued" }]);
    await l.jobs(1);
    let err: { code: number; response: { body: unknown } } | undefined;
    try {
      await client.request({ method: "POST", url: `/v3/messages/${m}/retry` });
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).toBe(409);
    expect(err?.response.body).toEqual({
      detail: `Message ${m} cannot be retried now: a delivery node holds it (status processing). Its outcome comes from that node, or it returns to the queue when its lease ends.`,
    });
  });
});
