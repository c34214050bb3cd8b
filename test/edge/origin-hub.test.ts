/**
 * OriginHub outbox over a real /link WebSocket (shared/link/protocol.ts), driven the way an origin
 * drives it: hello → jobs → ack → result → resultAck, credits, reconnects, retries.
 * Storage is isolated per test file, but every test in this file shares the one hub ("hub-0",
 * HUB_SHARDS = 1), so each test starts from an empty outbox with no links.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseRetrySchedule } from "../../shared/delivery/retry-schedule.ts";
import type { RecipientOutcome } from "../../shared/link/protocol.ts";
import { base64ToBytes } from "../../edge/src/lib/base64.ts";
import {
  call,
  eventually,
  getMessage,
  LinkClient,
  mailBody,
  openLink,
  operatorHeaders,
  sendOne,
  setupTenant,
  type DomainView,
  type TenantFixture,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

interface OutboxRowView {
  message_id: string;
  state: string;
  attempt: number;
  due_at: number;
  lease_until: number | null;
  recipients: string;
  acked: number;
}

function outboxRow(messageId: string): Promise<OutboxRowView | undefined> {
  return runInDurableObject(
    hub(),
    (_instance, state) =>
      state.storage.sql
        .exec(
          "SELECT message_id, state, attempt, due_at, lease_until, recipients, acked FROM outbox WHERE message_id = ?",
          messageId,
        )
        .toArray()[0] as OutboxRowView | undefined,
  );
}

function hubSql(query: string, ...bindings: (string | number)[]): Promise<void> {
  return runInDurableObject(hub(), (_instance, state) => {
    state.storage.sql.exec(query, ...bindings);
  });
}

/** Waits until the hub counts `n` hello'd links (a closed link is released asynchronously). */
async function waitForLinks(n: number): Promise<void> {
  const deadline = Date.now() + 2000;
  while ((await hub().stats()).links.length !== n) {
    if (Date.now() > deadline) throw new Error(`hub never reached ${n} links`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const opened: LinkClient[] = [];
async function link(capacity: number): Promise<LinkClient> {
  const l = await openLink();
  opened.push(l);
  const welcome = await l.hello(capacity);
  expect(welcome).toEqual({ type: "welcome", protocol: 1, shard: 0, shards: 1, leaseMs: 300_000 });
  return l;
}

beforeEach(async () => {
  // Forget links and rows left by the previous test; the attachment is cleared first so the hub
  // never counts a socket it is closing as a link that could take jobs.
  await runInDurableObject(hub(), async (_instance, state) => {
    for (const ws of state.getWebSockets()) {
      ws.serializeAttachment(null);
      try {
        ws.close(1000, "test reset");
      } catch {
        // already closed
      }
    }
    state.storage.sql.exec("DELETE FROM outbox");
    await state.storage.deleteAlarm();
  });
});

afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

const delivered = (recipient: string): RecipientOutcome => ({
  recipient,
  status: "delivered",
  smtpCode: 250,
  enhancedCode: "2.0.0",
  response: "250 2.0.0 OK queued as ABC123",
  mxHost: "mx.example.net",
  tls: true,
  latencyMs: 123.4,
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

describe("dispatch", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  it("pushes a live send to a connected origin as a jobs frame with attempt 1 and the decrypted DKIM key", async () => {
    const origin = await link(5);
    const id = await sendOne(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [
          { to: [{ email: "Rcpt@Example.net", name: "R" }], cc: [{ email: "cc@example.net" }] },
        ],
        from: { email: t.from, name: "Sender" },
        headers: { "X-Campaign": "spring" },
        content: [
          { type: "text/plain", value: "plain body" },
          { type: "text/html", value: "<p>html body</p>" },
        ],
      }),
    );

    const [job] = await origin.jobs(1);
    expect(job).toMatchObject({
      jobId: `${id}.1`,
      messageId: id,
      tenantId: t.tenantId,
      attempt: 1,
      recipients: ["Rcpt@Example.net", "cc@example.net"],
      message: {
        from: { email: t.from, name: "Sender" },
        to: [{ email: "Rcpt@Example.net", name: "R" }],
        cc: [{ email: "cc@example.net" }],
        subject: "Hello",
        text: "plain body",
        html: "<p>html body</p>",
        headers: { "X-Campaign": "spring" },
        messageIdHeader: `${id.slice(4).toLowerCase()}@${t.domain}`,
      },
      dkim: { domain: t.domain, selector: "scaisend" },
    });

    // The key travels decrypted (PKCS#8 PEM) and is the private half of the key published in DNS.
    const pem = job!.dkim!.privateKeyPem;
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PRIVATE KEY-----\n$/);
    const res = await call(`/api/admin/domains/${t.domainId}?tenant_id=${t.tenantId}`, {
      headers: operatorHeaders(),
    });
    const domain = ((await res.json()) as { data: DomainView }).data;
    const publicB64 = domain.dns_records.find((r) => r.purpose === "dkim")!.value.split("p=")[1]!;
    const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    const der = base64ToBytes(pem.replace(/-----[A-Z ]+-----|\n/g, ""));
    const privateKey = await crypto.subtle.importKey("pkcs8", der, alg, false, ["sign"]);
    const publicKey = await crypto.subtle.importKey("spki", base64ToBytes(publicB64), alg, false, ["verify"]);
    const data = new TextEncoder().encode("dkim probe");
    const signature = await crypto.subtle.sign(alg, privateKey, data);
    expect(await crypto.subtle.verify(alg, publicKey, signature, data)).toBe(true);

    // The hub marks the message `sending` in D1 right after pushing the frame.
    const m = await eventually(
      () => getMessage(t.liveKey, id),
      (v) => v.status === "sending",
    );
    expect(m.status).toBe("sending");
    expect(m.attempts).toBe(1);
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 1 });
  });

  it("pushes no more jobs than the link has credits, and more after a credit frame", async () => {
    const origin = await link(1);
    const first = await sendOne(t.liveKey, mailBody(t.from));
    const second = await sendOne(t.liveKey, mailBody(t.from));

    const [job1] = await origin.jobs(1);
    expect(job1!.messageId).toBe(first);
    expect(await origin.nothing("jobs")).toBe(true);
    expect(await hub().stats()).toMatchObject({ ready: 1, leased: 1 });
    expect((await getMessage(t.liveKey, second)).status).toBe("queued");

    origin.send({ type: "credit", credits: 1 });
    const [job2] = await origin.jobs(1);
    expect(job2).toMatchObject({ messageId: second, attempt: 1 });
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 2 });
  });

  it("keeps messages sent while no origin is connected and delivers them when one connects", async () => {
    const a = await sendOne(t.liveKey, mailBody(t.from));
    const b = await sendOne(t.liveKey, mailBody(t.from));
    expect(await hub().stats()).toEqual({ ready: 2, leased: 0, links: [] });
    expect((await getMessage(t.liveKey, a)).status).toBe("queued");

    const origin = await link(5);
    const jobs = await origin.jobs(2);
    expect(jobs.map((j) => j.messageId).sort()).toEqual([a, b].sort());
    expect(jobs.every((j) => j.attempt === 1)).toBe(true);
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 2 });
  });
});

