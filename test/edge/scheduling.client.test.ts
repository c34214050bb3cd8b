/**
 * @sendgrid/client 8.1.6, SendGrid's own Node client, scheduling on the Worker
 * (docs/api/sendgrid.md#scheduling-and-batches): batch create (its bodiless POST with a JSON content
 * type) and validate, a send into the batch with send_at, pause, change to cancel, list, resume, and
 * the errors as the client's ResponseError. Only the transport is pointed at the Worker (axios's
 * fetch adapter with SELF.fetch).
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import client from "@sendgrid/client";
import { describe, expect, it } from "vitest";
import { createApiKey, mailBody, setupTenant } from "./helpers.ts";
import { type ClientError, useKey } from "./sendgrid-client.ts";

async function refused(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (err) {
    return err as ClientError;
  }
  throw new Error("expected the client to throw a ResponseError");
}

const state = (id: string) =>
  runInDurableObject(
    env.ORIGIN_HUB.getByName("hub-0"),
    (_i, s) =>
      s.storage.sql.exec<{ state: string }>("SELECT state FROM outbox WHERE message_id = ?", id).toArray()[0]
        ?.state,
  );

describe("@sendgrid/client against batches and scheduled sends", () => {
  it("creates and validates a batch, schedules into it, pauses, cancels, lists and resumes", async () => {
    const t = await setupTenant();
    const { key } = await createApiKey(t.tenantId, { scopes: ["mail.send", "mail.schedule", "mail.cancel"] });
    useKey(key);

    const [created, batch] = await client.request({ method: "POST", url: "/v3/mail/batch" });
    expect(created.statusCode).toBe(201);
    const batchId = (batch as { batch_id: string }).batch_id;
    expect(batchId).toMatch(/^[A-Za-z0-9]{32}$/);
    const [valid, validBody] = await client.request({ method: "GET", url: `/v3/mail/batch/${batchId}` });
    expect([valid.statusCode, validBody]).toEqual([200, { batch_id: batchId }]);

    const sendAt = Math.floor(Date.now() / 1000) + 3600;
    const [sent] = await client.request({
      method: "POST",
      url: "/v3/mail/send",
      body: mailBody(t.from, { send_at: sendAt, batch_id: batchId }),
    });
    expect(sent.statusCode).toBe(202);
    const messageId = sent.headers["x-message-id"] as string;
    expect(await state(messageId)).toBe("ready");

    const [paused, pausedBody] = await client.request({
      method: "POST",
      url: "/v3/user/scheduled_sends",
      body: { batch_id: batchId, status: "pause" },
    });
    expect([paused.statusCode, pausedBody]).toEqual([201, { batch_id: batchId, status: "pause" }]);
    expect(await state(messageId)).toBe("held");

    const [listed, list] = await client.request({ method: "GET", url: "/v3/user/scheduled_sends" });
    expect([listed.statusCode, list]).toEqual([200, [{ batch_id: batchId, status: "pause" }]]);

    // Resuming lets it go back to waiting for its send_at.
    const [resumed] = await client.request({ method: "DELETE", url: `/v3/user/scheduled_sends/${batchId}` });
    expect(resumed.statusCode).toBe(204);
    expect(await state(messageId)).toBe("ready");

    const [again] = await client.request({
      method: "POST",
      url: "/v3/user/scheduled_sends",
      body: { batch_id: batchId, status: "pause" },
    });
    expect(again.statusCode).toBe(201);
    const [changed] = await client.request({
      method: "PATCH",
      url: `/v3/user/scheduled_sends/${batchId}`,
      body: { status: "cancel" },
    });
    expect(changed.statusCode).toBe(204);
    const [one, oneBody] = await client.request({
      method: "GET",
      url: `/v3/user/scheduled_sends/${batchId}`,
    });
    expect([one.statusCode, oneBody]).toEqual([200, [{ batch_id: batchId, status: "cancel" }]]);
    // Held rows of a batch that is cancelled end cancelled (their outcome then goes to D1).
    expect(["cancelled", "recording", undefined]).toContain(await state(messageId));
  });

  it("reads SendGrid's errors as ResponseError: invalid batch, a state twice, a batch without a state", async () => {
    const t = await setupTenant();
    const { key } = await createApiKey(t.tenantId, { scopes: ["mail.send", "mail.schedule", "mail.cancel"] });
    useKey(key);
    const invalid = await refused(
      client.request({ method: "GET", url: "/v3/mail/batch/HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi" }),
    );
    expect([invalid.code, invalid.response.body]).toEqual([
      400,
      { errors: [{ field: null, message: "invalid batch id" }] },
    ]);
    const [, batch] = await client.request({ method: "POST", url: "/v3/mail/batch" });
    const batchId = (batch as { batch_id: string }).batch_id;
    await client.request({
      method: "POST",
      url: "/v3/user/scheduled_sends",
      body: { batch_id: batchId, status: "cancel" },
    });
    const twice = await refused(
      client.request({
        method: "POST",
        url: "/v3/user/scheduled_sends",
        body: { batch_id: batchId, status: "pause" },
      }),
    );
    expect(twice.code).toBe(400);
    const [, other] = await client.request({ method: "POST", url: "/v3/mail/batch" });
    const none = await refused(
      client.request({
        method: "PATCH",
        url: `/v3/user/scheduled_sends/${(other as { batch_id: string }).batch_id}`,
        body: { status: "pause" },
      }),
    );
    expect([none.code, none.response.body]).toEqual([
      404,
      { errors: [{ field: null, message: "batch id not found" }] },
    ]);
  });
});
