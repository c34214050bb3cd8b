/**
 * OriginHub outbox over a real /link WebSocket (shared/link/protocol.ts), driven the way an origin
 * drives it: hello → jobs → ack → result → resultAck, credits, reconnects, retries.
 * Storage is isolated per test file, but every test in this file shares the one hub ("hub-0",
 * HUB_SHARDS = 1), so each test starts from an empty outbox with no links.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseRetrySchedule } from "../../shared/delivery/retry-schedule.ts";
import {
  FRAME_BUDGET_BYTES,
  LINK_PROTOCOL_VERSION,
  type RecipientOutcome,
} from "../../shared/link/protocol.ts";
import { base64ToBytes } from "../../edge/src/lib/base64.ts";
import {
  call,
  eventually,
  getMessage,
  LinkClient,
  linkSettled,
  mailBody,
  openLink,
  operatorHeaders,
  sendMail,
  sendOne,
  setupTenant,
  type DomainView,
  type TenantFixture,
  resetHub,
  runScheduledAlarm,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

interface OutboxRowView {
  message_id: string;
  state: string;
  dispatches: number;
  deferrals: number;
  due_at: number;
  lease_until: number | null;
  lease_link: string | null;
  recipients: string;
  acked: number;
}

function outboxRow(messageId: string): Promise<OutboxRowView | undefined> {
  return runInDurableObject(
    hub(),
    (_instance, state) =>
      state.storage.sql
        .exec(
          `SELECT message_id, state, dispatches, deferrals, due_at, lease_until, lease_link, recipients, acked
           FROM outbox WHERE message_id = ?`,
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
/** A hello'd link; pass nodeId + bootId to stand for a given origin process (a reconnect, a restart). */
async function link(capacity: number, nodeId?: string, bootId?: string): Promise<LinkClient> {
  const l = await openLink();
  opened.push(l);
  const welcome = await l.hello(capacity, nodeId, bootId);
  expect(welcome).toEqual({
    type: "welcome",
    protocol: LINK_PROTOCOL_VERSION,
    shard: 0,
    shards: 1,
    leaseMs: 300_000,
    hubs: ["hub-0"],
    // The key origins sign tracking links with (docs/link-protocol.md#tracking).
    tracking: { key: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) },
  });
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

    // The hub marks the message `processing` in D1 right after pushing the frame.
    const m = await eventually(
      () => getMessage(t.liveKey, id),
      (v) => v.status === "processing",
    );
    expect(m.status).toBe("processing");
    expect(m).toMatchObject({ dispatches: 1, deferrals: 0 });
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 1 });
  });

  it("pushes no more jobs than the link has credits, and more after a credit frame", async () => {
    const origin = await link(1);
    const first = await sendOne(t.liveKey, mailBody(t.from));
    const second = await sendOne(t.liveKey, mailBody(t.from));

    const [job1] = await origin.jobs(1);
    expect(job1!.messageId).toBe(first);
    // The hub has handled everything the origin sent and pushed exactly one job.
    expect(await linkSettled(origin)).toMatchObject({ jobsOut: 1, credits: 0 });
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
    expect(await linkSettled(second)).toMatchObject({ jobsOut: 0 });
    first.close(1001, "origin going away");

    const [job2] = await second.jobs(1);
    expect(job2).toMatchObject({ jobId: `${id}.2`, messageId: id, attempt: 2 });
    expect(await outboxRow(id)).toMatchObject({ state: "leased", dispatches: 2, deferrals: 0, acked: 0 });

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
    expect(m.status).toBe("processing");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed"]);
    expect(await outboxRow(id)).toMatchObject({ state: "leased", dispatches: 2 });

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

    expect(await linkSettled(second)).toMatchObject({ jobsOut: 0 });
    const row = await outboxRow(id);
    expect(row).toMatchObject({ state: "leased", dispatches: 1, acked: 1 });
    expect(row!.lease_until).toBeGreaterThanOrEqual(before + 300_000);
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 1 });

    // The lease runs out (forced) and the alarm hands the job to the remaining link.
    await hubSql("UPDATE outbox SET lease_until = ? WHERE message_id = ?", Date.now() - 1, id);
    expect(await runScheduledAlarm(hub())).toBe(true);
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
    expect(row).toMatchObject({ state: "ready", dispatches: 1, deferrals: 1, lease_until: null });
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
    expect(await linkSettled(origin)).toMatchObject({ jobsOut: 1, credits: 1 });

    await hubSql("UPDATE outbox SET due_at = 0 WHERE message_id = ?", id);
    expect(await runScheduledAlarm(hub())).toBe(true);
    const [job2] = await origin.jobs(1);
    expect(job2).toMatchObject({ jobId: `${id}.2`, attempt: 2, recipients: ["later@example.org"] });
    const resent = await eventually(
      () => getMessage(t.liveKey, id),
      (v) => v.status === "processing",
    );
    expect(resent).toMatchObject({ status: "processing", dispatches: 2, deferrals: 1 });

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
    // Pretend every scheduled retry has been used up (after as many dispatches): one more deferral bounces.
    await hubSql("UPDATE outbox SET dispatches = ?, deferrals = ? WHERE message_id = ?", steps, steps, id);

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
    origin.send({
      type: "hello",
      protocol: LINK_PROTOCOL_VERSION + 1,
      nodeId: "future-node",
      bootId: "b",
      version: "9.9.9",
      capacity: 5,
    });
    expect(await origin.next("error")).toEqual({
      type: "error",
      code: "protocol_mismatch",
      message: `edge speaks link protocol ${LINK_PROTOCOL_VERSION}, origin sent ${LINK_PROTOCOL_VERSION + 1}`,
    });
    expect(await origin.closed).toEqual({ code: 1002, reason: "protocol mismatch" });
    expect((await hub().stats()).links).toEqual([]);
  });
});