describe("results", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  it("records a delivered result (status, processed + delivered events) and answers resultAck", async () => {
    const origin = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await origin.jobs(1);
    origin.send({ type: "ack", jobIds: [job!.jobId] });
    origin.send({
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: 1,
      recipients: [delivered("rcpt@example.net")],
    });

    expect(await origin.next("resultAck")).toEqual({ type: "resultAck", jobIds: [`${id}.1`] });
    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("delivered");
    expect(m.delivered_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(m.error_message).toBeNull();
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
    expect(m.events[1]).toMatchObject({
      recipient_email: "rcpt@example.net",
      metadata: {
        smtp_response: "250 2.0.0 OK queued as ABC123",
        smtp_code: 250,
        status: "2.0.0",
        mx_host: "mx.example.net",
        tls: true,
        attempt: 1,
        latency_ms: 123,
      },
    });
    // Delivered means done: the row leaves the outbox.
    expect(await outboxRow(id)).toBeUndefined();
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 0 });
  });

  it("applies a re-sent result once but acknowledges it again", async () => {
    const origin = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await origin.jobs(1);
    const result = {
      type: "result" as const,
      jobId: job!.jobId,
      messageId: id,
      attempt: 1,
      recipients: [delivered("rcpt@example.net")],
    };
    origin.send(result);
    expect(await origin.next("resultAck")).toEqual({ type: "resultAck", jobIds: [job!.jobId] });
    origin.send(result);
    expect(await origin.next("resultAck")).toEqual({ type: "resultAck", jobIds: [job!.jobId] });

    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("delivered");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
  });

  it("applies a result sent twice back to back once, acknowledging both", async () => {
    const origin = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await origin.jobs(1);
    const result = {
      type: "result" as const,
      jobId: job!.jobId,
      messageId: id,
      attempt: 1,
      recipients: [delivered("rcpt@example.net")],
    };
    origin.send(result);
    origin.send(result);
    const acked: string[] = [];
    while (acked.length < 2) acked.push(...(await origin.next("resultAck")).jobIds);
    expect(acked).toEqual([job!.jobId, job!.jobId]);

    const m = await eventually(
      () => getMessage(t.liveKey, id),
      (v) => v.status === "delivered",
    );
    expect(m.status).toBe("delivered");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
    expect(await outboxRow(id)).toBeUndefined();
  });

  it("answers an invalid frame with an error frame and keeps the link", async () => {
    const origin = await link(1);
    origin.send({ type: "credit", credits: 0 } as never);
    expect(await origin.next("error")).toMatchObject({ type: "error", code: "invalid_frame" });
    // Still usable: a job is pushed on the same link.
    const id = await sendOne(t.liveKey, mailBody(t.from));
    expect((await origin.jobs(1))[0]!.messageId).toBe(id);
  });

  it("records a hard bounce: status bounced, bounce event, error_message", async () => {
    const origin = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await origin.jobs(1);
    origin.send({
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: 1,
      recipients: [
        {
          recipient: "rcpt@example.net",
          status: "bounced",
          bounceType: "hard",
          smtpCode: 550,
          enhancedCode: "5.1.1",
          response: "550 5.1.1 No such user",
        },
      ],
    });
    await origin.next("resultAck");
    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("bounced");
    expect(m.error_message).toBe("550 5.1.1 No such user");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "bounce"]);
    expect(m.events[1]!.metadata).toMatchObject({
      bounce_type: "hard",
      reason: "550 5.1.1 No such user",
      smtp_code: 550,
    });
    expect(await outboxRow(id)).toBeUndefined();
  });
});

