/**
 * Webhooks end to end with real parts: a message sent through the edge (wrangler dev), delivered by
 * the origin to the loopback SMTP server, and its events POSTed by the tenant's WebhookQueue to a
 * real HTTP receiver on 127.0.0.1, in SendGrid's signed form and in ScaiSend's HMAC form. Names are
 * resolved through the stack's DNS-over-HTTPS server, so the SSRF guard's look-up is the real one;
 * the receiver is reachable only because the edge runs with WEBHOOK_ALLOW_PRIVATE=127.0.0.1.
 *
 * The SendGrid-format signature is checked with SendGrid's own verifier, `@sendgrid/eventwebhook`, fed
 * the public key exactly as `GET /v3/user/webhooks/event/settings/signed` returns it.
 */
import { createHmac } from "node:crypto";
import { EventWebhook } from "@sendgrid/eventwebhook";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

interface Received {
  /** Date.now() when the request's body had arrived. */
  at: number;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let stack: Stack;
let receiver: http.Server;
let receiverUrl = "";
const received: Received[] = [];
let key = "";

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({
        at: Date.now(),
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  stack = await startStack({ edgeVars: { WEBHOOK_ALLOW_PRIVATE: "127.0.0.1" } });
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
  key = (
    await stack.admin.createApiKey(stack.tenantId, {
      name: "webhooks",
      environment: "live",
      scopes: ["webhooks.read", "webhooks.write"],
    })
  ).api_key;
});

afterAll(async () => {
  await stack?.stop();
  await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
});

async function waitFor<T>(fn: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error("timed out waiting for the receiver");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("webhooks", () => {
  it("refuses non-public destinations after a real DoH look-up, and allows what the operator listed", async () => {
    stack.publish({
      "internal.hooks.test": { A: ["10.0.0.5"] },
      "metadata.hooks.test": { A: ["169.254.169.254"] },
      "receiver.hooks.test": { A: ["127.0.0.1"] },
    });
    for (const url of [
      "https://internal.hooks.test/in",
      "https://metadata.hooks.test/latest",
      "https://169.254.169.254/latest",
      "https://10.1.1.1/in",
      "https://[::1]/in",
    ]) {
      const r = await stack.api("POST", "/v3/user/webhooks", key, { url, enabled_events: ["*"] });
      expect(r.status, url).toBe(400);
      expect(r.body.detail, url).toMatch(/^url: .*non-public address/);
    }
    // 127.0.0.1 is on WEBHOOK_ALLOW_PRIVATE: a name resolving to it is allowed, plain http too.
    const ok = await stack.api("POST", "/v3/user/webhooks", key, {
      url: `http://receiver.hooks.test:${new URL(receiverUrl).port}/named`,
      enabled_events: ["processed"],
    });
    expect(ok.status).toBe(201);
    expect((await stack.api("DELETE", `/v3/user/webhooks/${ok.body.id}`, key)).status).toBe(204);
  });

  it("a delivered message's events reach the receiver, signed as SendGrid signs and with ScaiSend's HMAC", async () => {
    const settings = await stack.api("PATCH", "/v3/user/webhooks/event/settings", key, {
      enabled: true,
      url: `${receiverUrl}/sendgrid`,
      processed: true,
      delivered: true,
    });
    expect(settings.status).toBe(200);
    const publicKey = (
      await stack.api("PATCH", "/v3/user/webhooks/event/settings/signed", key, { enabled: true })
    ).body.public_key as string;
    const own = await stack.api("POST", "/v3/user/webhooks", key, {
      url: `${receiverUrl}/own`,
      enabled_events: ["*"],
    });
    expect(own.status).toBe(201);
    const secret = own.body.signing_secret as string;

    const started = Date.now();
    const sent = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [{ to: [{ email: "hooked@inbox.test" }], custom_args: { order: "77" } }],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: "webhook e2e",
      content: [{ type: "text/plain", value: "hello" }],
      categories: ["e2e"],
    });
    expect(sent.status).toBe(202);
    const messageId = sent.headers.get("x-message-id")!;
    const message = await stack.waitForStatus(messageId, ["delivered", "bounced", "failed"]);
    expect(message.status).toBe("delivered");

    const sgEvents = await waitFor(() => {
      const events = received
        .filter((r) => r.path === "/sendgrid")
        .flatMap((r) => (JSON.parse(r.body) as Record<string, unknown>[]).map((e) => ({ e, r })))
        .filter(({ e }) => e["sg_message_id"] === messageId);
      return events.some(({ e }) => e["event"] === "delivered") ? events : undefined;
    });
    const elapsed = Date.now() - started;
    expect(sgEvents.map(({ e }) => e["event"]).sort()).toEqual(["delivered", "processed"]);
    for (const { e, r } of sgEvents) {
      expect(e).toMatchObject({
        email: "hooked@inbox.test",
        category: "e2e",
        order: "77",
        "smtp-id": message.message_id_header,
      });
      const ts = r.headers["x-twilio-email-event-webhook-timestamp"] as string;
      const sig = r.headers["x-twilio-email-event-webhook-signature"] as string;
      const verifier = new EventWebhook();
      const pk = verifier.convertPublicKeyToECDSA(publicKey);
      expect(verifier.verifySignature(pk, r.body, sig, ts)).toBe(true);
      const flipped = Buffer.from(r.body);
      flipped[flipped.length - 5]! ^= 0x01;
      expect(verifier.verifySignature(pk, flipped, sig, ts)).toBe(false);
      expect(verifier.verifySignature(pk, r.body, sig, String(Number(ts) + 1))).toBe(false);
    }
    // The webhook's ids are the timeline's.
    const timelineIds = (message.events as { event_id: string }[]).map((e) => e.event_id);
    for (const { e } of sgEvents) expect(timelineIds).toContain(e["sg_event_id"]);

    const ownEvents = await waitFor(() => {
      const events = received
        .filter((r) => r.path === "/own")
        .flatMap((r) => (JSON.parse(r.body) as Record<string, unknown>[]).map((e) => ({ e, r })))
        .filter(({ e }) => e["message_id"] === messageId);
      return events.length >= 2 ? events : undefined;
    });
    for (const { r } of ownEvents) {
      const ts = r.headers["x-scaisend-timestamp"] as string;
      const mac = createHmac("sha256", secret).update(`${ts}.${r.body}`).digest("hex");
      expect(r.headers["x-scaisend-signature"]).toBe(`sha256=${mac}`);
      expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(300);
    }
    expect(new Set(ownEvents.map(({ e }) => e["event_id"])).size).toBe(ownEvents.length);

    const log = await stack.api("GET", `/v3/user/webhooks/${own.body.id}/deliveries`, key);
    expect(log.status).toBe(200);
    expect(log.body.deliveries.length).toBeGreaterThan(0);
    expect(log.body.deliveries.every((d: { status: string }) => d.status === "succeeded")).toBe(true);
    console.log(`send → delivered event at the receiver: ${elapsed} ms`);
  });

  it("keeps up with delivery: every delivered event of a burst arrives once; delay from the MX's 250 to the POST", async () => {
    const count = 100;
    const since = received.length;
    const sentAt = Date.now();
    const rcpts = Array.from({ length: count }, (_, i) => `burst-${i}@inbox.test`);
    // Ten sends at a time: wrangler dev drops connections under a hundred at once.
    for (let i = 0; i < count; i += 10) {
      await Promise.all(
        rcpts.slice(i, i + 10).map(async (to) => {
          const r = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
            personalizations: [{ to: [{ email: to }] }],
            from: { email: `app@${SENDER_DOMAIN}` },
            subject: "burst",
            content: [{ type: "text/plain", value: "hello" }],
          });
          expect(r.status).toBe(202);
        }),
      );
    }
    const arrivals = new Map<string, number>();
    const ids = new Map<string, number>();
    await waitFor(() => {
      for (const r of received.slice(since)) {
        if (r.path !== "/own" || (r as Received & { seen?: true }).seen) continue;
        (r as Received & { seen?: true }).seen = true;
        for (const e of JSON.parse(r.body) as {
          event_type: string;
          recipient_email: string;
          event_id: string;
        }[]) {
          if (e.event_type !== "delivered" || !e.recipient_email.startsWith("burst-")) continue;
          ids.set(e.event_id, (ids.get(e.event_id) ?? 0) + 1);
          if (!arrivals.has(e.recipient_email)) arrivals.set(e.recipient_email, r.at);
        }
      }
      return arrivals.size === count ? true : undefined;
    }, 90_000);
    const accepted = new Map<string, number>();
    for (const m of stack.smtp.messages)
      for (const to of m.rcptTo)
        if (to.startsWith("burst-") && !accepted.has(to)) accepted.set(to, m.acceptedAt);
    const delays = rcpts.map((to) => arrivals.get(to)! - accepted.get(to)!).sort((a, b) => a - b);
    const lastDelivered = Math.max(...accepted.values());
    const lastPosted = Math.max(...arrivals.values());
    expect(
      delays.filter((d) => !(d >= 0)),
      JSON.stringify({ delays, accepted: accepted.size }),
    ).toEqual([]);
    expect([...ids.values()].every((n) => n === 1)).toBe(true);
    const pct = (q: number) => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))]!;
    console.log(
      `burst of ${count}: delivered in ${lastDelivered - sentAt} ms, all delivered events posted by ` +
        `${lastPosted - sentAt} ms; 250 → POST p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${delays.at(-1)} ms`,
    );
  });
});
