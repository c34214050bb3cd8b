/**
 * @sendgrid/client, SendGrid's own Node client, driving the Event Webhook settings on the Worker
 * (docs/api/webhooks.md#sendgrid-event-webhook-settings): GET/PATCH settings, the signed key and the
 * test POST, as its catalogue calls them against api.sendgrid.com; only the transport is pointed at
 * the Worker (axios's fetch adapter with SELF.fetch). The test POST's receiver and name resolution
 * are handed to the tenant's queue.
 */
import client from "@sendgrid/client";
import { describe, expect, it } from "vitest";
import { createApiKey, createTenant } from "./helpers.ts";
import { useKey } from "./sendgrid-client.ts";
import { inQueue } from "./webhooks.helpers.ts";

describe("@sendgrid/client against /v3/user/webhooks/event", () => {
  it("reads and changes the settings, enables signing and sends a test event", async () => {
    const tenantId = await createTenant();
    const { key } = await createApiKey(tenantId, { scopes: ["webhooks.read", "webhooks.write"] });
    const posts: { url: string; body: string; signature: string | null }[] = [];
    await inQueue(tenantId, (q) => {
      q.resolver = async () => ["93.184.216.34"];
      q.fetcher = async (req) => {
        posts.push({
          url: req.url,
          body: await req.text(),
          signature: req.headers.get("x-twilio-email-event-webhook-signature"),
        });
        return new Response(null, { status: 200 });
      };
    });

    useKey(key);

    const [got, initial] = await client.request({ method: "GET", url: "/v3/user/webhooks/event/settings" });
    expect(got.statusCode).toBe(200);
    expect(initial).toMatchObject({ enabled: false, url: "", delivered: false, oauth_client_id: "" });

    const [patched, settings] = await client.request({
      method: "PATCH",
      url: "/v3/user/webhooks/event/settings",
      body: { enabled: true, url: "https://hooks.example.com/sg", delivered: true, open: true },
    });
    expect(patched.statusCode).toBe(200);
    expect(settings).toMatchObject({
      enabled: true,
      url: "https://hooks.example.com/sg",
      delivered: true,
      open: true,
    });

    const [, signed] = await client.request({
      method: "PATCH",
      url: "/v3/user/webhooks/event/settings/signed",
      body: { enabled: true },
    });
    const publicKey = (signed as { public_key: string }).public_key;
    expect(publicKey).toMatch(/^MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE/);
    const [, again] = await client.request({ method: "GET", url: "/v3/user/webhooks/event/settings/signed" });
    expect(again).toEqual({ public_key: publicKey });

    const [tested] = await client.request({
      method: "POST",
      url: "/v3/user/webhooks/event/test",
      body: { url: "https://hooks.example.com/test" },
    });
    expect(tested.statusCode).toBe(204);
    expect(posts.map((p) => p.url)).toEqual(["https://hooks.example.com/test"]);
    expect(posts[0]!.signature).toBeTruthy();

    const err = await client
      .request({ method: "PATCH", url: "/v3/user/webhooks/event/settings", body: { delivered: "yes" } })
      .then(
        () => null,
        (e: { code: number; response: { body: unknown } }) => e,
      );
    expect(err?.code).toBe(400);
    expect(err?.response.body).toEqual({
      errors: [{ field: "delivered", message: "must be true or false", help: null }],
    });
  });
});
