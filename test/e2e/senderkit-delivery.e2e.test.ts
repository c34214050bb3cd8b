/**
 * A live SenderKit email end to end with real parts: POST /v1/send → edge (wrangler dev) → OriginHub
 * → origin over the WebSocket link → MX look-up on a loopback DNS server → SMTP sink on loopback;
 * the text part generated from the HTML, the one-click List-Unsubscribe (RFC 8058) and a DKIM
 * signature that mailauth verifies; a recipient unsubscribed in the tenant ends `opted_out` and never
 * reaches the sink; a cancel racing the dispatch has one winner. Every /v1 answer is checked against
 * the OpenAPI document (test/helpers/openapi.ts).
 */
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { senderKitContract } from "../helpers/openapi.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const sk = senderKitContract();
let stack: Stack;
let key: string;

async function v1(method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.apiUrl}${p}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const status = res.status;
  return { status, body: await sk.check(method, p, res) };
}

async function waitFor(id: string, statuses: string[], ms = 30_000): Promise<any> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await v1("GET", `/v1/messages/${id}`);
    if (r.status === 200 && statuses.includes(r.body.status)) return r.body;
    if (Date.now() > end)
      throw new Error(`message ${id} did not reach ${statuses.join("|")}: ${JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

beforeAll(async () => {
  stack = await startStack();
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
  const res = await fetch(`${stack.apiUrl}/api/admin/tenants/${stack.tenantId}/api_keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.secrets.ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "senderkit", environment: "live", format: "senderkit" }),
  });
  expect(res.status).toBe(201);
  key = ((await res.json()) as { data: { api_key: string } }).data.api_key;
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

describe("a live SenderKit email", () => {
  it("is delivered to the recipient's MX: generated text part, one-click List-Unsubscribe, passing DKIM", async () => {
    const before = stack.smtp.messages.length;
    const sent = await v1("POST", "/v1/send", {
      channel: "email",
      to: "ada@inbox.test",
      from: `app@${SENDER_DOMAIN}`,
      content: { subject: "Your receipt, {{name}}", html: "<p>Thanks for your order, <b>{{name}}</b>.</p>" },
      interpolate: true,
      vars: { name: "Ada" },
      metadata: { orderId: "ord_1" },
    });
    expect(sent.status).toBe(202);
    const m = await waitFor(sent.body.id, ["delivered", "failed"]);
    expect(m.status).toBe("delivered");
    expect(m.timeline.map((t: { e: string }) => t.e)).toEqual(["queued", "delivered"]);
    expect(m.latencyMs).toBeGreaterThanOrEqual(0);

    const received = stack.smtp.messages.slice(before).find((x) => x.rcptTo.includes("ada@inbox.test"));
    expect(received).toBeDefined();
    const raw = received!.raw.toString("utf8");
    expect(raw).toContain("Subject: Your receipt, Ada");
    expect(raw).toMatch(/Content-Type: text\/plain/i);
    expect(raw).toMatch(/Thanks for your order, (\*\*)?Ada/);
    // Folded when long (RFC 5322 §2.2.3): CRLF and whitespace may follow the colon.
    expect(raw).toMatch(/^List-Unsubscribe:\s+<https?:\/\/[^>]+\/t\/u\/[^>]+>/m);
    expect(raw).toMatch(/^List-Unsubscribe-Post:\s+List-Unsubscribe=One-Click/m);
    expect(raw).toContain(
      `Message-ID: ${m.providerMessageId.startsWith("<") ? m.providerMessageId : `<${m.providerMessageId}>`}`,
    );
    const dkim = await dkimVerify(received!.raw, { resolver: mailauthResolver(stack.dns.server) });
    expect(dkim.results[0]!.status.result).toBe("pass");
  }, 60_000);

  it("to an address unsubscribed in the tenant ends opted_out and never reaches the MX", async () => {
    const admin = await stack.admin.createApiKey(stack.tenantId, {
      name: "suppressions",
      environment: "live",
      scopes: ["suppressions.write"],
    });
    const unsub = await stack.api("POST", "/v3/asm/suppressions/global", admin.api_key, {
      recipient_emails: ["gone@inbox.test"],
    });
    expect(unsub.status).toBe(201);
    const before = stack.smtp.messages.length;
    const sent = await v1("POST", "/v1/send", {
      channel: "email",
      to: "gone@inbox.test",
      from: `app@${SENDER_DOMAIN}`,
      content: { subject: "Hello", html: "<p>Hello</p>" },
    });
    expect(sent.status).toBe(202);
    const m = await waitFor(sent.body.id, ["opted_out", "delivered", "failed"]);
    expect(m.status).toBe("opted_out");
    expect(stack.smtp.messages.slice(before).some((x) => x.rcptTo.includes("gone@inbox.test"))).toBe(false);
  }, 60_000);

  it("a cancel racing the dispatch has one winner: canceled and never delivered, or 409 and delivered", async () => {
    const outcomes: number[] = [];
    for (let i = 0; i < 6; i++) {
      const to = `race${i}-${Date.now()}@inbox.test`;
      const sent = await v1("POST", "/v1/send", {
        channel: "email",
        to,
        from: `app@${SENDER_DOMAIN}`,
        content: { subject: `race ${i}`, html: "<p>race</p>" },
      });
      await new Promise((r) => setTimeout(r, i * 15));
      const c = await v1("DELETE", `/v1/messages/${sent.body.id}`);
      outcomes.push(c.status);
      const final = await waitFor(sent.body.id, ["canceled", "delivered", "failed"]);
      const reached = stack.smtp.messages.some((x) => x.rcptTo.includes(to));
      if (c.status === 200) {
        expect(c.body).toEqual({ id: sent.body.id, status: "canceled" });
        expect(final.status).toBe("canceled");
        // Give a wrongly dispatched job time to arrive before asserting it never did.
        await new Promise((r) => setTimeout(r, 500));
        expect(stack.smtp.messages.some((x) => x.rcptTo.includes(to))).toBe(false);
      } else {
        expect(c.status).toBe(409);
        expect(c.body.error.code).toBe("not_cancelable");
        expect(final.status).toBe("delivered");
        expect(reached).toBe(true);
      }
    }
    expect(outcomes.every((s) => s === 200 || s === 409)).toBe(true);
  }, 120_000);
});
