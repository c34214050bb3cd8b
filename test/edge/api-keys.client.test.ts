/**
 * @sendgrid/client 8.1.6, SendGrid's own Node client, managing API keys on the Worker
 * (docs/api/sendgrid.md#api-keys) with the requests it sends to api.sendgrid.com: create, list,
 * get, PUT, PATCH, DELETE and /v3/scopes, reading SendGrid's fields (api_key, api_key_id, result,
 * scopes) from the answers. Only the transport is pointed at the Worker (axios's fetch adapter
 * with SELF.fetch).
 */
import { describe, expect, it } from "vitest";
import { createApiKey, createTenant } from "./helpers.ts";
import { clientCall, clientFailure, useKey } from "./sendgrid-client.ts";

describe("@sendgrid/client against /v3/api_keys and /v3/scopes", () => {
  it("create → list → get → PUT → PATCH → DELETE, and scopes of the new key", async () => {
    const tenantId = await createTenant();
    const admin = await createApiKey(tenantId, { scopes: ["admin.api_keys", "mail.send", "stats.read"] });
    useKey(admin.key);

    const created = await clientCall("POST", "/v3/api_keys", { name: "My API Key", scopes: ["mail.send"] });
    expect(created.status).toBe(201);
    const { api_key: secret, api_key_id: id } = created.body;
    expect(secret).toMatch(/^sg_live_[0-9a-f]{32}$/);
    expect(created.body).toMatchObject({ name: "My API Key", scopes: ["mail.send"] });

    const list = await clientCall("GET", "/v3/api_keys", undefined, { limit: 10 });
    expect(list.status).toBe(200);
    expect(list.body.result).toContainEqual({ api_key_id: id, name: "My API Key" });

    const got = await clientCall("GET", `/v3/api_keys/${id}`);
    expect(got.body).toMatchObject({ api_key_id: id, name: "My API Key", scopes: ["mail.send"] });
    expect(got.body.result).toEqual([{ api_key_id: id, name: "My API Key", scopes: ["mail.send"] }]);

    const put = await clientCall("PUT", `/v3/api_keys/${id}`, {
      name: "Renamed",
      scopes: ["mail.send", "stats.read"],
    });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ api_key_id: id, name: "Renamed", scopes: ["mail.send", "stats.read"] });

    const patch = await clientCall("PATCH", `/v3/api_keys/${id}`, { name: "Patched" });
    expect(patch.status).toBe(200);
    expect(patch.body).toMatchObject({ api_key_id: id, name: "Patched" });

    // The new key, through the same client.
    useKey(secret);
    expect(await clientCall("GET", "/v3/scopes")).toEqual({
      status: 200,
      body: { scopes: ["mail.send", "stats.read"] },
    });
    // It cannot manage keys: SendGrid's client raises a ResponseError with the status.
    const forbidden = await clientFailure("GET", "/v3/api_keys");
    expect(forbidden.code).toBe(403);
    expect(forbidden.response.body).toMatchObject({
      errors: [{ message: "Missing required scope: admin.api_keys", field: null, help: null }],
    });

    useKey(admin.key);
    const del = await clientCall("DELETE", `/v3/api_keys/${id}`);
    expect(del.status).toBe(204);
    expect((await clientFailure("GET", `/v3/api_keys/${id}`)).code).toBe(404);
    useKey(secret);
    expect((await clientFailure("GET", "/v3/scopes")).code).toBe(401);
  });

  it("a 400 and a 403 escalation come back as ResponseErrors with SendGrid's errors[]", async () => {
    const tenantId = await createTenant();
    const admin = await createApiKey(tenantId, { scopes: ["admin.api_keys", "mail.send"] });
    useKey(admin.key);
    const bad = await clientFailure("POST", "/v3/api_keys", { name: "x", scopes: ["alerts.read"] });
    expect(bad.code).toBe(400);
    expect(bad.response.body).toMatchObject({
      errors: [{ message: "Unknown scope: alerts.read", field: "scopes", help: null }],
    });
    const up = await clientFailure("POST", "/v3/api_keys", { name: "x", scopes: ["stats.read"] });
    expect(up.code).toBe(403);
    expect(up.response.body).toMatchObject({
      errors: [{ message: "Cannot grant scopes this API key does not hold: stats.read", field: null }],
    });
  });
});
