/**
 * Revocation, rotation, scope changes and expiry against the isolate's key cache
 * (edge/src/services/catalog-cache.ts, docs/api/sendgrid.md#api-keys): a change made through
 * /v3/api_keys in this isolate is seen on the very next request, although a change written
 * elsewhere (straight to D1, as another isolate would) is still served from the cache until
 * AUTH_CACHE_TTL_MS has passed; `last_used_at` moves, written behind the response.
 * The real app runs through `app.request` in this isolate with the real D1 binding.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { TOUCH_INTERVAL_MS, catalogCache } from "../../edge/src/services/catalog-cache.ts";
import { BASE, bearer, createApiKey, createTenant } from "./helpers.ts";

const app = createApp();
const TTL = 10_000;
let now = 0;

beforeEach(() => {
  now = Date.now();
  catalogCache.clock = () => now;
  catalogCache.clear();
});

afterEach(() => {
  catalogCache.clock = Date.now;
  catalogCache.clear();
});

const withTtl = (ms: number) =>
  ({ ...(env as unknown as Bindings), AUTH_CACHE_TTL_MS: String(ms) }) as Bindings;

async function request(key: string, method: string, path: string, body?: unknown, e = withTtl(TTL)) {
  const ctx = createExecutionContext();
  const res = await app.request(
    `${BASE}${path}`,
    { method, headers: bearer(key), ...(body !== undefined ? { body: JSON.stringify(body) } : {}) },
    e,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as any) : null };
}

async function tenantWithAdmin() {
  const tenantId = await createTenant();
  const admin = await createApiKey(tenantId, {
    scopes: ["admin.api_keys", "mail.send", "stats.read", "templates.read"],
  });
  return { tenantId, admin: admin.key };
}

async function newKey(admin: string, body: Record<string, unknown>) {
  const r = await request(admin, "POST", "/v3/api_keys", { name: "k", ...body });
  expect(r.status).toBe(201);
  return r.body as { id: string; api_key: string };
}

const scopesOf = (key: string, e?: Bindings) => request(key, "GET", "/v3/scopes", undefined, e);

describe("a key changed through /v3/api_keys in this isolate", () => {
  it("revoked: refused on the next request, while a key revoked elsewhere is still cached", async () => {
    const { admin } = await tenantWithAdmin();
    const here = await newKey(admin, { scopes: ["mail.send"] });
    const elsewhere = await newKey(admin, { scopes: ["mail.send"] });
    // Both warm in this isolate's cache.
    expect((await scopesOf(here.api_key)).status).toBe(200);
    expect((await scopesOf(elsewhere.api_key)).status).toBe(200);

    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
      .bind(Date.now(), elsewhere.id)
      .run();
    expect((await request(admin, "DELETE", `/v3/api_keys/${here.id}`)).status).toBe(204);

    expect((await scopesOf(here.api_key)).status).toBe(401);
    // The cache is real: the other isolate's revocation is not seen before the TTL…
    now += TTL - 1;
    expect((await scopesOf(elsewhere.api_key)).status).toBe(200);
    // …and is seen once it has passed.
    now += 1;
    expect((await scopesOf(elsewhere.api_key)).status).toBe(401);
  });

  it("revoked elsewhere with a short AUTH_CACHE_TTL_MS: refused once that real time has passed", async () => {
    catalogCache.clock = Date.now;
    const short = withTtl(300);
    const { admin } = await tenantWithAdmin();
    const k = await newKey(admin, { scopes: ["mail.send"] });
    catalogCache.clear();
    expect((await scopesOf(k.api_key, short)).status).toBe(200);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(Date.now(), k.id).run();
    const revokedAt = Date.now();
    expect((await scopesOf(k.api_key, short)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300 - (Date.now() - revokedAt) + 20));
    expect((await scopesOf(k.api_key, short)).status).toBe(401);
  });

  it("scopes narrowed by PUT: the next request has the new scopes", async () => {
    const { admin } = await tenantWithAdmin();
    const k = await newKey(admin, { scopes: ["stats.read", "templates.read"] });
    expect((await scopesOf(k.api_key)).body).toEqual({ scopes: ["stats.read", "templates.read"] });
    expect((await request(k.api_key, "GET", "/v3/stats?start_date=2026-01-01")).status).not.toBe(403);
    const put = await request(admin, "PUT", `/v3/api_keys/${k.id}`, {
      name: "k",
      scopes: ["templates.read"],
    });
    expect(put.status).toBe(200);
    expect((await scopesOf(k.api_key)).body).toEqual({ scopes: ["templates.read"] });
    expect((await request(k.api_key, "GET", "/v3/stats?start_date=2026-01-01")).body).toEqual({
      detail: "Missing required scope: stats.read",
    });
  });

  it("rotated: the old secret is refused on the next request, the new one works", async () => {
    const { admin } = await tenantWithAdmin();
    const k = await newKey(admin, { scopes: ["mail.send"] });
    expect((await scopesOf(k.api_key)).status).toBe(200);
    const r = await request(admin, "POST", `/v3/api_keys/${k.id}/rotate`);
    expect(r.status).toBe(200);
    expect((await scopesOf(k.api_key)).status).toBe(401);
    expect((await scopesOf(r.body.api_key)).body).toEqual({ scopes: ["mail.send"] });
  });
});

describe("expiry", () => {
  it("a key works until expires_at and is refused from then on, cached or not", async () => {
    const { admin } = await tenantWithAdmin();
    const expiresAt = Date.now() + 60_000;
    const k = await newKey(admin, { scopes: ["mail.send"], expires_at: new Date(expiresAt).toISOString() });
    now = expiresAt - 1;
    expect((await scopesOf(k.api_key)).status).toBe(200);
    now = expiresAt;
    const r = await scopesOf(k.api_key);
    expect(r.status).toBe(401);
    expect(r.body.detail).toBe("Invalid API key");
    // Listed (it is not revoked), with its expiry.
    const got = await request(admin, "GET", `/v3/api_keys/${k.id}`);
    expect(got.body.expires_at).toBe(new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"));
  });
});

describe("last_used_at", () => {
  it("is null until the key is used, then moves, at most once per interval", async () => {
    const { admin } = await tenantWithAdmin();
    const k = await newKey(admin, { scopes: ["mail.send"] });
    const lastUsed = async () => (await request(admin, "GET", `/v3/api_keys/${k.id}`)).body.last_used_at;
    expect(await lastUsed()).toBeNull();

    const first = now;
    expect((await scopesOf(k.api_key)).status).toBe(200);
    const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
    expect(await lastUsed()).toBe(iso(first));

    now += 1_000;
    expect((await scopesOf(k.api_key)).status).toBe(200);
    expect(await lastUsed()).toBe(iso(first));

    now += TOUCH_INTERVAL_MS;
    const later = now;
    expect((await scopesOf(k.api_key)).status).toBe(200);
    expect(await lastUsed()).toBe(iso(later));
  });
});
