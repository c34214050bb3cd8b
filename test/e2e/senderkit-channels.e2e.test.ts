/**
 * A live SenderKit SMS end to end with real parts: a Twilio provider connection made through the
 * admin API, POST /v1/send → edge (wrangler dev) → OriginHub → origin over the WebSocket link as a
 * channel job → the origin's Twilio adapter → a loopback fake of Twilio's Messages API (the origin's
 * CHANNEL_TWILIO_API_URL points at it). The fake sees the connection's credentials (HTTP basic auth)
 * and the message's form fields; the message reaches `sent` with Twilio's SID as its
 * providerMessageId. A provider refusal ends the message `failed` with the provider's answer. And a
 * live web push with a VAPID connection: the origin encrypts the payload for the subscription
 * (RFC 8291) and POSTs it, VAPID-signed (RFC 8292), to a loopback push service over TLS (its
 * certificate from a throw-away CA the test process trusts), which decrypts it with the browser's
 * keys. Every /v1 answer is checked against the OpenAPI document (test/helpers/openapi.ts).
 */
import { createECDH, randomBytes } from "node:crypto";
import https from "node:https";
import type { AddressInfo } from "node:net";
import tls from "node:tls";
import ece from "http_ece";
import webpush from "web-push";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeHttp, type FakeServer } from "../helpers/channel-fakes.ts";
import { senderKitContract } from "../helpers/openapi.ts";
import { createTestCa, type TestCa } from "../helpers/tls-ca.ts";
import { startStack, type Stack } from "./stack.ts";

const sk = senderKitContract();
const ACCOUNT = "AC0123456789abcdef0123456789abcdef";
const TOKEN = "e2e-twilio-auth-token-5678";
let stack: Stack;
let twilio: FakeServer;
let key: string;
// The push service: HTTPS on loopback with a certificate for "localhost" from a CA trusted here.
let ca: TestCa;
let push: https.Server;
let pushUrl: string;
const pushed: { path: string; headers: Record<string, string | string[] | undefined>; body: Buffer }[] = [];

async function v1(method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.apiUrl}${p}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: await sk.check(method, p, res) };
}

async function admin(method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.apiUrl}/api/admin/tenants/${stack.tenantId}${p}`, {
    method,
    headers: { authorization: `Bearer ${stack.secrets.ADMIN_TOKEN}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
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
  twilio = await startFakeHttp();
  ca = createTestCa();
  // The origin runs in this process: its TLS connections trust the test CA besides the system's.
  tls.setDefaultCACertificates([...tls.getCACertificates("default"), ca.cert]);
  push = https.createServer(ca.issue(["localhost"]), (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      pushed.push({ path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(201, { location: `${pushUrl}/message/${pushed.length}` }).end();
    });
  });
  // Both loopback families: "localhost" may resolve to ::1 first.
  await new Promise<void>((resolve) => push.listen(0, "::", resolve));
  pushUrl = `https://localhost:${(push.address() as AddressInfo).port}`;
  stack = await startStack({
    // A loopback endpoint passes the endpoint guard only with CHANNEL_ALLOW_PRIVATE (docs/channels.md).
    originEnv: { CHANNEL_TWILIO_API_URL: twilio.url, CHANNEL_ALLOW_PRIVATE: "true" },
  });
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
  await twilio?.close();
  await new Promise<void>((resolve) => (push ? push.close(() => resolve()) : resolve()));
  ca?.dispose();
});

