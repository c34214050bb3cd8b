/**
 * Web push (origin/src/channels/web-push.ts) against a loopback push service that does what a
 * browser's push service and user agent do between them: it checks the VAPID authorization (RFC
 * 8292: an ES256 JWT verified with the `k` public key, `aud` the endpoint's origin, `sub` the contact,
 * `exp` within 24 hours) and DECRYPTS the aes128gcm body (RFC 8291) with the subscription's private
 * ECDH key and auth secret (http_ece), so the test reads back the plaintext the service worker would
 * get. Plus the outcome mapping (201, 410 gone, 429) and the SSRF guard: without CHANNEL_ALLOW_PRIVATE a
 * loopback endpoint is refused before any connection is made.
 */
import { createECDH, randomBytes } from "node:crypto";
import ece from "http_ece";
import { decodeProtectedHeader, importJWK, jwtVerify } from "jose";
import webpush from "web-push";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChannelRunner, channelConfig, type ChannelRunner } from "../../origin/src/channels/index.ts";
import { ChannelJobSchema, type ChannelJob } from "../../shared/link/channel-job.ts";
import {
  startFakeHttp,
  type FakeAnswer,
  type FakeServer,
  type RecordedRequest,
} from "../helpers/channel-fakes.ts";

const soon = () => ({ deadlineAt: Date.now() + 10_000 });
const b64u = (b: Buffer) => b.toString("base64url");

// The browser's side: its ECDH key pair and auth secret (what pushManager.subscribe() makes).
const ua = createECDH("prime256v1");
ua.generateKeys();
const authSecret = randomBytes(16);
// The connection's VAPID key pair.
const vapid = webpush.generateVAPIDKeys();
const SUBJECT = "mailto:push@acme.example";

let service: FakeServer;
let runner: ChannelRunner;
/** What the push service decrypted, per request. */
const plaintexts: string[] = [];

/** The push service's checks (RFC 8292 §2–3); returns why it refuses, or null. */
async function vapidProblem(req: RecordedRequest, audience: string): Promise<string | null> {
  const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(req.headers.authorization ?? "");
  if (!m) return "no vapid authorization";
  const [, jwt, k] = m;
  const raw = Buffer.from(k!, "base64url");
  if (raw.length !== 65 || raw[0] !== 4) return "k is not an uncompressed P-256 point";
  const key = await importJWK(
    { kty: "EC", crv: "P-256", x: b64u(raw.subarray(1, 33)), y: b64u(raw.subarray(33)) },
    "ES256",
  );
  try {
    const { payload } = await jwtVerify(jwt!, key, { audience, subject: SUBJECT, algorithms: ["ES256"] });
    if (decodeProtectedHeader(jwt!).alg !== "ES256") return "alg";
    if (!payload.exp || payload.exp > Date.now() / 1000 + 86_400) return "exp more than 24 h ahead";
  } catch (err) {
    return String(err);
  }
  return null;
}

beforeAll(async () => {
  service = await startFakeHttp(async (req): Promise<FakeAnswer> => {
    if (!req.path.startsWith("/push/")) return { status: 404 };
    const problem = await vapidProblem(req, service.url);
    if (problem) return { status: 403, body: problem };
    if (req.headers["content-encoding"] !== "aes128gcm") return { status: 415 };
    const plain = ece.decrypt(req.body, {
      version: "aes128gcm",
      privateKey: ua,
      authSecret: b64u(authSecret),
    });
    plaintexts.push(plain.toString("utf8"));
    if (req.path === "/push/gone") return { status: 410, body: "subscription expired" };
    if (req.path === "/push/busy") return { status: 429, headers: { "retry-after": "12" } };
    return { status: 201, headers: { location: `${service.url}/message/${plaintexts.length}` } };
  });
  runner = createChannelRunner(channelConfig({ CHANNEL_ALLOW_PRIVATE: true }));
});
afterAll(async () => {
  runner.close();
  await service.close();
});

