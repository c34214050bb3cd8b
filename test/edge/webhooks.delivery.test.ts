/**
 * Webhook delivery by the tenant's WebhookQueue object (docs/api/webhooks.md): batching, SendGrid's
 * exact bytes and ECDSA signature, ScaiSend's HMAC, the retry schedule, auto-disable, at-least-once
 * with stable event ids, and the SSRF guard on every hop. The object's clock, its outbound fetch
 * and its name resolution are handed in (runInDurableObject), so the schedule runs in compressed
 * time through its real alarms; the real HTTP path is test/e2e/webhooks.e2e.test.ts.
 *
 * `@sendgrid/eventwebhook` is not a dependency of this repository; the SendGrid signature is checked
 * as that package's starkbank-ecdsa verifier does it (ECDSA P-256, SHA-256 over timestamp + body, a
 * DER signature), with Web Crypto and a DER decoder of the test's own, and that check is first shown
 * to accept SendGrid's published test vector, whose body our serializer reproduces byte for byte.
 * The e2e test checks the same with node:crypto.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../shared/ids.ts";
import { sendgridBody, type FlushedEvent } from "../../edge/src/services/webhook-events.ts";
import {
  createApiKey,
  createTenant,
  eventually,
  getMessage,
  mailBody,
  sendOne,
  setupTenant,
} from "./helpers.ts";
import { alarmAdvancer, inQueue, keyApi } from "./webhooks.helpers.ts";

interface Post {
  url: string;
  headers: Record<string, string>;
  body: string;
  at: number;
}

const PUBLIC = "93.184.216.34";

/** A tenant, a webhooks key, and its queue with a fake clock, a receiver and a DNS table. */
async function rig(tenantId?: string) {
  const tenant = tenantId ?? (await createTenant());
  const key = (await createApiKey(tenant, { scopes: ["webhooks.read", "webhooks.write"] })).key;
  const stub = env.WEBHOOK_QUEUE.getByName(tenant);
  const state = {
    // Far ahead of the real clock: alarms set on this clock never fire on their own during a test.
    now: Date.now() + 30 * 24 * 3600_000,
    posts: [] as Post[],
    respond: (_p: Post): Response | Promise<Response> => new Response("ok"),
    dns: { "hooks.example.com": [PUBLIC], "other.example.com": [PUBLIC] } as Record<string, string[]>,
  };
  await inQueue(tenant, (q) => {
    q.clock = () => state.now;
    q.resolver = async (host) => state.dns[host] ?? [];
    q.fetcher = async (req) => {
      const post: Post = {
        url: req.url,
        headers: Object.fromEntries(req.headers),
        body: await req.text(),
        at: state.now,
      };
      state.posts.push(post);
      return state.respond(post);
    };
  });
  const api = keyApi(key);
  /** Runs the alarm if it is due on the fake clock; returns whether it ran. */
  const tick = async () => {
    const at = await stub.alarmAt();
    if (at === null || at > state.now) return false;
    return runDurableObjectAlarm(stub);
  };
  /** Moves the fake clock to the scheduled alarm and runs it. */
  const advance = alarmAdvancer(tenant, state);
  const event = (over: Partial<FlushedEvent> = {}): FlushedEvent => ({
    id: newId("evt", state.now),
    tenantId: tenant,
    messageId: "msg_01TEST",
    eventType: "delivered",
    recipientEmail: "rcpt@inbox.test",
    timestamp: state.now,
    attempt: 1,
    metadata: { smtp_response: "250 2.0.0 OK", tls: true, source_ip: "192.0.2.10" },
    ...over,
  });
  return { tenant, key, stub, state, api, tick, advance, event };
}

/**
 * DER `SEQUENCE { INTEGER r, INTEGER s }` → r ‖ s, written here from X.690 rather than taken from
 * the code under test; null for anything that is not exactly that (starkbank-ecdsa throws there).
 */
function derToP1363(der: Uint8Array): Uint8Array | null {
  if (der[0] !== 0x30 || der[1] !== der.length - 2) return null;
  const out = new Uint8Array(64);
  let at = 2;
  for (const half of [0, 32]) {
    if (der[at] !== 0x02) return null;
    const len = der[at + 1]!;
    let int = der.subarray(at + 2, at + 2 + len);
    if (int.length !== len || len === 0 || (int[0]! & 0x80) !== 0) return null;
    if (int.length > 1 && int[0] === 0 && (int[1]! & 0x80) === 0) return null; // not minimal
    while (int.length > 32 && int[0] === 0) int = int.subarray(1);
    if (int.length > 32) return null;
    out.set(int, half + 32 - int.length);
    at += 2 + len;
  }
  return at === der.length ? out : null;
}

