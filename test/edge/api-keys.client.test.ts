/**
 * @sendgrid/client 8.1.6, SendGrid's own Node client, managing API keys on the Worker
 * (docs/api/sendgrid.md#api-keys) with the requests it sends to api.sendgrid.com: create, list,
 * get, PUT, PATCH, DELETE and /v3/scopes, reading SendGrid's fields (api_key, api_key_id, result,
 * scopes) from the answers. Only the transport is pointed at the Worker (axios's fetch adapter
 * with SELF.fetch).
 */
import { SELF } from "cloudflare:test";
import client from "@sendgrid/client";
import { describe, expect, it } from "vitest";
import { BASE, createApiKey, createTenant } from "./helpers.ts";

type ClientError = { code: number; response: { body: unknown } };

function useKey(key: string): void {
  client.setApiKey(key);
  client.setDefaultRequest("baseUrl", `${BASE}/`);
  client.setDefaultRequest("adapter" as never, "fetch" as never);
  client.setDefaultRequest("fetchOptions" as never, {} as never);
  client.setDefaultRequest(
    "env" as never,
    { fetch: (i: RequestInfo, init?: RequestInit) => SELF.fetch(i, init) } as never,
  );
}

async function call(method: string, url: string, body?: unknown, qs?: Record<string, unknown>) {
  const [res, data] = await client.request({
    method: method as never,
    url,
    ...(body !== undefined ? { body: body as object } : {}),
    ...(qs ? { qs } : {}),
  });
  return { status: res.statusCode, body: data as any };
}

async function failure(method: string, url: string, body?: unknown): Promise<ClientError> {
  try {
    await call(method, url, body);
  } catch (err) {
    return err as ClientError;
  }
  throw new Error(`${method} ${url} did not fail`);
}

describe("@sendgrid/client against /v3/api_keys and /v3/scopes", () => {
  it("create → list → get → PUT → PATCH → DELETE, and scopes of the new key", async () => {
    const tenantId = await createTenant();
    const admin = await createApiKey(tenantId, { scopes: ["admin.api_keys", "mail.send", "stats.read"] });
    useKey(admin.key);

    const created = await call("POST", "/v3/api_keys", { name: "My API Key", scopes: ["mail.send"] });
    expect(created.status).toBe(201);
    const { api_key: secret, api_key_id: id } = created.body;
    expect(secret).toMatch(/^sg_live_[0-9a-f]{32}$/);
    expect(created.body).toMatchObject({ name: "My API Key", scopes: ["mail.send"] });

    const list = await call("GET", "/v3/api_keys", undefined, { limit: 10 });
    expect(list.status).toBe(200);
    expect(list.body.result).toContainEqual({ api_key_id: id, name: "My API Key" });

    const got = await call("GET", `/v3/api_keys/${id}`);
    expect(got.body).toMatchObject({ api_key_id: id, name: "My API Key", scopes: ["mail.send"] });
    expect(got.body.result).toEqual([{ api_key_id: id, name: "My API Key", scopes: ["mail.send"] }]);

    const put = await call("PUT", `/v3/api_keys/${id}`, {
      name: "Renamed",
      scopes: ["mail.send", "stats.read"],
    });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ api_key_id: id, name: "Renamed", scopes: ["mail.send", "stats.read"] });

    const patch = await call("PATCH", `/v3/api_keys/${id}`, { name: "Patched" });
    expect(patch.status).toBe(200);
    expect(patch.body).toMatchObject({ api_key_id: id, name: "Patched" });

    // The new key, through the same client.
    useKey(secret);
    expect(await call("GET", "/v3/scopes")).toEqual({
      status: 200,
      body: { scopes: ["mail.send", "stats.read"] },
    });
    // It cannot manage keys: SendGrid's client raises a ResponseError with the status.
    const forbidden = await failure("GET", "/v3/api_keys");
    expect(forbidden.code).toBe(403);
    expect(forbidden.response.body).toMatchObject({
      errors: [{ message: "Missing required scope: admin.api_keys", field: null, help: null }],
    });

    useKey(admin.key);
    const del = await call("DELETE", `/v3/api_keys/${id}`);
    expect(del.status).toBe(204);
    expect((await failure("GET", `/v3/api_keys/${id}`)).code).toBe(404);
    useKey(secret);
    expect((await failure("GET", "/v3/scopes")).code).toBe(401);
  });

  it("a 400 and a 403 escalation come back as ResponseErrors with SendGrid's errors[]", async () => {
    const tenantId = await createTenant();
    const admin = await createApiKey(tenantId, { scopes: ["admin.api_keys", "mail.send"] });
    useKey(admin.key);
    const bad = await failure("POST", "/v3/api_keys", { name: "x", scopes: ["alerts.read"] });
    expect(bad.code).toBe(400);
    expect(bad.response.body).toMatchObject({
      errors: [{ message: "Unknown scope: alerts.read", field: "scopes", help: null }],
    });
    const up = await failure("POST", "/v3/api_keys", { name: "x", scopes: ["stats.read"] });
    expect(up.code).toBe(403);
    expect(up.response.body).toMatchObject({
      errors: [{ message: "Cannot grant scopes this API key does not hold: stats.read", field: null }],
    });
  });
});