describe("links that go away", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  it("re-dispatches a job whose link closed before ack to another link as attempt 2, and ignores the stale attempt's result", async () => {
    const first = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job1] = await first.jobs(1);
    expect(job1!.attempt).toBe(1);

    const second = await link(1);
    expect(await second.nothing("jobs", 100)).toBe(true);
    first.close(1001, "origin going away");

    const [job2] = await second.jobs(1);
    expect(job2).toMatchObject({ jobId: `${id}.2`, messageId: id, attempt: 2 });
    expect(await outboxRow(id)).toMatchObject({ state: "leased", attempt: 2, acked: 0 });

    // The first origin's attempt finishes late and is reported over the new link: acknowledged, not applied.
    second.send({
      type: "result",
      jobId: `${id}.1`,
      messageId: id,
      attempt: 1,
      recipients: [delivered("rcpt@example.net")],
    });
    expect(await second.next("resultAck")).toEqual({ type: "resultAck", jobIds: [`${id}.1`] });
    let m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("sending");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed"]);
    expect(await outboxRow(id)).toMatchObject({ state: "leased", attempt: 2 });

    second.send({
      type: "result",
      jobId: `${id}.2`,
      messageId: id,
      attempt: 2,
      recipients: [delivered("rcpt@example.net")],
    });
    expect(await second.next("resultAck")).toEqual({ type: "resultAck", jobIds: [`${id}.2`] });
    m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("delivered");
    expect(m.events.map((e) => [e.event_type, e.metadata.attempt])).toEqual([
      ["processed", undefined],
      ["delivered", 2],
    ]);
  });

  it("keeps an acknowledged job with its origin after the link closes, until the lease runs out", async () => {
    const first = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job1] = await first.jobs(1);
    const before = Date.now();
    first.send({ type: "ack", jobIds: [job1!.jobId] });
    const second = await link(1);
    first.close(1001, "origin restarting");
    await waitForLinks(1);

    expect(await second.nothing("jobs")).toBe(true);
    const row = await outboxRow(id);
    expect(row).toMatchObject({ state: "leased", attempt: 1, acked: 1 });
    expect(row!.lease_until).toBeGreaterThanOrEqual(before + 300_000);
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 1 });

    // The lease runs out (forced) and the alarm hands the job to the remaining link.
    await hubSql("UPDATE outbox SET lease_until = ? WHERE message_id = ?", Date.now() - 1, id);
    expect(await runDurableObjectAlarm(hub())).toBe(true);
    const [job2] = await second.jobs(1);
    expect(job2).toMatchObject({ jobId: `${id}.2`, attempt: 2 });
  });
});

