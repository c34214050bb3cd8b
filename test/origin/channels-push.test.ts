/**
 * The mobile push adapters against loopback fakes of their providers (origin/src/channels/):
 *  - FCM HTTP v1: the fake token endpoint verifies the service account's JWT bearer assertion with
 *    the account's public key (iss, scope, aud, exp) before it issues an access token; the fake FCM
 *    checks that token and the v1 message. The token is cached across sends and renewed after a 401.
 *  - APNs over HTTP/2 (cleartext on loopback): the fake verifies the ES256 provider token against the
 *    .p8 key's public half (kid, iss), the apns-* headers and the aps payload; one token is reused
 *    and one session carries every request; ExpiredProviderToken makes a fresh token.
 *  - Expo: the JSON message array and the access token; tickets map to outcomes.
 */
import { generateKeyPairSync } from "node:crypto";
import { importSPKI, jwtVerify, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChannelRunner, channelConfig, type ChannelRunner } from "../../origin/src/channels/index.ts";
import { ChannelJobSchema, type ChannelJob } from "../../shared/link/channel-job.ts";
import { startFakeHttp, startFakeHttp2, type FakeServer } from "../helpers/channel-fakes.ts";

const soon = () => ({ deadlineAt: Date.now() + 10_000 });

function pushJob(provider: Record<string, unknown>, token = "device-token-1"): ChannelJob {
  return ChannelJobSchema.parse({
    jobId: `msg_push.${Math.floor(Math.random() * 1e6) + 1}`,
    messageId: "msg_push",
    tenantId: "t1",
    attempt: 1,
    recipients: [token],
    channel: "push",
    target: { token },
    content: {
      title: "Order shipped",
      body: "Your order #42 is on its way",
      data: { orderId: "42" },
      badge: 3,
      sound: "default",
    },
    provider,
  });
}

