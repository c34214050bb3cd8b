/**
 * Scheduling end to end (docs/api/sendgrid.md#scheduling-and-batches), through wrangler dev, the
 * hub and a real origin to the loopback MX, driven by the official @sendgrid/client: a send_at a few
 * seconds ahead reaches the sink only once its time has come; a batch cancelled before its send_at
 * never reaches it (status cancelled); a paused batch waits past its send_at until it is resumed.
 */
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const require = createRequire(import.meta.url);
// The package exports a singleton; one instance of its class per test file keeps it ours.
const Client = require("@sendgrid/client/src/classes/client.js") as new () => {
  setApiKey(key: string): void;
  setDefaultRequest(k: string, v: string): void;
  request(req: {
    method: string;
    url: string;
    body?: unknown;
  }): Promise<[{ statusCode: number; headers: Record<string, string> }, any]>;
};

let stack: Stack;
let client: InstanceType<typeof Client>;

beforeAll(async () => {
  stack = await startStack();
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
  const key = await stack.admin.createApiKey(stack.tenantId, {
    name: "scheduler",
    environment: "live",
    scopes: ["mail.send", "mail.schedule", "mail.cancel"],
  });
  client = new Client();
  client.setApiKey(key.api_key);
  client.setDefaultRequest("baseUrl", `${stack.apiUrl}/`);
});

afterAll(async () => {
  await stack?.stop();
});

const nowSeconds = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function send(to: string, extra: Record<string, unknown>): Promise<string> {
  const [res] = await client.request({
    method: "POST",
    url: "/v3/mail/send",
    body: {
      personalizations: [{ to: [{ email: to }] }],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: `scheduled for ${to}`,
      content: [{ type: "text/plain", value: "later" }],
      ...extra,
    },
  });
  expect(res.statusCode).toBe(202);
  return res.headers["x-message-id"]!;
}

const arrivedFor = (to: string) => stack.smtp.messages.filter((m) => m.rcptTo.includes(to));

async function newBatch(): Promise<string> {
  const [res, body] = await client.request({ method: "POST", url: "/v3/mail/batch" });
  expect(res.statusCode).toBe(201);
  return body.batch_id as string;
}

describe("scheduled sends through the stack", () => {
  it("a send_at a few seconds ahead arrives only after its time", async () => {
    const at = nowSeconds() + 4;
    const id = await send("later@inbox.test", { send_at: at });
    const queued = await stack.api("GET", `/v3/messages/${id}`, stack.liveKey.api_key);
    expect(queued.body.status).toBe("queued");
    const done = await stack.waitForStatus(id, ["delivered", "bounced", "failed"], 30_000);
    expect(done.status).toBe("delivered");
    const [mail] = arrivedFor("later@inbox.test");
    expect(mail).toBeDefined();
    expect(mail!.acceptedAt).toBeGreaterThanOrEqual(at * 1000);
  });

  it("a batch cancelled before its send_at never arrives; its messages end cancelled", async () => {
    const batchId = await newBatch();
    const at = nowSeconds() + 5;
    const ids = [
      await send("cancelled-1@inbox.test", { send_at: at, batch_id: batchId }),
      await send("cancelled-2@inbox.test", { send_at: at, batch_id: batchId }),
    ];
    const [res] = await client.request({
      method: "POST",
      url: "/v3/user/scheduled_sends",
      body: { batch_id: batchId, status: "cancel" },
    });
    expect(res.statusCode).toBe(201);
    // Accepted into the cancelled batch after the cancel: cancelled too.
    ids.push(await send("cancelled-3@inbox.test", { batch_id: batchId }));
    for (const id of ids) {
      const m = await stack.waitForStatus(id, ["cancelled", "delivered", "failed"], 20_000);
      expect(m.status).toBe("cancelled");
    }
    // Well past the send_at, nothing of the batch reached the sink.
    await sleep(Math.max(0, at * 1000 + 3000 - Date.now()));
    for (const n of [1, 2, 3]) expect(arrivedFor(`cancelled-${n}@inbox.test`)).toEqual([]);
  });

  it("a paused batch waits past its send_at and arrives once the pause is removed", async () => {
    const batchId = await newBatch();
    const at = nowSeconds() + 3;
    const id = await send("paused@inbox.test", { send_at: at, batch_id: batchId });
    const [res] = await client.request({
      method: "POST",
      url: "/v3/user/scheduled_sends",
      body: { batch_id: batchId, status: "pause" },
    });
    expect(res.statusCode).toBe(201);
    await sleep(Math.max(0, at * 1000 + 3000 - Date.now()));
    expect(arrivedFor("paused@inbox.test")).toEqual([]);
    expect((await stack.api("GET", `/v3/messages/${id}`, stack.liveKey.api_key)).body.status).toBe("queued");
    const resumedAt = Date.now();
    const [del] = await client.request({ method: "DELETE", url: `/v3/user/scheduled_sends/${batchId}` });
    expect(del.statusCode).toBe(204);
    expect((await stack.waitForStatus(id, ["delivered", "bounced", "failed"], 30_000)).status).toBe(
      "delivered",
    );
    expect(arrivedFor("paused@inbox.test")[0]!.acceptedAt).toBeGreaterThanOrEqual(resumedAt);
  });
});