function webPushJob(endpoint: string, target: Record<string, unknown> = {}): ChannelJob {
  const subscription = { endpoint, keys: { p256dh: b64u(ua.getPublicKey()), auth: b64u(authSecret) } };
  return ChannelJobSchema.parse({
    jobId: "msg_wp.1",
    messageId: "msg_wp",
    tenantId: "t1",
    attempt: 1,
    recipients: [JSON.stringify(subscription)],
    channel: "web-push",
    target: { subscription, ...target },
    content: {
      title: "Price drop",
      body: "The kettle you watch is now €39 🎉",
      icon: "https://acme.example/icon.png",
      clickUrl: "https://acme.example/kettle",
      data: { sku: "K-1" },
    },
    provider: { kind: "vapid", subject: SUBJECT, publicKey: vapid.publicKey, privateKey: vapid.privateKey },
  });
}

describe("web push", () => {
  it("delivers a payload the push service decrypts with the subscription's keys, VAPID verified", async () => {
    const [outcome] = await runner.run(
      webPushJob(`${service.url}/push/abc`, { ttl: 3600, urgency: "high", topic: "kettle" }),
      soon(),
    );
    expect(outcome).toMatchObject({ status: "delivered", providerMessageId: `${service.url}/message/1` });
    expect(JSON.parse(plaintexts[0]!)).toEqual({
      title: "Price drop",
      body: "The kettle you watch is now €39 🎉",
      icon: "https://acme.example/icon.png",
      clickUrl: "https://acme.example/kettle",
      data: { sku: "K-1" },
    });
    const req = service.requests.at(-1)!;
    expect(req.headers.ttl).toBe("3600");
    expect(req.headers.urgency).toBe("high");
    expect(req.headers.topic).toBe("kettle");
  });

  it("a push service that refuses the VAPID signature fails the job (the connection's keys are wrong)", async () => {
    const other = webpush.generateVAPIDKeys();
    const job = webPushJob(`${service.url}/push/abc`);
    const [outcome] = await runner.run(
      {
        ...job,
        provider: {
          kind: "vapid",
          subject: SUBJECT,
          publicKey: vapid.publicKey,
          privateKey: other.privateKey,
        },
      } as ChannelJob,
      soon(),
    );
    expect(outcome).toMatchObject({ status: "failed" });
    expect(outcome!.response).toContain("403");
  });

  it("maps 410 to bounced + gone and 429 to a timed deferral", async () => {
    expect((await runner.run(webPushJob(`${service.url}/push/gone`), soon()))[0]).toMatchObject({
      status: "bounced",
      bounceType: "hard",
      gone: true,
    });
    expect((await runner.run(webPushJob(`${service.url}/push/busy`), soon()))[0]).toMatchObject({
      status: "deferred",
      retryAfterMs: 12_000,
    });
  });
});

describe("the endpoint guard (SSRF)", () => {
  const guarded = createChannelRunner(channelConfig());

  it("refuses a loopback endpoint without CHANNEL_ALLOW_PRIVATE, before connecting", async () => {
    const before = service.requests.length;
    const port = new URL(service.url).port;
    for (const endpoint of [
      `https://127.0.0.1:${port}/push/abc`,
      `https://localhost:${port}/push/abc`,
      `https://[::ffff:127.0.0.1]:${port}/push/abc`,
      `https://169.254.169.254/latest/meta-data`,
      `https://10.1.2.3/push`,
    ]) {
      const [outcome] = await guarded.run(webPushJob(endpoint), soon());
      expect(outcome, endpoint).toMatchObject({ status: "bounced", bounceType: "hard" });
      expect(outcome!.response, endpoint).toMatch(
        /endpoint refused: .*(loopback|link-local|metadata|private)/,
      );
      expect(outcome!.gone).toBeUndefined();
    }
    expect(service.requests.length).toBe(before);
  });

  it("refuses http:// and credentials in the URL", async () => {
    const [plain] = await guarded.run(webPushJob(`${service.url}/push/abc`), soon());
    expect(plain!.response).toMatch(/must be https/);
    const [creds] = await guarded.run(webPushJob("https://user:pw@push.example.com/x"), soon());
    expect(creds!.response).toMatch(/credentials/);
  });
});