describe("FCM HTTP v1", () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const privateKey = rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const publicPem = rsa.publicKey.export({ type: "spki", format: "pem" }).toString();
  const provider = {
    kind: "fcm",
    projectId: "acme-app",
    clientEmail: "fcm-sender@acme-app.iam.gserviceaccount.com",
    privateKey,
  };
  let tokenServer: FakeServer;
  let fcm: FakeServer;
  let runner: ChannelRunner;
  let issued = 0;
  let publicKey: CryptoKey;

  beforeAll(async () => {
    publicKey = await importSPKI(publicPem, "RS256");
    tokenServer = await startFakeHttp(async (req) => {
      const form = new URLSearchParams(req.body.toString());
      if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer")
        return { status: 400, body: { error: "unsupported_grant_type" } };
      try {
        const { payload } = await jwtVerify(form.get("assertion")!, publicKey, {
          issuer: provider.clientEmail,
          audience: `${tokenServer.url}/token`,
          algorithms: ["RS256"],
        });
        if (payload.scope !== "https://www.googleapis.com/auth/firebase.messaging") throw new Error("scope");
        if ((payload.exp ?? 0) - (payload.iat ?? 0) > 3600) throw new Error("exp");
      } catch (err) {
        return { status: 400, body: { error: "invalid_grant", error_description: String(err) } };
      }
      issued++;
      return {
        status: 200,
        body: { access_token: `ya29.token-${issued}`, expires_in: 3599, token_type: "Bearer" },
      };
    });
    fcm = await startFakeHttp();
    runner = createChannelRunner(
      channelConfig({ CHANNEL_FCM_API_URL: fcm.url, CHANNEL_FCM_TOKEN_URL: `${tokenServer.url}/token` }),
    );
  });
  afterAll(async () => {
    runner.close();
    await tokenServer.close();
    await fcm.close();
  });

  it("exchanges a signed JWT for an access token, then sends the v1 message with it", async () => {
    fcm.handle((req) =>
      req.headers.authorization === "Bearer ya29.token-1"
        ? { status: 200, body: { name: "projects/acme-app/messages/0:1700000000000000%abc" } }
        : { status: 401, body: { error: { code: 401, status: "UNAUTHENTICATED", message: "bad token" } } },
    );
    const [outcome] = await runner.run(pushJob(provider), soon());
    expect(outcome).toMatchObject({
      status: "delivered",
      providerMessageId: "projects/acme-app/messages/0:1700000000000000%abc",
    });
    const req = fcm.requests.at(-1)!;
    expect(req.path).toBe("/v1/projects/acme-app/messages:send");
    expect(JSON.parse(req.body.toString())).toEqual({
      message: {
        token: "device-token-1",
        notification: { title: "Order shipped", body: "Your order #42 is on its way" },
        data: { orderId: "42" },
        android: { notification: { sound: "default" } },
        apns: { payload: { aps: { badge: 3, sound: "default" } } },
      },
    });
  });

  it("reuses the cached token for the next sends", async () => {
    const before = tokenServer.requests.length;
    await runner.run(pushJob(provider), soon());
    await runner.run(pushJob(provider), soon());
    expect(tokenServer.requests.length).toBe(before);
  });

  it("after a 401 from FCM fetches one fresh token and tries once more", async () => {
    fcm.handle((req) =>
      req.headers.authorization === "Bearer ya29.token-2"
        ? { status: 200, body: { name: "projects/acme-app/messages/2" } }
        : { status: 401, body: { error: { code: 401, status: "UNAUTHENTICATED", message: "expired" } } },
    );
    const [outcome] = await runner.run(pushJob(provider), soon());
    expect(outcome).toMatchObject({ status: "delivered", providerMessageId: "projects/acme-app/messages/2" });
    expect(issued).toBe(2);
  });

  it("maps UNREGISTERED to bounced + gone, QUOTA_EXCEEDED 429 to a timed deferral", async () => {
    fcm.handle(() => ({
      status: 404,
      body: {
        error: {
          code: 404,
          message: "Requested entity was not found.",
          status: "NOT_FOUND",
          details: [
            { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "UNREGISTERED" },
          ],
        },
      },
    }));
    expect((await runner.run(pushJob(provider), soon()))[0]).toMatchObject({
      status: "bounced",
      bounceType: "hard",
      gone: true,
    });
    fcm.handle(() => ({
      status: 429,
      headers: { "retry-after": "30" },
      body: {
        error: {
          code: 429,
          status: "RESOURCE_EXHAUSTED",
          message: "quota",
          details: [
            { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "QUOTA_EXCEEDED" },
          ],
        },
      },
    }));
    expect((await runner.run(pushJob(provider), soon()))[0]).toMatchObject({
      status: "deferred",
      retryAfterMs: 30_000,
    });
  });

  it("fails the job when the token endpoint refuses the service account (a key it does not know)", async () => {
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const wrongKey = {
      ...provider,
      privateKey: other.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    };
    const fcmBefore = fcm.requests.length;
    const [outcome] = await runner.run(pushJob(wrongKey), soon());
    expect(outcome).toMatchObject({ status: "failed" });
    expect(outcome!.response).toContain("invalid_grant");
    expect(fcm.requests.length).toBe(fcmBefore);
  });

  it("fails, without a request, a private key that is not PKCS#8", async () => {
    const before = tokenServer.requests.length;
    const [outcome] = await runner.run(pushJob({ ...provider, privateKey: "not a key" }), soon());
    expect(outcome).toMatchObject({ status: "failed" });
    expect(tokenServer.requests.length).toBe(before);
  });
});

