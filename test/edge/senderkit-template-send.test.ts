/**
 * A template send through POST /v1/send (docs/api/senderkit.md#send) on the real Worker in workerd:
 * the template's rendered content goes the raw path of its channel (E.164 for sms, envelope fields
 * refused on non-email), the message records templateSlug and pinnedVersion and is not interpolated
 * again, and test mode ends it delivered. Every answer validated against the OpenAPI.
 */
import { describe, expect, it } from "vitest";
import { expectMatches } from "../helpers/openapi-edge.ts";
import { createTenant } from "./helpers.ts";
import { createSk, skKey, v1 } from "./senderkit-templates.helpers.ts";

async function until<T>(f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("POST /v1/send with a template", () => {
  it("sends the rendered template on its channel, records the slug and pin, and test mode delivers it", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "test");
    await createSk(tenant, { slug: "OTP", channel: "sms", content: { body: "Your code is {{code}}" } });

    const sent = await v1(key, "/send", {
      method: "POST",
      body: { template: "otp", to: "+14155550123", vars: { code: "123456" }, version: 1, metadata: { k: 1 } },
    });
    expectMatches(sent.status, sent.body, "sendMessage");
    expect(sent.status).toBe(202);
    const done = await until(async () => {
      const r = await v1(key, `/messages/${sent.body.id}`);
      return r.body.status === "delivered" ? r : undefined;
    });
    expectMatches(done.status, done.body, "getMessage");
    expect(done.body).toMatchObject({
      templateSlug: "otp",
      pinnedVersion: 1,
      channel: "sms",
      interpolate: false,
      recipient: "+14155550123",
      vars: { code: "123456" },
    });

    const listed = await v1(key, "/messages?template=OTP");
    expectMatches(listed.status, listed.body, "listMessages");
    expect(listed.body.data.map((m: { publicId: string }) => m.publicId)).toEqual([sent.body.id]);

    const badTo = await v1(key, "/send", { method: "POST", body: { template: "otp", to: "12345" } });
    expectMatches(badTo.status, badTo.body, "sendMessage");
    expect([badTo.status, badTo.body.error.code]).toEqual([400, "invalid_request"]);
    const envelope = await v1(key, "/send", {
      method: "POST",
      body: { template: "otp", to: "+14155550123", cc: ["a@example.com"] },
    });
    expect([envelope.status, envelope.body.error.code]).toEqual([400, "envelope_not_supported"]);
    const unknown = await v1(key, "/send", {
      method: "POST",
      body: { template: "nope", to: "+14155550123" },
    });
    expectMatches(unknown.status, unknown.body, "sendMessage");
    expect([unknown.status, unknown.body.error.code]).toEqual([404, "template_not_found"]);
    const live = await v1(await skKey(tenant, "live"), "/send", {
      method: "POST",
      body: { template: "otp", to: "+14155550123" },
    });
    // Never published: live has no version to send.
    expect([live.status, live.body.error.code]).toEqual([404, "template_not_published"]);
  });
});
