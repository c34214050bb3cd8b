/**
 * The SMS adapters (origin/src/channels/sms-twilio.ts, sms-vonage.ts) against loopback fakes that
 * speak Twilio's Messages API and Vonage's SMS API: what we sent (the form fields, Twilio's basic
 * auth, Vonage's key and secret, E.164 without "+") and how each answer maps to an outcome
 * (docs/channels.md#outcomes).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChannelRunner, channelConfig, type ChannelRunner } from "../../origin/src/channels/index.ts";
import { ChannelJobSchema, type ChannelJob } from "../../shared/link/channel-job.ts";
import { startFakeHttp, type FakeServer } from "../helpers/channel-fakes.ts";

let twilio: FakeServer;
let vonage: FakeServer;
let runner: ChannelRunner;

beforeAll(async () => {
  twilio = await startFakeHttp();
  vonage = await startFakeHttp();
  runner = createChannelRunner(
    channelConfig({ CHANNEL_TWILIO_API_URL: twilio.url, CHANNEL_VONAGE_API_URL: vonage.url }),
  );
});
afterAll(async () => {
  runner.close();
  await twilio.close();
  await vonage.close();
});

const soon = () => ({ deadlineAt: Date.now() + 10_000 });

function twilioJob(provider: Record<string, unknown> = {}): ChannelJob {
  return ChannelJobSchema.parse({
    jobId: "msg_sms1.1",
    messageId: "msg_sms1",
    tenantId: "t1",
    attempt: 1,
    recipients: ["+14155550123"],
    channel: "sms",
    target: { to: "+14155550123" },
    content: { body: "Your code is 123456" },
    provider: {
      kind: "twilio",
      accountSid: "AC0123456789abcdef0123456789abcdef",
      authToken: "s3cret-token",
      from: "+15005550006",
      ...provider,
    },
  });
}

function vonageJob(body = "Your code is 123456"): ChannelJob {
  return ChannelJobSchema.parse({
    jobId: "msg_sms2.1",
    messageId: "msg_sms2",
    tenantId: "t1",
    attempt: 1,
    recipients: ["+447700900000"],
    channel: "sms",
    target: { to: "+447700900000" },
    content: { body },
    provider: { kind: "vonage", apiKey: "abcd1234", apiSecret: "vonage-secret", from: "AcmeInc" },
  });
}

describe("Twilio", () => {
  it("POSTs the form to the account's Messages resource with basic auth and reports the SID", async () => {
    twilio.handle(() => ({
      status: 201,
      body: { sid: "SM0123456789abcdef0123456789abcdef", status: "queued", to: "+14155550123" },
    }));
    const before = twilio.requests.length;
    const [outcome] = await runner.run(twilioJob(), soon());
    const req = twilio.requests[before]!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe("/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json");
    expect(req.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    const [user, pass] = Buffer.from(req.headers.authorization!.replace(/^Basic /, ""), "base64")
      .toString()
      .split(":");
    expect([user, pass]).toEqual(["AC0123456789abcdef0123456789abcdef", "s3cret-token"]);
    const form = Object.fromEntries(new URLSearchParams(req.body.toString()));
    expect(form).toEqual({ To: "+14155550123", From: "+15005550006", Body: "Your code is 123456" });
    expect(outcome).toMatchObject({
      recipient: "+14155550123",
      status: "delivered",
      providerMessageId: "SM0123456789abcdef0123456789abcdef",
    });
  });

  it("reports the `sending` stage before the provider request", async () => {
    const seen: string[] = [];
    twilio.handle(() => {
      seen.push("request");
      return { status: 201, body: { sid: "SMstage" } };
    });
    await runner.run(twilioJob(), { ...soon(), onStage: (stage) => seen.push(stage) });
    expect(seen).toEqual(["sending", "request"]);
  });

  it("sends MessagingServiceSid instead of From when the connection names a service", async () => {
    twilio.handle(() => ({ status: 201, body: { sid: "SMx", status: "accepted" } }));
    const before = twilio.requests.length;
    await runner.run(twilioJob({ from: undefined, messagingServiceSid: "MG0123" }), soon());
    const form = Object.fromEntries(new URLSearchParams(twilio.requests[before]!.body.toString()));
    expect(form.MessagingServiceSid).toBe("MG0123");
    expect(form.From).toBeUndefined();
  });

  it("maps 429 with Retry-After to a timed deferral, 503 to a deferral", async () => {
    twilio.handle(() => ({
      status: 429,
      headers: { "retry-after": "7" },
      body: { code: 20429, message: "Too Many Requests", status: 429 },
    }));
    const [throttled] = await runner.run(twilioJob(), soon());
    expect(throttled).toMatchObject({ status: "deferred", retryAfterMs: 7_000 });
    expect(throttled!.response).toContain("20429");
    twilio.handle(() => ({ status: 503, body: "upstream unavailable" }));
    const [down] = await runner.run(twilioJob(), soon());
    expect(down!.status).toBe("deferred");
    expect(down!.retryAfterMs).toBeUndefined();
  });

  it("maps an invalid number to a hard bounce, STOP to a block, bad credentials to failed", async () => {
    twilio.handle(() => ({
      status: 400,
      body: {
        code: 21211,
        message: "The 'To' number +14155550123 is not a valid phone number.",
        status: 400,
      },
    }));
    expect((await runner.run(twilioJob(), soon()))[0]).toMatchObject({
      status: "bounced",
      bounceType: "hard",
    });
    twilio.handle(() => ({
      status: 400,
      body: { code: 21610, message: "Attempt to send to unsubscribed recipient", status: 400 },
    }));
    expect((await runner.run(twilioJob(), soon()))[0]).toMatchObject({
      status: "bounced",
      bounceType: "block",
    });
    twilio.handle(() => ({ status: 401, body: { code: 20003, message: "Authenticate", status: 401 } }));
    const [denied] = await runner.run(twilioJob(), soon());
    expect(denied).toMatchObject({ status: "failed" });
    expect(denied!.response).toContain("20003");
  });

  it("defers when nothing answers (connection refused), never throws", async () => {
    const gone = await startFakeHttp();
    const url = gone.url;
    await gone.close(); // nothing listens on its port any more
    const dead = createChannelRunner(channelConfig({ CHANNEL_TWILIO_API_URL: url }));
    const [outcome] = await dead.run(twilioJob(), soon());
    expect(outcome!.status).toBe("deferred");
    expect(outcome!.response).toMatch(/ECONNREFUSED/);
  });

  it("defers a provider slower than the job's deadline", async () => {
    twilio.handle(
      () => new Promise((r) => setTimeout(() => r({ status: 201, body: { sid: "SMlate" } }), 1_500)),
    );
    const started = Date.now();
    const [outcome] = await runner.run(twilioJob(), { deadlineAt: Date.now() + 300 });
    expect(Date.now() - started).toBeLessThan(1_400);
    expect(outcome).toMatchObject({ status: "deferred" });
    expect(outcome!.response).toMatch(/timed out/);
  });
});

describe("Vonage", () => {
  it("POSTs api_key, api_secret, from, to without + and text, and reports the message-id", async () => {
    vonage.handle(() => ({
      status: 200,
      body: {
        "message-count": "1",
        messages: [
          { to: "447700900000", "message-id": "0C000000217B7F02", status: "0", "remaining-balance": "15.5" },
        ],
      },
    }));
    const before = vonage.requests.length;
    const [outcome] = await runner.run(vonageJob(), soon());
    const req = vonage.requests[before]!;
    expect(req.path).toBe("/sms/json");
    expect(Object.fromEntries(new URLSearchParams(req.body.toString()))).toEqual({
      api_key: "abcd1234",
      api_secret: "vonage-secret",
      from: "AcmeInc",
      to: "447700900000",
      text: "Your code is 123456",
      type: "text",
    });
    expect(outcome).toMatchObject({ status: "delivered", providerMessageId: "0C000000217B7F02" });
  });

  it("sends text outside ASCII as type=unicode", async () => {
    vonage.handle(() => ({ status: 200, body: { messages: [{ status: "0", "message-id": "X" }] } }));
    const before = vonage.requests.length;
    await runner.run(vonageJob("Código: 123 ✓"), soon());
    const form = new URLSearchParams(vonage.requests[before]!.body.toString());
    expect(form.get("type")).toBe("unicode");
    expect(form.get("text")).toBe("Código: 123 ✓");
  });

  it("maps status codes inside a 200: 1 throttled → deferred, 4 credentials → failed, 6 → bounced", async () => {
    const answer = (status: string, text: string) => () => ({
      status: 200,
      body: { "message-count": "1", messages: [{ status, "error-text": text }] },
    });
    vonage.handle(answer("1", "Throughput Rate Exceeded"));
    expect((await runner.run(vonageJob(), soon()))[0]!.status).toBe("deferred");
    vonage.handle(answer("4", "Bad Credentials"));
    const [creds] = await runner.run(vonageJob(), soon());
    expect(creds).toMatchObject({ status: "failed" });
    expect(creds!.response).toContain("Bad Credentials");
    vonage.handle(answer("6", "Unroutable message - rejected"));
    expect((await runner.run(vonageJob(), soon()))[0]).toMatchObject({
      status: "bounced",
      bounceType: "hard",
    });
  });
});

describe("Vonage, a long text", () => {
  it("is accepted only when every part is", async () => {
    vonage.handle(() => ({
      status: 200,
      body: {
        "message-count": "2",
        messages: [
          { status: "0", "message-id": "P1" },
          { status: "0", "message-id": "P2" },
        ],
      },
    }));
    expect((await runner.run(vonageJob(), soon()))[0]).toMatchObject({
      status: "delivered",
      providerMessageId: "P1",
    });
    vonage.handle(() => ({
      status: 200,
      body: {
        "message-count": "2",
        messages: [
          { status: "0", "message-id": "P1" },
          { status: "1", "error-text": "Throughput Rate Exceeded" },
        ],
      },
    }));
    expect((await runner.run(vonageJob(), soon()))[0]!.status).toBe("deferred");
  });
});

describe("the SMS job schema", () => {
  it("refuses a number that is not E.164 and a Twilio connection with both or neither sender", () => {
    const base = twilioJob();
    expect(ChannelJobSchema.safeParse({ ...base, target: { to: "4155550123" } }).success).toBe(false);
    expect(ChannelJobSchema.safeParse({ ...base, target: { to: "+0155550123" } }).success).toBe(false);
    expect(
      ChannelJobSchema.safeParse({ ...base, provider: { ...base.provider, messagingServiceSid: "MG1" } })
        .success,
    ).toBe(false);
    const { from: _from, ...neither } = base.provider as Record<string, unknown>;
    expect(ChannelJobSchema.safeParse({ ...base, provider: neither }).success).toBe(false);
  });
});