describe("APNs (HTTP/2, token auth)", () => {
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const p8 = ec.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const publicPem = ec.publicKey.export({ type: "spki", format: "pem" }).toString();
  const provider = {
    kind: "apns",
    teamId: "TEAM123456",
    keyId: "KEY1234567",
    privateKey: p8,
    topic: "com.acme.app",
    environment: "sandbox",
  };
  let apns: Awaited<ReturnType<typeof startFakeHttp2>>;
  let production: Awaited<ReturnType<typeof startFakeHttp2>>;
  let runner: ChannelRunner;
  let publicKey: CryptoKey;
  const tokensSeen = new Set<string>();

  /** The fake's check of the provider token: ES256 against the key's public half, kid and iss. */
  async function verifies(authorization: string | undefined): Promise<boolean> {
    const jwt = authorization?.replace(/^bearer /, "") ?? "";
    try {
      const { payload } = await jwtVerify(jwt, publicKey, { issuer: provider.teamId, algorithms: ["ES256"] });
      if (decodeProtectedHeader(jwt).kid !== provider.keyId || typeof payload.iat !== "number") return false;
      tokensSeen.add(jwt);
      return true;
    } catch {
      return false;
    }
  }

  beforeAll(async () => {
    publicKey = await importSPKI(publicPem, "ES256");
    apns = await startFakeHttp2();
    production = await startFakeHttp2(() => ({ status: 200, headers: { "apns-id": "PROD" } }));
    runner = createChannelRunner(
      channelConfig({ CHANNEL_APNS_SANDBOX_URL: apns.url, CHANNEL_APNS_URL: production.url }),
    );
  });
  afterAll(async () => {
    runner.close();
    await apns.close();
    await production.close();
  });

  it("POSTs /3/device/<token> with a verified provider token, the apns headers and the aps payload", async () => {
    apns.handle(async (req) =>
      (await verifies(req.headers.authorization))
        ? { status: 200, headers: { "apns-id": "EC1BF194-B3B2-424A-89A9-5A918A6E6B5D" } }
        : { status: 403, body: { reason: "InvalidProviderToken" } },
    );
    const token = "a".repeat(64);
    const [outcome] = await runner.run(pushJob(provider, token), soon());
    expect(outcome).toMatchObject({
      status: "delivered",
      providerMessageId: "EC1BF194-B3B2-424A-89A9-5A918A6E6B5D",
    });
    const req = apns.requests.at(-1)!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe(`/3/device/${token}`);
    expect(req.headers["apns-topic"]).toBe("com.acme.app");
    expect(req.headers["apns-push-type"]).toBe("alert");
    expect(req.headers["apns-priority"]).toBe("10");
    expect(JSON.parse(req.body.toString())).toEqual({
      orderId: "42",
      aps: {
        alert: { title: "Order shipped", body: "Your order #42 is on its way" },
        badge: 3,
        sound: "default",
      },
    });
    expect(production.requests.length).toBe(0); // environment: sandbox
  });

  it("reuses one provider token and one HTTP/2 session for later sends", async () => {
    await runner.run(pushJob(provider, "b".repeat(64)), soon());
    await runner.run(pushJob(provider, "c".repeat(64)), soon());
    expect(tokensSeen.size).toBe(1);
    expect(apns.sessions).toBe(1);
  });

  it("makes a fresh token when APNs answers ExpiredProviderToken, and retries once", async () => {
    const expired = [...tokensSeen][0]!;
    apns.handle(async (req) => {
      if (req.headers.authorization === `bearer ${expired}`)
        return { status: 403, body: { reason: "ExpiredProviderToken" } };
      return (await verifies(req.headers.authorization))
        ? { status: 200, headers: { "apns-id": "FRESH" } }
        : { status: 403, body: { reason: "InvalidProviderToken" } };
    });
    await new Promise((r) => setTimeout(r, 1_100)); // a later iat than the first token's
    const [outcome] = await runner.run(pushJob(provider), soon());
    expect(outcome).toMatchObject({ status: "delivered", providerMessageId: "FRESH" });
    expect(tokensSeen.size).toBe(2);
  });

  it("maps 410 Unregistered and 400 BadDeviceToken to bounced + gone, 429 to deferred, 403 to failed", async () => {
    apns.handle(() => ({ status: 410, body: { reason: "Unregistered", timestamp: 1700000000000 } }));
    expect((await runner.run(pushJob(provider), soon()))[0]).toMatchObject({ status: "bounced", gone: true });
    apns.handle(() => ({ status: 400, body: { reason: "BadDeviceToken" } }));
    expect((await runner.run(pushJob(provider), soon()))[0]).toMatchObject({ status: "bounced", gone: true });
    apns.handle(() => ({ status: 429, body: { reason: "TooManyRequests" } }));
    expect((await runner.run(pushJob(provider), soon()))[0]!.status).toBe("deferred");
    apns.handle(() => ({ status: 403, body: { reason: "InvalidProviderToken" } }));
    const [denied] = await runner.run(pushJob(provider), soon());
    expect(denied).toMatchObject({ status: "failed" });
    expect(denied!.response).toContain("InvalidProviderToken");
  });

  it("defers, without hanging, when the APNs host refuses the connection", async () => {
    const dead = await startFakeHttp2();
    const url = dead.url;
    await dead.close();
    const r = createChannelRunner(channelConfig({ CHANNEL_APNS_SANDBOX_URL: url }));
    const started = Date.now();
    const [outcome] = await r.run(pushJob(provider), soon());
    r.close();
    expect(outcome!.status).toBe("deferred");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("defers an APNs that does not answer within the job's deadline", async () => {
    apns.handle(() => new Promise((res) => setTimeout(() => res({ status: 200 }), 2_000)));
    const [outcome] = await runner.run(pushJob(provider), { deadlineAt: Date.now() + 300 });
    expect(outcome).toMatchObject({ status: "deferred" });
    expect(outcome!.response).toMatch(/timed out/);
  });

  it("sends environment production to the production host", async () => {
    const [outcome] = await runner.run(pushJob({ ...provider, environment: "production" }), soon());
    expect(outcome).toMatchObject({ status: "delivered", providerMessageId: "PROD" });
    expect(production.requests.length).toBe(1);
  });
});

describe("Expo", () => {
  let expo: FakeServer;
  let runner: ChannelRunner;
  beforeAll(async () => {
    expo = await startFakeHttp();
    runner = createChannelRunner(channelConfig({ CHANNEL_EXPO_API_URL: expo.url }));
  });
  afterAll(async () => {
    runner.close();
    await expo.close();
  });
  const token = "ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]";

  it("POSTs the message array with the access token and reports the ticket id", async () => {
    expo.handle(() => ({
      status: 200,
      body: { data: [{ status: "ok", id: "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX" }] },
    }));
    const [outcome] = await runner.run(pushJob({ kind: "expo", accessToken: "expo-access" }, token), soon());
    const req = expo.requests.at(-1)!;
    expect(req.path).toBe("/--/api/v2/push/send");
    expect(req.headers.authorization).toBe("Bearer expo-access");
    expect(JSON.parse(req.body.toString())).toEqual([
      {
        to: token,
        title: "Order shipped",
        body: "Your order #42 is on its way",
        data: { orderId: "42" },
        sound: "default",
        badge: 3,
      },
    ]);
    expect(outcome).toMatchObject({
      status: "delivered",
      providerMessageId: "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX",
    });
  });

  it("sends no Authorization without an access token; maps DeviceNotRegistered, 429 and a 401", async () => {
    expo.handle(() => ({
      status: 200,
      body: {
        data: [
          {
            status: "error",
            message: `"${token}" is not a registered push notification recipient`,
            details: { error: "DeviceNotRegistered" },
          },
        ],
      },
    }));
    const [gone] = await runner.run(pushJob({ kind: "expo" }, token), soon());
    expect(expo.requests.at(-1)!.headers.authorization).toBeUndefined();
    expect(gone).toMatchObject({ status: "bounced", gone: true });
    expo.handle(() => ({
      status: 429,
      headers: { "retry-after": "2" },
      body: { errors: [{ code: "TOO_MANY_REQUESTS", message: "slow down" }] },
    }));
    expect((await runner.run(pushJob({ kind: "expo" }, token), soon()))[0]).toMatchObject({
      status: "deferred",
      retryAfterMs: 2_000,
    });
    expo.handle(() => ({
      status: 401,
      body: { errors: [{ code: "UNAUTHORIZED", message: "bad access token" }] },
    }));
    expect(
      (await runner.run(pushJob({ kind: "expo", accessToken: "wrong" }, token), soon()))[0]!.status,
    ).toBe("failed");
  });
});