/** `count` characters of Japanese text: 3 UTF-8 bytes each, 1 UTF-16 unit each. */
const japanese = (count: number) => "日本語のテキスト。".repeat(Math.ceil(count / 9)).slice(0, count);

async function sendMany(key: string, from: string, n: number, text: string): Promise<string[]> {
  const res = await sendMail(
    key,
    mailBody(from, {
      personalizations: Array.from({ length: n }, (_, i) => ({ to: [{ email: `r${i}@example.net` }] })),
      content: [{ type: "text/plain", value: text }],
    }),
  );
  const body = await res.text();
  expect(res.status, body).toBe(202);
  return (JSON.parse(body) as { message_ids: string[] }).message_ids;
}

// Issue 6, item 1: frame size is measured in UTF-8 bytes against the cap we enforce.
describe("frames", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  it("splits 33 jobs of an 82 KB Japanese body into frames of at most FRAME_BUDGET_BYTES of UTF-8", async () => {
    const text = japanese(27_500);
    expect(new TextEncoder().encode(text).byteLength).toBe(82_500);
    const ids = await sendMany(t.liveKey, t.from, 33, text);
    const origin = await link(33);
    const jobs = await origin.jobs(33, 10_000);
    expect(jobs.map((j) => j.messageId).sort()).toEqual([...ids].sort());
    expect(jobs.every((j) => j.message.text === text)).toBe(true);
    expect(origin.jobsFrameBytes.length).toBeGreaterThanOrEqual(3);
    for (const bytes of origin.jobsFrameBytes) expect(bytes).toBeLessThanOrEqual(FRAME_BUDGET_BYTES);
  });

  it("fails a message whose job alone exceeds a frame, restores the credit and keeps the link moving", async () => {
    // The API's content limit keeps new jobs under a frame; an entry queued before such a limit (or a
    // limit raised past the link's) can still be larger. 400,000 characters are 1.2 MB of UTF-8: under
    // the 1 MiB cap by UTF-16 length, over it in bytes.
    const big = await sendOne(t.liveKey, mailBody(t.from));
    await hubSql(
      "UPDATE outbox_entry SET entry = json_set(entry, '$.message.text', ?) WHERE message_id = ?",
      japanese(400_000),
      big,
    );
    const small = await sendOne(t.liveKey, mailBody(t.from));
    const origin = await link(1);
    const [job] = await origin.jobs(1);
    expect(job!.messageId).toBe(small);

    const m = await eventually(
      () => getMessage(t.liveKey, big),
      (v) => v.status === "failed",
    );
    expect(m.status).toBe("failed");
    expect(m.error_message).toMatch(
      /^Message too large for the delivery link: the job is \d+ bytes of UTF-8/,
    );
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "dropped"]);
    expect(m.events[1]!.metadata.reason).toBe(m.error_message);
    expect(m).toMatchObject({ dispatches: 0 });
    expect(await outboxRow(big)).toBeUndefined();
    // The failed message cost no credit: the one credit went to the small message.
    expect(await linkSettled(origin)).toMatchObject({ jobsOut: 1, credits: 0 });
  });
});