describe("retries", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  it("defers: status queued, deferred event with next_retry_at, and a retry as attempt 2 once due carrying only the deferred recipients", async () => {
    const origin = await link(1);
    const id = await sendOne(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "ok@example.net" }, { email: "later@example.org" }] }],
      }),
    );
    const [job1] = await origin.jobs(1);
    const before = Date.now();
    origin.send({
      type: "result",
      jobId: job1!.jobId,
      messageId: id,
      attempt: 1,
      recipients: [delivered("ok@example.net"), deferred("later@example.org")],
    });
    await origin.next("resultAck");
    const after = Date.now();

    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("queued");
    expect(m.events.map((e) => `${e.event_type}:${e.recipient_email}`)).toEqual([
      "processed:ok@example.net",
      "processed:later@example.org",
      "delivered:ok@example.net",
      "deferred:later@example.org",
    ]);
    const row = await outboxRow(id);
    // First step of RETRY_SCHEDULE is 1m.
    expect(row).toMatchObject({ state: "ready", attempt: 1, lease_until: null });
    expect(JSON.parse(row!.recipients)).toEqual(["later@example.org"]);
    expect(row!.due_at).toBeGreaterThanOrEqual(before + 60_000);
    expect(row!.due_at).toBeLessThanOrEqual(after + 60_000);
    expect(m.events[3]!.metadata).toEqual({
      smtp_response: "451 4.7.1 Greylisted, try again later",
      smtp_code: 451,
      status: "4.7.1",
      mx_host: "mx.example.net",
      tls: true,
      attempt: 1,
      next_retry_at: Math.floor(row!.due_at / 1000),
    });

    // The origin has room again, but the retry is not due yet.
    origin.send({ type: "credit", credits: 1 });
    expect(await origin.nothing("jobs")).toBe(true);

    await hubSql("UPDATE outbox SET due_at = 0 WHERE message_id = ?", id);
    expect(await runDurableObjectAlarm(hub())).toBe(true);
    const [job2] = await origin.jobs(1);
    expect(job2).toMatchObject({ jobId: `${id}.2`, attempt: 2, recipients: ["later@example.org"] });
    const resent = await eventually(
      () => getMessage(t.liveKey, id),
      (v) => v.status === "sending",
    );
    expect(resent).toMatchObject({ status: "sending", attempts: 2 });

    origin.send({
      type: "result",
      jobId: job2!.jobId,
      messageId: id,
      attempt: 2,
      recipients: [delivered("later@example.org")],
    });
    await origin.next("resultAck");
    const done = await getMessage(t.liveKey, id);
    expect(done.status).toBe("delivered");
    expect(done.events.map((e) => e.event_type)).toEqual([
      "processed",
      "processed",
      "delivered",
      "deferred",
      "delivered",
    ]);
    expect(await outboxRow(id)).toBeUndefined();
  });

  it("bounces (soft) a recipient still deferred when the retry schedule is exhausted", async () => {
    const steps = parseRetrySchedule(env.RETRY_SCHEDULE).length;
    expect(steps).toBe(24);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    // Pretend every scheduled retry has been used up: the next dispatch is attempt steps + 1.
    await hubSql("UPDATE outbox SET attempt = ? WHERE message_id = ?", steps, id);

    const origin = await link(1);
    const [job] = await origin.jobs(1);
    expect(job!.attempt).toBe(steps + 1);
    origin.send({
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: steps + 1,
      recipients: [deferred("rcpt@example.net")],
    });
    await origin.next("resultAck");

    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("bounced");
    expect(m.error_message).toBe("451 4.7.1 Greylisted, try again later");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "deferred", "bounce"]);
    expect(m.events[1]!.metadata).not.toHaveProperty("next_retry_at");
    expect(m.events[2]!.metadata).toMatchObject({
      bounce_type: "soft",
      reason: "retries exhausted: 451 4.7.1 Greylisted, try again later",
      attempt: steps + 1,
    });
    expect(await outboxRow(id)).toBeUndefined();
  });
});

describe("handshake", () => {
  it("answers hello with a wrong protocol version with an error frame and closes the link", async () => {
    const origin = await openLink();
    opened.push(origin);
    origin.send({ type: "hello", protocol: 2, nodeId: "future-node", version: "9.9.9", capacity: 5 });
    expect(await origin.next("error")).toEqual({
      type: "error",
      code: "protocol_mismatch",
      message: "edge speaks link protocol 1, origin sent 2",
    });
    expect(await origin.closed).toEqual({ code: 1002, reason: "protocol mismatch" });
    expect((await hub().stats()).links).toEqual([]);
  });
});
