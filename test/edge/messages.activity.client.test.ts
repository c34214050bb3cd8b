/**
 * @sendgrid/client, SendGrid's own Node client, reading Email Activity from the Worker
 * (docs/api/sendgrid.md#sendgrid-email-activity-fields): its axios serialises `query` and `limit`
 * as it does against api.sendgrid.com; only the transport is pointed at the Worker (axios's fetch
 * adapter with SELF.fetch), nothing of the client is replaced.
 */
import client from "@sendgrid/client";
import { describe, expect, it } from "vitest";
import { mailBody, sendOne, setupTenant } from "./helpers.ts";
import { useKey } from "./sendgrid-client.ts";

describe("@sendgrid/client against GET /v3/messages", () => {
  it("lists with a query and limit, and reads a 400 for a query it cannot parse", async () => {
    const t = await setupTenant();
    const id = await sendOne(
      t.testKey,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "reader@example.net" }] }],
        subject: "Hi there",
      }),
    );
    await sendOne(
      t.testKey,
      mailBody(t.from, { personalizations: [{ to: [{ email: "other@example.net" }] }] }),
    );

    useKey(t.testKey);

    const [res, body] = await client.request({
      method: "GET",
      url: "/v3/messages",
      qs: { query: 'to_email="reader@example.net" AND status="sandbox"', limit: 10 },
    });
    expect(res.statusCode).toBe(200);
    const b = body as {
      messages: { msg_id: string; to_email: string; subject: string }[];
      page_size: number;
    };
    expect(b.messages.map((m) => [m.msg_id, m.to_email, m.subject])).toEqual([
      [id, "reader@example.net", "Hi there"],
    ]);
    expect(b.page_size).toBe(10);

    const err = await client
      .request({ method: "GET", url: "/v3/messages", qs: { query: 'to_email="reader@example.net" AND' } })
      .then(
        () => null,
        (e: { code: number; response: { body: unknown } }) => e,
      );
    expect(err?.code).toBe(400);
    expect(err?.response.body).toEqual({
      detail: "Invalid query: Expected a field name, found end of query at position 34",
    });
  });
});