const fromBase64 = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

/** What @sendgrid/eventwebhook checks: ECDSA P-256 / SHA-256 over timestamp + body, a DER signature. */
async function verifySendGrid(publicKey: string, body: string, signature: string, timestamp: string) {
  const key = await crypto.subtle.importKey(
    "spki",
    fromBase64(publicKey),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["verify"],
  );
  const raw = derToP1363(fromBase64(signature));
  if (!raw) return false;
  return crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    key,
    raw,
    new TextEncoder().encode(timestamp + body),
  );
}

async function hmacHex(secret: string, data: string): Promise<string> {
  const k = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", k, new TextEncoder().encode(data)));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

describe("SendGrid format", () => {
  it("the verifier accepts SendGrid's published vector, whose body our serializer reproduces", async () => {
    const vector = {
      key: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
      timestamp: "1600112502",
      signature:
        "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=",
    };
    const body = sendgridBody([
      {
        timestamp: 1600112492,
        sg_message_id: "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
        event: "dropped",
        email: "hello@world.com",
        "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
        reason: "Bounced Address",
        sg_event_id: "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
      },
    ]);
    expect(await verifySendGrid(vector.key, body, vector.signature, vector.timestamp)).toBe(true);
    expect(await verifySendGrid(vector.key, body.trimEnd(), vector.signature, vector.timestamp)).toBe(false);
  });

  it("batches events into one signed POST in SendGrid's bytes; one flipped byte fails the signature", async () => {
    const r = await rig();
    await env.DB.prepare(
      `INSERT INTO messages (id, tenant_id, status, mode, from_email, subject, to_emails, recipients, headers,
         categories, custom_args, message_id_header, created_at, updated_at)
       VALUES (?, ?, 'delivered', 'live', 's@x.test', 'Hi', '[]', '{"to":[],"cc":[],"bcc":[],"replyTo":[]}', '{}',
         '["welcome"]', '{"order":"42","event":"mine"}', 'abc@sender.test', 0, 0)`,
    )
      .bind("msg_01TEST", r.tenant)
      .run();
    const settings = await r.api("PATCH", "/v3/user/webhooks/event/settings", {
      enabled: true,
      url: "https://hooks.example.com/sg",
      processed: true,
      delivered: true,
      bounce: true,
    });
    expect(settings.status).toBe(200);
    const publicKey = (await r.api("PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: true }))
      .body.public_key as string;

    const events = [
      r.event({ eventType: "processed", attempt: 0 }),
      r.event(),
      r.event({
        eventType: "bounce",
        recipientEmail: "gone@inbox.test",
        metadata: {
          smtp_response: "550 5.1.1 no such user",
          status: "5.1.1",
          bounce_type: "hard",
          reason: "550 5.1.1 no such user",
        },
      }),
      // Not subscribed: stays out of the POST.
      r.event({ eventType: "deferred", recipientEmail: "slow@inbox.test" }),
    ];
    expect(await r.stub.enqueue(r.tenant, events)).toBe(3);
    expect(r.state.posts).toHaveLength(0);
    expect(await r.advance()).not.toBeNull();
    expect(r.state.posts).toHaveLength(1);
    const post = r.state.posts[0]!;
    expect(post.url).toBe("https://hooks.example.com/sg");
    expect(post.headers["content-type"]).toBe("application/json");
    const ts = post.headers["x-twilio-email-event-webhook-timestamp"]!;
    const sig = post.headers["x-twilio-email-event-webhook-signature"]!;
    expect(ts).toBe(String(Math.floor(r.state.now / 1000)));
    expect(await verifySendGrid(publicKey, post.body, sig, ts)).toBe(true);

    // SendGrid's bytes: compact, keys sorted, events joined by ",\r\n", a trailing CRLF.
    expect(post.body.endsWith("}]\r\n")).toBe(true);
    expect(post.body.split("},\r\n{")).toHaveLength(3);
    const parsed = JSON.parse(post.body) as Record<string, unknown>[];
    for (const e of parsed) expect(Object.keys(e)).toEqual(Object.keys(e).sort());
    expect(parsed.map((e) => e["event"])).toEqual(["processed", "delivered", "bounce"]);
    expect(parsed[1]).toMatchObject({
      email: "rcpt@inbox.test",
      event: "delivered",
      response: "250 2.0.0 OK",
      sg_event_id: events[1]!.id,
      sg_message_id: "msg_01TEST",
      "smtp-id": "<abc@sender.test>",
      category: "welcome",
      order: "42",
      tls: 1,
      ip: "192.0.2.10",
      timestamp: Math.floor(events[1]!.timestamp / 1000),
    });
    // A custom arg named like a SendGrid key loses to it.
    expect(parsed[1]!["event"]).toBe("delivered");
    expect(parsed[2]).toMatchObject({
      event: "bounce",
      type: "bounce",
      status: "5.1.1",
      reason: "550 5.1.1 no such user",
    });

    // One flipped byte anywhere (body, timestamp or signature) and it no longer verifies.
    const bytes = new TextEncoder().encode(post.body);
    for (const i of [1, Math.floor(bytes.length / 2), bytes.length - 3]) {
      const flipped = bytes.slice();
      flipped[i]! ^= 0x01;
      expect(await verifySendGrid(publicKey, new TextDecoder().decode(flipped), sig, ts), `byte ${i}`).toBe(
        false,
      );
    }
    expect(await verifySendGrid(publicKey, post.body, sig, String(Number(ts) + 1))).toBe(false);
    const sigBytes = fromBase64(sig);
    sigBytes[sigBytes.length - 1]! ^= 0x01;
    expect(await verifySendGrid(publicKey, post.body, btoa(String.fromCharCode(...sigBytes)), ts)).toBe(
      false,
    );

    // Unsigned once signing is turned off.
    await r.api("PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: false });
    await r.stub.enqueue(r.tenant, [r.event({ recipientEmail: "later@inbox.test" })]);
    await r.advance();
    expect(r.state.posts).toHaveLength(2);
    expect(r.state.posts[1]!.headers["x-twilio-email-event-webhook-signature"]).toBeUndefined();
  });

  it("the test POST sends a sample array to the URL and answers 204, or 400 with the receiver's failure", async () => {
    const r = await rig();
    await r.api("PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: true });
    const ok = await r.api("POST", "/v3/user/webhooks/event/test", { url: "https://hooks.example.com/t" });
    expect(ok.status).toBe(204);
    expect(r.state.posts).toHaveLength(1);
    const sample = JSON.parse(r.state.posts[0]!.body) as Record<string, unknown>[];
    expect(sample[0]).toMatchObject({ event: "processed", email: "example@test.com" });
    expect(r.state.posts[0]!.headers["x-twilio-email-event-webhook-signature"]).toBeTruthy();
    r.state.respond = () => new Response("no", { status: 500 });
    const failed = await r.api("POST", "/v3/user/webhooks/event/test", {
      url: "https://hooks.example.com/t",
    });
    expect(failed.status).toBe(400);
    expect(failed.body.errors[0].message).toMatch(/HTTP 500/);
  });
});

describe("ScaiSend format", () => {
  it("signs HMAC-SHA256 over timestamp.body with the endpoint secret; after rotation only the new secret", async () => {
    const r = await rig();
    const created = await r.api("POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/own",
      enabled_events: ["delivered"],
    });
    const secret = created.body.signing_secret as string;
    await r.stub.enqueue(r.tenant, [r.event(), r.event({ eventType: "processed", attempt: 0 })]);
    await r.advance();
    expect(r.state.posts).toHaveLength(1);
    const post = r.state.posts[0]!;
    const ts = post.headers["x-scaisend-timestamp"]!;
    expect(post.headers["x-scaisend-webhook-id"]).toBe(created.body.id);
    expect(post.headers["x-scaisend-delivery-id"]).toMatch(/^whd_/);
    expect(post.headers["x-scaisend-signature"]).toBe(
      `sha256=${await hmacHex(secret, `${ts}.${post.body}`)}`,
    );
    expect(post.headers["x-scaisend-signature"]).not.toBe(
      `sha256=${await hmacHex(secret, `${ts}.${post.body} `)}`,
    );
    const envelopes = JSON.parse(post.body) as Record<string, unknown>[];
    expect(envelopes).toHaveLength(1);
    expect(envelopes[0]).toMatchObject({
      event_type: "delivered",
      message_id: "msg_01TEST",
      recipient_email: "rcpt@inbox.test",
      tenant_id: r.tenant,
      metadata: { smtp_response: "250 2.0.0 OK" },
    });
    expect(Object.keys(envelopes[0]!).sort()).toEqual([
      "event_id",
      "event_type",
      "message_id",
      "metadata",
      "recipient_email",
      "tenant_id",
      "timestamp",
    ]);

    const rotated = (await r.api("POST", `/v3/user/webhooks/${created.body.id}/signing_secret`)).body
      .signing_secret as string;
    await r.stub.enqueue(r.tenant, [r.event({ recipientEmail: "next@inbox.test" })]);
    await r.advance();
    const second = r.state.posts[1]!;
    const ts2 = second.headers["x-scaisend-timestamp"]!;
    expect(second.headers["x-scaisend-signature"]).toBe(
      `sha256=${await hmacHex(rotated, `${ts2}.${second.body}`)}`,
    );
    expect(second.headers["x-scaisend-signature"]).not.toBe(
      `sha256=${await hmacHex(secret, `${ts2}.${second.body}`)}`,
    );
  });
});

describe("delivery", () => {
  it("retries after 60, 300, 900, 3600 and 7200 s, then marks the delivery failed; the log shows each attempt", async () => {
    const r = await rig();
    const id = (
      await r.api("POST", "/v3/user/webhooks", { url: "https://hooks.example.com/x", enabled_events: ["*"] })
    ).body.id as string;
    r.state.respond = () => new Response("down", { status: 503 });
    const ev = r.event();
    await r.stub.enqueue(r.tenant, [ev]);
    const first = await r.advance();
    expect(first).not.toBeNull();
    const times = [r.state.posts.at(-1)!.at];
    for (let i = 0; i < 5; i++) {
      // Nothing is due before the next step.
      r.state.now += 1000;
      expect(await r.tick()).toBe(false);
      await r.advance();
      times.push(r.state.posts.at(-1)!.at);
    }
    expect(r.state.posts).toHaveLength(6);
    expect(times.slice(1).map((t, i) => (t - times[i]!) / 1000)).toEqual([60, 300, 900, 3600, 7200]);
    expect(r.state.posts.every((p) => p.body === r.state.posts[0]!.body)).toBe(true);
    // Nothing more to send: the one alarm left sweeps the body kept for a re-send, 3 days on.
    expect(await r.stub.alarmAt()).toBe(times.at(-1)! + 3 * 24 * 3600_000);

    const log = await r.api("GET", `/v3/user/webhooks/${id}/deliveries`);
    expect(log.status).toBe(200);
    expect(log.body.deliveries).toHaveLength(1);
    const d = log.body.deliveries[0];
    expect(d).toMatchObject({ status: "failed", event_count: 1, event_ids: [ev.id], next_attempt_at: null });
    expect(d.attempts.map((a: any) => a.status_code)).toEqual([503, 503, 503, 503, 503, 503]);
    expect(d.attempts[0].error).toBe("HTTP 503");
    const ep = (await r.api("GET", `/v3/user/webhooks/${id}`)).body;
    expect(ep).toMatchObject({ failure_count: 6, disabled_at: null, last_success_at: null });
  });

  it("a receiver that does not answer in time is a failure, retried", async () => {
    const r = await rig();
    await inQueue(r.tenant, (q) => {
      q.timeoutMs = 200;
    });
    const id = (
      await r.api("POST", "/v3/user/webhooks", { url: "https://hooks.example.com/x", enabled_events: ["*"] })
    ).body.id as string;
    r.state.respond = () => new Promise<Response>(() => undefined);
    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    const d = (await r.api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries[0];
    expect(d.status).toBe("pending");
    expect(d.attempts[0]).toMatchObject({ status_code: null, error: "no answer within 0.2 s" });
  });

  it("auto-disables after 10 consecutive failed attempts, and a PATCH enabled: true resumes it", async () => {
    const r = await rig();
    const id = (
      await r.api("POST", "/v3/user/webhooks", { url: "https://hooks.example.com/x", enabled_events: ["*"] })
    ).body.id as string;
    r.state.respond = () => new Response("no", { status: 500 });
    // Two deliveries, a minute apart: their attempts interleave; the count runs across them.
    await r.stub.enqueue(r.tenant, [r.event({ recipientEmail: "a@inbox.test" })]);
    await r.advance();
    r.state.now += 30_000;
    await r.stub.enqueue(r.tenant, [r.event({ recipientEmail: "b@inbox.test" })]);
    while (r.state.posts.length < 10) {
      expect(await r.advance(), `after ${r.state.posts.length} posts`).not.toBeNull();
    }
    const ep = (await r.api("GET", `/v3/user/webhooks/${id}`)).body;
    expect(ep.failure_count).toBe(10);
    expect(ep.disabled_at).not.toBeNull();
    expect(ep.enabled).toBe(true);
    expect((await r.api("GET", "/v3/user/webhooks?is_active=true")).body.total).toBe(0);
    // Disabled: no alarm, nothing more is posted, new events are not queued for it.
    expect(await r.stub.alarmAt()).toBeNull();
    r.state.now += 24 * 3600_000;
    expect(await r.stub.enqueue(r.tenant, [r.event({ recipientEmail: "c@inbox.test" })])).toBe(0);
    expect(r.state.posts).toHaveLength(10);

    r.state.respond = () => new Response("ok");
    const resumed = await r.api("PATCH", `/v3/user/webhooks/${id}`, { enabled: true });
    expect(resumed.body).toMatchObject({ disabled_at: null, failure_count: 0 });
    await r.advance();
    const log = (await r.api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries;
    // Both deliveries had attempts left (five each, interleaved): both go out now.
    expect(log.map((d: any) => d.status)).toEqual(["succeeded", "succeeded"]);
    expect(log.map((d: any) => d.attempts.length)).toEqual([6, 6]);
    const after = (await r.api("GET", `/v3/user/webhooks/${id}`)).body;
    expect(after.failure_count).toBe(0);
    expect(after.last_success_at).not.toBeNull();
  });

  it("the Event Webhook auto-disables too: it reads as not enabled, a flag change keeps it off, enabled: true resumes", async () => {
    const r = await rig();
    await r.api("PATCH", "/v3/user/webhooks/event/settings", {
      enabled: true,
      url: "https://hooks.example.com/sg",
      delivered: true,
    });
    r.state.respond = () => new Response("no", { status: 500 });
    for (const who of ["a", "b"]) {
      await r.stub.enqueue(r.tenant, [r.event({ recipientEmail: `${who}@inbox.test` })]);
      await r.advance();
    }
    while (r.state.posts.length < 10) expect(await r.advance()).not.toBeNull();
    expect((await r.api("GET", "/v3/user/webhooks/event/settings")).body.enabled).toBe(false);
    const flagged = await r.api("PATCH", "/v3/user/webhooks/event/settings", { open: true });
    expect(flagged.body).toMatchObject({ enabled: false, open: true });
    expect(await r.stub.alarmAt()).toBeNull();
    r.state.respond = () => new Response("ok");
    const resumed = await r.api("PATCH", "/v3/user/webhooks/event/settings", { enabled: true });
    expect(resumed.body.enabled).toBe(true);
    await r.advance();
    const log = (await r.api("GET", "/v3/user/webhooks/event/settings/deliveries")).body.deliveries;
    expect(log.map((d: { status: string }) => d.status)).toEqual(["succeeded", "succeeded"]);
  });

  it("a replayed flush or a result recorded twice queues nothing twice: one event, one id", async () => {
    const r = await rig();
    await r.api("POST", "/v3/user/webhooks", { url: "https://hooks.example.com/x", enabled_events: ["*"] });
    const processed = r.event({ eventType: "processed", attempt: 0 });
    const delivered = r.event({ attempt: 2 });
    expect(await r.stub.enqueue(r.tenant, [processed, delivered])).toBe(2);
    // The same flush again, and the same result planned again (a new row id, the same event).
    expect(await r.stub.enqueue(r.tenant, [processed, delivered])).toBe(0);
    expect(await r.stub.enqueue(r.tenant, [{ ...delivered, id: newId("evt") }])).toBe(0);
    // Two hand-offs of the same new events at once (they interleave at the queue's D1 read).
    const raced = [r.event({ attempt: 5, recipientEmail: "race@inbox.test" })];
    const counts = await Promise.all([r.stub.enqueue(r.tenant, raced), r.stub.enqueue(r.tenant, raced)]);
    expect(counts.sort()).toEqual([0, 1]);
    // A later attempt's event is another event.
    expect(await r.stub.enqueue(r.tenant, [r.event({ attempt: 3 })])).toBe(1);
    await r.advance();
    const ids = r.state.posts.flatMap((p) =>
      (JSON.parse(p.body) as { event_id: string }[]).map((e) => e.event_id),
    );
    expect(ids).toHaveLength(4);
    expect(ids.slice(0, 2)).toEqual([processed.id, delivered.id]);
  });

  it("the SSRF guard runs at delivery too: a name that now resolves to loopback, and redirects to private hosts", async () => {
    const r = await rig();
    const id = (
      await r.api("POST", "/v3/user/webhooks", { url: "https://hooks.example.com/x", enabled_events: ["*"] })
    ).body.id as string;
    r.state.dns["hooks.example.com"] = ["127.0.0.1"];
    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    expect(r.state.posts).toHaveLength(0);
    let log = (await r.api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries;
    expect(log[0].attempts[0].error).toMatch(
      /^refused: https:\/\/hooks\.example\.com\/x hooks\.example\.com resolves to a non-public address/,
    );

    r.state.dns["hooks.example.com"] = [PUBLIC];
    r.state.dns["internal.example.com"] = ["10.9.8.7"];
    const targets = [
      "http://169.254.169.254/latest/meta-data/",
      "https://127.0.0.1/",
      "https://internal.example.com/",
      "https://[::1]:8443/",
    ];
    for (const location of targets) {
      r.state.respond = (p) =>
        p.url.startsWith("https://hooks.example.com")
          ? new Response(null, { status: 307, headers: { location } })
          : new Response("ok");
      const before = r.state.posts.length;
      await r.advance();
      // Only the first hop was requested; the redirect target never was.
      expect(r.state.posts.length - before).toBe(1);
      log = (await r.api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries;
      expect(log[0].attempts.at(-1).error, location).toMatch(/^refused: /);
    }
    // A redirect to a public host is followed, with the same body.
    r.state.respond = (p) =>
      p.url.startsWith("https://hooks.example.com")
        ? new Response(null, { status: 308, headers: { location: "https://other.example.com/in" } })
        : new Response("ok");
    const before = r.state.posts.length;
    await r.advance();
    expect(r.state.posts.slice(before).map((p) => p.url)).toEqual([
      "https://hooks.example.com/x",
      "https://other.example.com/in",
    ]);
    expect(r.state.posts.at(-1)!.body).toBe(r.state.posts.at(-2)!.body);
    log = (await r.api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries;
    expect(log[0].status).toBe("succeeded");
  });

  it("a live send's processed events reach the receiver after the hub's catalog flush", async () => {
    const t = await setupTenant();
    const r = await rig(t.tenantId);
    // The real clock here: the hub's flush and the queue's alarm run on their own.
    await inQueue(r.tenant, (q) => {
      q.clock = () => Date.now();
    });
    r.state.posts.length = 0;
    await r.api("PATCH", "/v3/user/webhooks/event/settings", {
      enabled: true,
      url: "https://hooks.example.com/sg",
      processed: true,
    });
    const id = await sendOne(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "one@inbox.test" }, { email: "two@inbox.test" }] }],
        categories: ["onboarding"],
        custom_args: { user: "7" },
      }),
    );
    const posts = await eventually(
      async () => r.state.posts.flatMap((p) => JSON.parse(p.body) as Record<string, unknown>[]),
      (events) => events.length >= 2,
      4000,
    );
    if (posts.length < 2) {
      const dump = await inQueue(r.tenant, (_q, st) => ({
        endpoints: st.storage.sql.exec("SELECT * FROM endpoint").toArray(),
        pending: st.storage.sql.exec("SELECT * FROM pending").toArray(),
        deliveries: st.storage.sql.exec("SELECT id, state, attempts FROM delivery").toArray(),
        seen: st.storage.sql.exec("SELECT * FROM seen").toArray(),
      }));
      throw new Error(JSON.stringify(dump));
    }
    expect(posts.map((e) => e["email"]).sort()).toEqual(["one@inbox.test", "two@inbox.test"]);
    for (const e of posts) {
      expect(e).toMatchObject({ event: "processed", sg_message_id: id, category: "onboarding", user: "7" });
      expect(e["smtp-id"]).toMatch(/^<.+@.+>$/);
    }
    // The same ids as the message's timeline.
    const timelineIds = (await getMessage(t.liveKey, id)).events.map((e) => e.event_id);
    for (const e of posts) expect(timelineIds).toContain(e["sg_event_id"]);
  });
});