describe("a live SenderKit SMS", () => {
  it("is 400 provider_not_configured until the workspace has a connection", async () => {
    const r = await v1("POST", "/v1/send", { channel: "sms", to: "+14155550123", content: { body: "hi" } });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("provider_not_configured");
    expect(twilio.requests).toHaveLength(0);
  });

  it("reaches Twilio with the connection's credentials and ends sent with Twilio's SID", async () => {
    const made = await admin("POST", "/provider-connections", {
      channel: "sms",
      provider: "twilio",
      name: "twilio",
      credentials: { account_sid: ACCOUNT, auth_token: TOKEN, from: "+15005550006" },
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    expect(JSON.stringify(made.body)).not.toContain(TOKEN);
    twilio.handle(() => ({
      status: 201,
      body: { sid: "SM11112222333344445555666677778888", status: "queued", to: "+14155550123" },
    }));
    const sent = await v1("POST", "/v1/send", {
      channel: "sms",
      to: "+14155550123",
      content: { body: "Your code is {{code}}" },
      interpolate: true,
      vars: { code: "424242" },
    });
    expect(sent.status).toBe(202);
    const m = await waitFor(sent.body.id, ["sent", "failed"]);
    expect(m.status).toBe("sent");
    expect(m).toMatchObject({
      channel: "sms",
      recipient: "+14155550123",
      provider: "twilio",
      providerConnectionId: made.body.data.id,
      providerMessageId: "SM11112222333344445555666677778888",
      error: null,
    });
    expect(m.timeline.map((t: { e: string }) => t.e)).toEqual(["queued", "sent"]);

    expect(twilio.requests).toHaveLength(1);
    const req = twilio.requests[0]!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe(`/2010-04-01/Accounts/${ACCOUNT}/Messages.json`);
    const [user, pass] = Buffer.from(req.headers.authorization!.replace(/^Basic /, ""), "base64")
      .toString()
      .split(":");
    expect([user, pass]).toEqual([ACCOUNT, TOKEN]);
    const form = new URLSearchParams(req.body.toString("utf8"));
    expect(Object.fromEntries(form)).toEqual({
      To: "+14155550123",
      From: "+15005550006",
      Body: "Your code is 424242",
    });
  });

  it("ends failed with the provider's answer when Twilio refuses the credentials, and is sent once", async () => {
    twilio.handle(() => ({ status: 401, body: { code: 20003, message: "Authenticate", status: 401 } }));
    const before = twilio.requests.length;
    const sent = await v1("POST", "/v1/send", { channel: "sms", to: "+14155550199", content: { body: "x" } });
    expect(sent.status).toBe(202);
    const m = await waitFor(sent.body.id, ["sent", "failed"]);
    expect(m.status).toBe("failed");
    expect(m.error).toContain("20003");
    expect(twilio.requests.length - before).toBe(1);
  });
});

describe("a live SenderKit web push", () => {
  it("is encrypted for the subscription, VAPID-signed and POSTed to its push service; ends sent", async () => {
    const vapid = webpush.generateVAPIDKeys();
    const made = await admin("POST", "/provider-connections", {
      channel: "web-push",
      provider: "vapid",
      name: "vapid",
      credentials: {
        subject: "mailto:ops@example.com",
        public_key: vapid.publicKey,
        private_key: vapid.privateKey,
      },
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    // The browser's side of the subscription (what pushManager.subscribe() makes).
    const ua = createECDH("prime256v1");
    ua.generateKeys();
    const auth = randomBytes(16);
    const subscription = {
      endpoint: `${pushUrl}/push/sub-1`,
      keys: { p256dh: ua.getPublicKey().toString("base64url"), auth: auth.toString("base64url") },
    };
    const sent = await v1("POST", "/v1/send", {
      channel: "web-push",
      to: JSON.stringify(subscription),
      content: { title: "Kettle", body: "Your order shipped", clickUrl: "https://acme.example/orders/1" },
    });
    expect(sent.status, JSON.stringify(sent.body)).toBe(202);
    const m = await waitFor(sent.body.id, ["sent", "failed"]);
    expect(m.status, JSON.stringify(m)).toBe("sent");
    expect(m).toMatchObject({
      channel: "web-push",
      provider: "vapid",
      providerConnectionId: made.body.data.id,
    });
    expect(m.providerMessageId).toBe(`${pushUrl}/message/1`);

    expect(pushed).toHaveLength(1);
    const req = pushed[0]!;
    expect(req.path).toBe("/push/sub-1");
    expect(req.headers["content-encoding"]).toBe("aes128gcm");
    expect(String(req.headers.authorization)).toMatch(new RegExp(`^vapid t=[^,]+, ?k=${vapid.publicKey}$`));
    const plain = ece.decrypt(req.body, {
      version: "aes128gcm",
      privateKey: ua,
      authSecret: auth.toString("base64url"),
    });
    expect(JSON.parse(plain.toString("utf8"))).toEqual({
      title: "Kettle",
      body: "Your order shipped",
      clickUrl: "https://acme.example/orders/1",
    });
  });
});
