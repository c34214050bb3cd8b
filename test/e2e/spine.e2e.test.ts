/**
 * The spine, end to end with real parts: the official @sendgrid/mail client → edge (wrangler dev)
 * → OriginHub → origin over the WebSocket link → MX look-up on a loopback DNS server → SMTP
 * server on loopback; DKIM checked by mailauth against the DNS record the edge asked us to publish.
 */
import { createRequire } from "node:module";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const require = createRequire(import.meta.url);
// The official client; its package exports a singleton, so build one per API key from its class.
const MailService = require("@sendgrid/mail/src/classes/mail-service.js") as new () => {
  setApiKey(key: string): void;
  client: { setDefaultRequest(k: string, v: string): void };
  send(
    data: object,
  ): Promise<[{ statusCode: number; headers: Record<string, string>; body: unknown }, unknown]>;
};

function sendgrid(apiKey: string, baseUrl: string) {
  const mail = new MailService();
  mail.setApiKey(apiKey);
  // setApiKey resets baseUrl to SendGrid's host, so the override must come after it (@sendgrid/client's setApiKey).
  mail.client.setDefaultRequest("baseUrl", `${baseUrl}/`);
  return mail;
}

// The recipient MX: greylists greylist.test once per address, rejects unknown-user.test, accepts the rest.
const greylisted = new Set<string>();
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    smtp: {
      onRcpt(address) {
        if (address.endsWith("@unknown-user.test")) return { code: 550, message: "5.1.1 User unknown" };
        if (address.endsWith("@greylist.test") && !greylisted.has(address)) {
          greylisted.add(address);
          return { code: 451, message: "4.7.1 Greylisted, try again later" };
        }
        return null;
      },
    },
  });
});

afterAll(async () => {
  await stack?.stop();
});

const mailFor = (to: string, subject: string) => ({
  to,
  from: { email: `app@${SENDER_DOMAIN}`, name: "E2E App" },
  subject,
  text: `plain body for ${subject}`,
  html: `<p>html body for <b>${subject}</b></p>`,
  customArgs: { order: "1234" },
  categories: ["e2e"],
});

describe("sender domain", () => {
  it("refuses a live send from an unverified domain with 403, synchronously", async () => {
    const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [{ to: [{ email: "someone@inbox.test" }] }],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: "too early",
      content: [{ type: "text/plain", value: "x" }],
    });
    expect(r.status).toBe(403);
    expect(r.body.errors[0].message).toMatch(/^Sender domain not verified: sender\.test/);
    expect(r.body.errors[0].field).toBe("from.email");
  });

  it("verify reports the missing records, then passes once they are published", async () => {
    const before = await stack.admin.verifyDomain(stack.tenantId, stack.domain.id);
    expect(before.verified).toBe(false);
    expect(before.errors.map((e) => e.record).sort()).toEqual(
      [`_dmarc.${SENDER_DOMAIN}`, SENDER_DOMAIN, `scaisend._domainkey.${SENDER_DOMAIN}`].sort(),
    );

    stack.publish(zoneFromDomain(stack.domain));
    const after = await stack.admin.verifyDomain(stack.tenantId, stack.domain.id);
    expect(after).toMatchObject({ verified: true, errors: [] });
    expect((await stack.admin.getDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
  });
});

describe("live send through @sendgrid/mail", () => {
  it("is delivered to the recipient's MX with a passing DKIM signature and a delivered timeline", async () => {
    const before = stack.smtp.messages.length;
    const [res] = await sendgrid(stack.liveKey.api_key, stack.edge.url).send(
      mailFor("alice@inbox.test", "Hello Alice"),
    );
    expect(res.statusCode).toBe(202);
    const messageId = res.headers["x-message-id"]!;
    expect(messageId).toMatch(/^msg_[0-9A-Z]{26}$/);

    const message = await stack.waitForStatus(messageId, ["delivered", "bounced", "failed"]);
    expect(message.status).toBe("delivered");
    expect(message.events.map((e: { event_type: string }) => e.event_type)).toEqual([
      "processed",
      "delivered",
    ]);
    expect(message.events[1].metadata).toMatchObject({ smtp_code: 250, mx_host: "mx.recipients.test" });
    expect(message.delivered_at).not.toBeNull();
    expect(message.custom_args).toEqual({ order: "1234" });

    const received = stack.smtp.messages.slice(before).find((m) => m.rcptTo.includes("alice@inbox.test"));
    expect(received).toBeDefined();
    // VERP return path carries the message id so asynchronous bounces map back without state.
    expect(received!.mailFrom).toMatch(new RegExp(`^bounces\\+${messageId}\\.[a-z2-7]+@${SENDER_DOMAIN}$`));
    const raw = received!.raw.toString("utf8");
    expect(raw).toContain("Subject: Hello Alice");
    expect(raw).toContain(`Message-ID: ${message.message_id_header}`);

    const dkim = await dkimVerify(received!.raw, { resolver: mailauthResolver(stack.dns.server) });
    expect(dkim.results).toHaveLength(1);
    expect(dkim.results[0]).toMatchObject({ signingDomain: SENDER_DOMAIN, selector: "scaisend" });
    expect(dkim.results[0]!.status.result).toBe("pass");
  });

  it("reports validation errors the way SendGrid does, through the official client", async () => {
    const client = sendgrid(stack.liveKey.api_key, stack.edge.url);
    const err = await client
      .send({ to: "not-an-address", from: `app@${SENDER_DOMAIN}`, subject: "x", text: "y" })
      .then(
        () => null,
        (e: { code: number; response: { body: unknown } }) => e,
      );
    expect(err).not.toBeNull();
    expect(err!.code).toBe(400);
    expect(err!.response.body).toEqual({
      errors: [
        {
          message: "Does not contain a valid address.",
          field: "personalizations.0.to.0.email",
          help: expect.stringContaining("#personalizations.to.email"),
        },
      ],
    });
  });
});