// Issue 6, item 2: one row that cannot become a job fails alone; the batch and the link keep moving.
describe("a row that cannot become a job", () => {
  it("fails the message whose DKIM key does not open and hands every other tenant's mail out", async () => {
    const [a, b, c] = [await setupTenant(), await setupTenant(), await setupTenant()];
    const idA = await sendOne(a.liveKey, mailBody(a.from));
    const idB = await sendOne(b.liveKey, mailBody(b.from));
    const idC = await sendOne(c.liveKey, mailBody(c.from));
    // B's sealed key no longer opens (what a changed SECRETS_KEY does): its ciphertext is altered.
    await runInDurableObject(hub(), (_instance, state) => {
      const row = state.storage.sql
        .exec<{ entry: string }>("SELECT entry FROM outbox_entry WHERE message_id = ?", idB)
        .one();
      const entry = JSON.parse(row.entry) as { dkim: { privateKeySealed: string } };
      const sealed = entry.dkim.privateKeySealed;
      const tail = sealed.endsWith("AAAA") ? "BBBB" : "AAAA";
      entry.dkim.privateKeySealed = sealed.slice(0, -4) + tail;
      state.storage.sql.exec(
        "UPDATE outbox_entry SET entry = ? WHERE message_id = ?",
        JSON.stringify(entry),
        idB,
      );
    });

    const origin = await link(3);
    const jobs = await origin.jobs(2);
    expect(jobs.map((j) => j.messageId).sort()).toEqual([idA, idC].sort());
    expect(jobs.every((j) => j.dkim !== null)).toBe(true);

    const m = await eventually(
      () => getMessage(b.liveKey, idB),
      (v) => v.status === "failed",
    );
    expect(m.status).toBe("failed");
    expect(m.error_message).toMatch(/^Could not prepare the message for delivery: the DKIM private key of /);
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "dropped"]);
    expect(await outboxRow(idB)).toBeUndefined();

    // Its credit was never spent: the next message goes out on it.
    expect(await linkSettled(origin)).toMatchObject({ jobsOut: 2, credits: 1 });
    const next = await sendOne(b.liveKey, mailBody(b.from));
    // B's domain key is intact in D1, so B's next message is fine too.
    expect((await origin.jobs(1))[0]!.messageId).toBe(next);
  });
});

describe("leases", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  // Issue 6, item 7: an origin renews what it holds, over whichever link of the same process is up.
  it("renews an acknowledged job's lease on every ack, also over the process's next link", async () => {
    const first = await link(1, "node-renew", "boot-1");
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await first.jobs(1);
    first.send({ type: "ack", jobIds: [job!.jobId] });
    await linkSettled(first);
    first.close(1001, "link dropped");
    await waitForLinks(0);

    // The same process reconnects: its job stays with it, and its renewal extends the lease.
    await hubSql("UPDATE outbox SET lease_until = ? WHERE message_id = ?", Date.now() + 1_000, id);
    const second = await link(1, "node-renew", "boot-1");
    const before = Date.now();
    second.send({ type: "ack", jobIds: [job!.jobId] });
    const seen = await linkSettled(second);
    const row = await outboxRow(id);
    expect(row).toMatchObject({ state: "leased", dispatches: 1, acked: 1, lease_link: seen.linkId });
    expect(row!.lease_until).toBeGreaterThanOrEqual(before + 300_000);
    expect(seen.jobsOut).toBe(0);
  });

  it("puts released jobs back at once and gives the releasing link no more until it grants credit", async () => {
    const full = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await full.jobs(1);
    full.send({ type: "credit", credits: 2 });
    full.send({ type: "release", jobIds: [job!.jobId] });
    expect(await linkSettled(full)).toMatchObject({ credits: 0, jobsOut: 1 });
    expect(await outboxRow(id)).toMatchObject({ state: "ready", dispatches: 1, lease_link: null });

    const other = await link(1);
    expect((await other.jobs(1))[0]).toMatchObject({ jobId: `${id}.2` });
  });

  // Issue 6, item 8: a re-dispatch after a dropped link does not use up a retry step.
  it("retries a deferral after a re-dispatch on the first step of the schedule", async () => {
    const first = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    await first.jobs(1);
    first.close(1001, "dropped before ack");
    const second = await link(1);
    const [job] = await second.jobs(1);
    expect(job!.attempt).toBe(2);
    const before = Date.now();
    second.send({
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: 2,
      recipients: [deferred("rcpt@example.net")],
    });
    await second.next("resultAck");
    const row = await outboxRow(id);
    expect(row).toMatchObject({ state: "ready", dispatches: 2, deferrals: 1 });
    // First step of RETRY_SCHEDULE (1m), not the second (5m) that the dispatch count would pick.
    expect(row!.due_at).toBeGreaterThanOrEqual(before + 60_000);
    expect(row!.due_at).toBeLessThan(before + 120_000);
    expect(await getMessage(t.liveKey, id)).toMatchObject({ dispatches: 2, deferrals: 1 });
  });
});