describe("sandbox", () => {
  it("a test key's send is accepted, recorded as sandbox, and never reaches an MX", async () => {
    const before = stack.smtp.messages.length;
    const [res] = await sendgrid(stack.testKey.api_key, stack.edge.url).send(
      mailFor("bob@inbox.test", "Sandboxed"),
    );
    expect(res.statusCode).toBe(202);
    const id = res.headers["x-message-id"]!;
    const message = (await stack.api("GET", `/v3/messages/${id}`, stack.liveKey.api_key)).body;
    expect(message).toMatchObject({ id, status: "sandbox", mode: "sandbox", events: [] });

    // A live message sent after it is delivered; by then the sandbox one would have arrived first.
    const [live] = await sendgrid(stack.liveKey.api_key, stack.edge.url).send(
      mailFor("carol@inbox.test", "After sandbox"),
    );
    await stack.waitForStatus(live.headers["x-message-id"]!, ["delivered"]);
    const rcpts = stack.smtp.messages.slice(before).flatMap((m) => m.rcptTo);
    expect(rcpts).toContain("carol@inbox.test");
    expect(rcpts).not.toContain("bob@inbox.test");
  });
});

describe("SMTP outcomes", () => {
  it("a 4xx is deferred, retried by the hub's alarm, then delivered", async () => {
    const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [{ to: [{ email: "dave@greylist.test" }] }],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: "Greylisted once",
      content: [{ type: "text/plain", value: "x" }],
    });
    expect(r.status).toBe(202);
    const message = await stack.waitForStatus(r.body.message_id, ["delivered", "bounced", "failed"]);
    expect(message.status).toBe("delivered");
    const types = message.events.map((e: { event_type: string }) => e.event_type);
    expect(types).toEqual(["processed", "deferred", "delivered"]);
    expect(message.events[1].metadata).toMatchObject({ smtp_code: 451, status: "4.7.1", attempt: 1 });
    expect(message.events[2].metadata).toMatchObject({ attempt: 2 });
    expect(message).toMatchObject({ dispatches: 2, deferrals: 1 });
  });

  it("a 5xx 5.1.1 bounces hard with the server's reason", async () => {
    const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [{ to: [{ email: "nobody@unknown-user.test" }] }],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: "Bounce me",
      content: [{ type: "text/plain", value: "x" }],
    });
    const message = await stack.waitForStatus(r.body.message_id, ["delivered", "bounced", "failed"]);
    expect(message.status).toBe("bounced");
    expect(message.events.map((e: { event_type: string }) => e.event_type)).toEqual(["processed", "bounce"]);
    expect(message.events[1].metadata).toMatchObject({
      bounce_type: "hard",
      smtp_code: 550,
      status: "5.1.1",
    });
    expect(message.error_message).toContain("User unknown");
  });

  it("several personalizations become several messages with message_ids", async () => {
    const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [
        { to: [{ email: "p1@inbox.test" }] },
        { to: [{ email: "p2@inbox.test" }], subject: "Second" },
      ],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: "First",
      content: [{ type: "text/plain", value: "x" }],
    });
    expect(r.status).toBe(202);
    expect(r.body.message_ids).toHaveLength(2);
    const [a, b] = await Promise.all(
      r.body.message_ids.map((id: string) => stack.waitForStatus(id, ["delivered"])),
    );
    expect([a.subject, b.subject]).toEqual(["First", "Second"]);
  });
});

describe("outbox", () => {
  it("a message accepted while no origin is connected is delivered once one connects", async () => {
    await stack.stopOrigin();
    const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [{ to: [{ email: "erin@inbox.test" }] }],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: "Waited in the outbox",
      content: [{ type: "text/plain", value: "x" }],
    });
    expect(r.status).toBe(202);
    // The signal that the hub has handled it: the list reads only the D1 catalog, which the shard
    // writes after it looked for a link to dispatch to at accept and found none. Listed and still
    // queued, never dispatched: it waits in the outbox (docs/architecture.md, the path of one message).
    const q = `/v3/messages?subject=${encodeURIComponent("Waited in the outbox")}`;
    const until = Date.now() + 10_000;
    let listed = (await stack.api("GET", q, stack.liveKey.api_key)).body;
    while (listed.total === 0 && Date.now() < until) {
      await new Promise((res) => setTimeout(res, 50));
      listed = (await stack.api("GET", q, stack.liveKey.api_key)).body;
    }
    expect(listed.messages.map((m: { id: string; status: string }) => [m.id, m.status])).toEqual([
      [r.body.message_id, "queued"],
    ]);
    const waiting = (await stack.api("GET", `/v3/messages/${r.body.message_id}`, stack.liveKey.api_key)).body;
    expect(waiting).toMatchObject({ status: "queued", dispatches: 0 });

    await stack.startOrigin();
    const message = await stack.waitForStatus(r.body.message_id, ["delivered"]);
    expect(message.events.map((e: { event_type: string }) => e.event_type)).toEqual([
      "processed",
      "delivered",
    ]);
    expect(stack.smtp.messages.some((m) => m.rcptTo.includes("erin@inbox.test"))).toBe(true);
  });
});