// Issue 6, item 13: a restarted origin gets its old jobs back at once, not after LINK_LEASE_MS.
describe("origin restarts", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  it("re-dispatches at once what the previous process of a node held when it says hello with a new boot id", async () => {
    const old = await link(2, "node-restart", "boot-old");
    const a = await sendOne(t.liveKey, mailBody(t.from));
    const b = await sendOne(t.liveKey, mailBody(t.from));
    const jobs = await old.jobs(2);
    old.send({ type: "ack", jobIds: jobs.map((j) => j.jobId) });
    await linkSettled(old);

    // kill -9: the old link is not even closed yet when the new process says hello.
    const fresh = await link(2, "node-restart", "boot-new");
    const again = await fresh.jobs(2);
    expect(again.map((j) => j.jobId).sort()).toEqual([`${a}.2`, `${b}.2`].sort());
    expect(await old.closed).toEqual({ code: 1012, reason: "origin restarted" });
    expect((await hub().stats()).links.map((l) => l.bootId)).toEqual(["boot-new"]);

    // The old process, had it survived, may not come back and take the jobs in turn.
    const ghost = await openLink();
    opened.push(ghost);
    ghost.send({
      type: "hello",
      protocol: LINK_PROTOCOL_VERSION,
      nodeId: "node-restart",
      bootId: "boot-old",
      version: "test",
      capacity: 2,
    });
    expect(await ghost.next("error")).toMatchObject({ code: "boot_superseded" });
    expect(await ghost.closed).toEqual({ code: 1008, reason: "boot superseded" });
  });

  it("keeps acknowledged jobs with a node that reconnects with the same boot id", async () => {
    const first = await link(1, "node-same", "boot-same");
    await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await first.jobs(1);
    first.send({ type: "ack", jobIds: [job!.jobId] });
    await linkSettled(first);
    first.close(1001, "reconnecting");
    await waitForLinks(0);
    const second = await link(1, "node-same", "boot-same");
    expect(await linkSettled(second)).toMatchObject({ jobsOut: 0, credits: 1 });
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 1 });
  });
});

// Issue 6, items 10 and 12: nothing sticks when a D1 batch cannot be built or a frame cannot be sent.
describe("failures inside the hub", () => {
  let t: TenantFixture;
  beforeEach(async () => {
    t = await setupTenant();
  });

  it("returns a row to leased when the D1 statements cannot be built, and acknowledges the re-sent result", async () => {
    const origin = await link(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await origin.jobs(1);
    // The message's catalog rows are in D1 first, so the refused insert below is the result's.
    expect(await hub().flush()).toEqual({ uncatalogued: 0 });
    // The hub's D1 binding refuses to prepare a statement once (what a statement builder that throws
    // does): the flush builds its statements with DB.prepare (edge/src/db/messages.ts).
    await runInDurableObject(hub(), (instance) => {
      const object = instance as unknown as { env: Record<string, unknown> };
      const realEnv = object.env;
      const real = realEnv.DB as D1Database;
      object.env = {
        ...realEnv,
        DB: new Proxy(real, {
          get(target, prop, receiver) {
            if (prop === "prepare") {
              object.env = realEnv;
              return () => {
                throw new Error("statement builder failed");
              };
            }
            const v = Reflect.get(target, prop, receiver) as unknown;
            return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        }),
      };
    });
    const result = {
      type: "result" as const,
      jobId: job!.jobId,
      messageId: id,
      attempt: 1,
      recipients: [delivered("rcpt@example.net")],
    };
    origin.send(result);
    await linkSettled(origin);
    expect(
      await eventually(
        () => outboxRow(id),
        (r) => r?.state === "leased",
      ),
    ).toMatchObject({ state: "leased" });
    expect(origin.queued("resultAck")).toBe(0);

    // The origin re-sends the unacknowledged result; now it is recorded and acknowledged.
    origin.send(result);
    expect(await origin.next("resultAck")).toEqual({ type: "resultAck", jobIds: [job!.jobId] });
    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("delivered");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
  });

  it("puts jobs back at once and restores the credit when their frame cannot be sent", async () => {
    const id = await sendOne(t.liveKey, mailBody(t.from));
    // No DKIM key to open: dispatch runs without leaving the event loop turn, so nothing interleaves.
    await hubSql(
      "UPDATE outbox_entry SET entry = json_set(entry, '$.dkim', json('null')) WHERE message_id = ?",
      id,
    );
    const origin = await link(0);
    await linkSettled(origin);
    const row = await runInDurableObject(hub(), async (instance, state) => {
      const [ws] = state.getWebSockets();
      const attachment = ws!.deserializeAttachment() as Record<string, unknown>;
      ws!.close(1000, "gone"); // send() throws from now on
      ws!.serializeAttachment({ ...attachment, credits: 1 });
      await instance.enqueue([]);
      return {
        outbox: state.storage.sql
          .exec("SELECT state, dispatches FROM outbox WHERE message_id = ?", id)
          .toArray()[0],
        credits: (ws!.deserializeAttachment() as { credits: number }).credits,
      };
    });
    expect(row).toEqual({ outbox: { state: "ready", dispatches: 0 }, credits: 1 });
  });
});
