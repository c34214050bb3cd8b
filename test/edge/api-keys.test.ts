/**
 * /v3/api_keys and /v3/scopes on the Worker (docs/api/sendgrid.md#api-keys): both answer shapes
 * (ScaiSend's records, SendGrid's `result` and `api_key_id`), both error shapes (`detail` and
 * `errors[]`), ScaiSend's defaults where the two disagree, no privilege escalation, the secret shown
 * once and stored as SHA-256, the per-tenant cap and create rate limit, and tenant isolation.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { PERMISSIONS, type Permission } from "../../shared/permissions.ts";
import { sha256Hex } from "../../edge/src/lib/crypto.ts";
import { MAX_ACTIVE_KEYS } from "../../edge/src/services/api-keys.ts";
import { createDb } from "../../edge/src/db/client.ts";
import { tenantApiKeys } from "../../edge/src/db/api-keys.ts";
import { bearer, call, createApiKey, createTenant, uid } from "./helpers.ts";

const ISO_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

interface Admin {
  tenantId: string;
  key: string;
  keyId: string;
}

/** A tenant with a live key holding every permission (the tenant's admin, bootstrapped by the operator). */
async function adminTenant(scopes: readonly Permission[] = PERMISSIONS): Promise<Admin> {
  const tenantId = await createTenant();
  const k = await createApiKey(tenantId, { scopes: [...scopes] });
  return { tenantId, key: k.key, keyId: k.id };
}

async function api(key: string, method: string, path: string, body?: unknown) {
  const res = await call(path, {
    method,
    headers: bearer(key),
    ...(body !== undefined && method !== "GET"
      ? { body: typeof body === "string" ? body : JSON.stringify(body) }
      : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as any) : null, headers: res.headers };
}

/** Both error shapes, with the same message. */
function expectError(
  r: { status: number; body: any },
  status: number,
  message: string | RegExp,
  field: string | null = null,
) {
  expect(r.status).toBe(status);
  if (typeof message === "string") message = new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  expect(Object.keys(r.body).sort()).toEqual(["detail", "errors"]);
  expect(r.body.detail).toMatch(message);
  expect(r.body.errors).toContainEqual({ message: expect.stringMatching(message), field, help: null });
}

const create = (a: Admin, body: unknown) => api(a.key, "POST", "/v3/api_keys", body);

describe("post /v3/api_keys", () => {
  it("creates a key: ScaiSend's fields beside SendGrid's api_key / api_key_id, 201, the secret once", async () => {
    const a = await adminTenant();
    const r = await create(a, { name: "transactional-prod", scopes: ["mail.send", "stats.read"] });
    expect(r.status).toBe(201);
    expect(r.body).toEqual({
      id: expect.stringMatching(/^key_/),
      api_key_id: r.body.id,
      name: "transactional-prod",
      api_key: expect.stringMatching(/^sg_live_[0-9a-f]{32}$/),
      prefix: r.body.api_key.slice(0, 16),
      environment: "live",
      scopes: ["mail.send", "stats.read"],
      created_at: expect.stringMatching(ISO_SECONDS),
      last_used_at: null,
      expires_at: null,
      revoked_at: null,
    });
    // Stored as its SHA-256 and prefix only.
    const row = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(r.body.id).first();
    expect(row!.key_hash).toBe(await sha256Hex(r.body.api_key));
    expect(Object.values(row!)).not.toContain(r.body.api_key);
    // The new key works at once and carries exactly its scopes.
    const scopes = await api(r.body.api_key, "GET", "/v3/scopes");
    expect(scopes).toMatchObject({ status: 200, body: { scopes: ["mail.send", "stats.read"] } });
    // Never shown again.
    const again = await api(a.key, "GET", `/v3/api_keys/${r.body.id}`);
    expect(JSON.stringify(again.body)).not.toContain(r.body.api_key);
    expect(again.body.prefix).toBe(r.body.prefix);
  });

  it("without scopes the key has no access (ScaiSend's default, not SendGrid's full access)", async () => {
    const a = await adminTenant();
    const r = await create(a, { name: "bare" });
    expect(r.status).toBe(201);
    expect(r.body.scopes).toEqual([]);
    expect(r.body.environment).toBe("live");
    expectError(
      await api(r.body.api_key, "GET", "/v3/api_keys"),
      403,
      "Missing required scope: admin.api_keys",
    );
    expect((await api(r.body.api_key, "GET", "/v3/scopes")).body).toEqual({ scopes: [] });
  });

  it("environment test gives sg_test_; expires_at is kept and shown to the second", async () => {
    const a = await adminTenant();
    const expires = new Date(Date.now() + 86_400_000);
    const r = await create(a, {
      name: "ci",
      environment: "test",
      scopes: ["mail.send", "mail.send"],
      expires_at: expires.toISOString(),
    });
    expect(r.status).toBe(201);
    expect(r.body.api_key).toMatch(/^sg_test_[0-9a-f]{32}$/);
    expect(r.body.environment).toBe("test");
    expect(r.body.scopes).toEqual(["mail.send"]);
    expect(r.body.expires_at).toBe(expires.toISOString().replace(/\.\d{3}Z$/, "Z"));
  });

  it.each([
    ["no name", { scopes: [] }, "name is required", "name"],
    ["an empty name", { name: "  " }, "name must be 1 to 255 characters", "name"],
    ["a long name", { name: "x".repeat(256) }, "name must be 1 to 255 characters", "name"],
    ["a name with a newline", { name: "a\nb" }, "name must not contain control characters", "name"],
    ["a number as name", { name: 7 }, "name must be a string", "name"],
    [
      "an unknown scope",
      { name: "k", scopes: ["mail.send", "alerts.read"] },
      "Unknown scope: alerts.read",
      "scopes",
    ],
    ["scopes not a list", { name: "k", scopes: "mail.send" }, "scopes must be an array", "scopes"],
    [
      "a bad environment",
      { name: "k", environment: "prod" },
      "environment must be live or test",
      "environment",
    ],
    [
      "expires_at in the past",
      { name: "k", expires_at: "2020-01-01T00:00:00Z" },
      "expires_at must be in the future",
      "expires_at",
    ],
    [
      "expires_at without offset",
      { name: "k", expires_at: "2099-01-01T00:00:00" },
      "expires_at must be an ISO-8601",
      "expires_at",
    ],
    [
      "a field we do not honour",
      { name: "k", ip_allowlist: ["1.2.3.4"] },
      "ip_allowlist is not a field",
      "ip_allowlist",
    ],
  ])("refuses %s with 400 in both shapes", async (_label, body, message, field) => {
    const a = await adminTenant();
    expectError(await create(a, body), 400, message, field);
  });

  it("refuses a body that is not a JSON object", async () => {
    const a = await adminTenant();
    expectError(await create(a, "{nope"), 400, "The request body is not valid JSON");
    expectError(await create(a, ["name"]), 400, "The request body must be a JSON object");
    expectError(await create(a, ""), 400, "name is required", "name");
  });

  it("refuses a body over 64 KiB with 413 in both shapes", async () => {
    const a = await adminTenant();
    expectError(
      await create(a, { name: "x".repeat(70_000) }),
      413,
      "The request body may be at most 65536 bytes",
    );
  });

  it("reports every problem at once", async () => {
    const a = await adminTenant();
    const r = await create(a, { scopes: ["nope"], environment: "x" });
    expect(r.status).toBe(400);
    expect(r.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      "environment",
      "name",
      "scopes",
    ]);
  });

  it("a key cannot grant scopes it does not hold (403, nothing created)", async () => {
    const a = await adminTenant(["admin.api_keys", "mail.send"]);
    const r = await create(a, { name: "wider", scopes: ["mail.send", "stats.read", "domains.write"] });
    expectError(r, 403, "Cannot grant scopes this API key does not hold: stats.read, domains.write");
    const list = await api(a.key, "GET", "/v3/api_keys");
    expect(list.body.result.map((k: { api_key_id: string }) => k.api_key_id)).toEqual([a.keyId]);
    // What it holds it may grant, including admin.api_keys itself.
    expect((await create(a, { name: "same", scopes: ["admin.api_keys", "mail.send"] })).status).toBe(201);
  });

  it("a test key cannot create a live key (also not by default), but can create test keys", async () => {
    const tenantId = await createTenant();
    const t = await createApiKey(tenantId, { environment: "test", scopes: ["admin.api_keys", "mail.send"] });
    const tk: Admin = { tenantId, key: t.key, keyId: t.id };
    expectError(
      await create(tk, { name: "live", environment: "live" }),
      403,
      "A test API key cannot grant a live key",
    );
    expectError(await create(tk, { name: "default" }), 403, "A test API key cannot grant a live key");
    const ok = await create(tk, { name: "t", environment: "test", scopes: ["mail.send"] });
    expect(ok.status).toBe(201);
    expect(ok.body.api_key).toMatch(/^sg_test_/);
  });

  it(`a tenant holds at most ${MAX_ACTIVE_KEYS} keys that are not revoked (the next is a 403)`, async () => {
    const a = await adminTenant();
    // Fill the tenant up to the cap directly (the create route allows 10 a minute).
    const now = Date.now();
    const rows = Array.from({ length: MAX_ACTIVE_KEYS - 1 }, (_, i) =>
      env.DB.prepare(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, environment, scopes, created_at) VALUES (?, ?, ?, ?, ?, 'live', '[]', ?)",
      ).bind(`key_fill${uid()}${i}`, a.tenantId, `fill-${i}`, "sg_live_00000000", `fill-${uid()}-${i}`, now),
    );
    await env.DB.batch(rows);
    expectError(await create(a, { name: "one too many" }), 403, /at most 100 API keys/);
    // Revoking one frees a place.
    const filler = (await api(a.key, "GET", "/v3/api_keys?limit=1")).body.result[0].api_key_id;
    expect((await api(a.key, "DELETE", `/v3/api_keys/${filler}`)).status).toBe(204);
    expect((await create(a, { name: "fits" })).status).toBe(201);
  });

  it("concurrent creates cannot overshoot the cap (the check is part of the insert)", async () => {
    const a = await adminTenant();
    const now = Date.now();
    await env.DB.batch(
      Array.from({ length: MAX_ACTIVE_KEYS - 3 }, (_, i) =>
        env.DB.prepare(
          "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, environment, scopes, created_at) VALUES (?, ?, ?, ?, ?, 'live', '[]', ?)",
        ).bind(
          `key_fill${uid()}${i}`,
          a.tenantId,
          `fill-${i}`,
          "sg_live_00000000",
          `fill-${uid()}-${i}`,
          now,
        ),
      ),
    );
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => create(a, { name: `race-${i}` })));
    expect(results.map((r) => r.status).sort()).toEqual([201, 201, 403, 403, 403, 403]);
    const active = await env.DB.prepare(
      "SELECT count(*) AS n FROM api_keys WHERE tenant_id = ? AND revoked_at IS NULL",
    )
      .bind(a.tenantId)
      .first<{ n: number }>();
    expect(active!.n).toBe(MAX_ACTIVE_KEYS);
  });

  it("creating is limited to 10 a minute per tenant (429 in both shapes, X-RateLimit headers)", async () => {
    const a = await adminTenant();
    for (let i = 0; i < 10; i++) {
      const r = await create(a, { name: `k${i}` });
      expect(r.status).toBe(201);
      expect(r.headers.get("X-RateLimit-Limit")).toBe("10");
    }
    const over = await create(a, { name: "k10" });
    expectError(over, 429, "Rate limit exceeded");
    expect(Number(over.headers.get("Retry-After"))).toBeGreaterThan(0);
    // Another tenant has its own bucket.
    expect((await create(await adminTenant(), { name: "other" })).status).toBe(201);
  });
});

describe("credentials on /v3/api_keys", () => {
  it("no Authorization → 401; an unknown key → 401; both shapes", async () => {
    const none = await call("/v3/api_keys");
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({
      detail: "Missing Authorization header",
      errors: [{ message: "Missing Authorization header", field: null, help: null }],
    });
    expectError(await api(`sg_live_${"0".repeat(32)}`, "GET", "/v3/api_keys"), 401, "Invalid API key");
    expectError(await api(env.ADMIN_TOKEN, "GET", "/v3/api_keys"), 401, "Invalid API key");
  });

  it.each([
    ["POST", "/v3/api_keys"],
    ["GET", "/v3/api_keys"],
    ["GET", "/v3/api_keys/key_x"],
    ["PUT", "/v3/api_keys/key_x"],
    ["PATCH", "/v3/api_keys/key_x"],
    ["DELETE", "/v3/api_keys/key_x"],
    ["POST", "/v3/api_keys/key_x/rotate"],
  ])("%s %s needs admin.api_keys (403)", async (method, path) => {
    const a = await adminTenant(["mail.send", "stats.read"]);
    expectError(await api(a.key, method, path, { name: "x" }), 403, "Missing required scope: admin.api_keys");
  });
});

describe("get /v3/api_keys", () => {
  it("lists ScaiSend's records and SendGrid's result side by side, newest first, without revoked keys", async () => {
    // Ids sort by their millisecond; a pause between creates makes "newest first" one order.
    const tick = () => new Promise((r) => setTimeout(r, 3));
    const a = await adminTenant();
    await tick();
    const one = (await create(a, { name: "one", scopes: ["mail.send"] })).body;
    await tick();
    const two = (await create(a, { name: "two", environment: "test" })).body;
    expect((await api(a.key, "DELETE", `/v3/api_keys/${one.id}`)).status).toBe(204);

    const r = await api(a.key, "GET", "/v3/api_keys");
    expect(r.status).toBe(200);
    expect(Object.keys(r.body).sort()).toEqual(["api_keys", "result"]);
    expect(r.body.result).toEqual([
      { api_key_id: two.id, name: "two" },
      { api_key_id: a.keyId, name: expect.any(String) },
    ]);
    expect(r.body.api_keys[0]).toEqual({
      id: two.id,
      name: "two",
      prefix: two.prefix,
      environment: "test",
      scopes: [],
      created_at: two.created_at,
      last_used_at: null,
      expires_at: null,
      revoked_at: null,
    });
    expect(JSON.stringify(r.body)).not.toMatch(/sg_(live|test)_[0-9a-f]{32}/);

    const all = await api(a.key, "GET", "/v3/api_keys?include_revoked=true");
    expect(all.body.api_keys.map((k: { id: string }) => k.id)).toEqual([two.id, one.id, a.keyId]);
    expect(all.body.api_keys[1].revoked_at).toMatch(ISO_SECONDS);

    const limited = await api(a.key, "GET", "/v3/api_keys?limit=1");
    expect(limited.body.result).toEqual([{ api_key_id: two.id, name: "two" }]);
    expect(limited.body.api_keys).toHaveLength(1);
  });

  it.each([
    ["limit=0", "limit must be an integer from 1 to 1000", "query.limit"],
    ["limit=abc", "limit must be an integer from 1 to 1000", "query.limit"],
    ["include_revoked=yes", "include_revoked must be true or false", "query.include_revoked"],
    ["offset=10", "offset is not a parameter of this request", "query.offset"],
  ])("refuses ?%s with 400", async (qs, message, field) => {
    const a = await adminTenant();
    expectError(await api(a.key, "GET", `/v3/api_keys?${qs}`), 400, message, field);
  });
});

describe("/v3/api_keys/{id}", () => {
  it("get: ScaiSend's record, SendGrid's api_key_id, and the OAS example's result", async () => {
    const a = await adminTenant();
    const k = (await create(a, { name: "reader", scopes: ["stats.read"] })).body;
    const r = await api(a.key, "GET", `/v3/api_keys/${k.id}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      api_key_id: k.id,
      id: k.id,
      name: "reader",
      prefix: k.prefix,
      environment: "live",
      scopes: ["stats.read"],
      created_at: k.created_at,
      last_used_at: null,
      expires_at: null,
      revoked_at: null,
      result: [{ api_key_id: k.id, name: "reader", scopes: ["stats.read"] }],
    });
    expectError(await api(a.key, "GET", "/v3/api_keys/key_nope"), 404, "API key not found");
  });

  it("put replaces name and scopes (200), within what the caller holds", async () => {
    const a = await adminTenant(["admin.api_keys", "mail.send", "stats.read"]);
    const k = (await create(a, { name: "before", scopes: ["mail.send"] })).body;
    const r = await api(a.key, "PUT", `/v3/api_keys/${k.id}`, { name: "after", scopes: ["stats.read"] });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ api_key_id: k.id, id: k.id, name: "after", scopes: ["stats.read"] });
    expect((await api(k.api_key, "GET", "/v3/scopes")).body).toEqual({ scopes: ["stats.read"] });
    // Missing scopes replace them with none.
    const none = await api(a.key, "PUT", `/v3/api_keys/${k.id}`, { name: "after" });
    expect(none.body.scopes).toEqual([]);

    expectError(
      await api(a.key, "PUT", `/v3/api_keys/${k.id}`, { name: "x", scopes: ["domains.write"] }),
      403,
      "Cannot grant scopes this API key does not hold: domains.write",
    );
    expectError(
      await api(a.key, "PUT", `/v3/api_keys/${k.id}`, { scopes: [] }),
      400,
      "name is required",
      "name",
    );
    expectError(
      await api(a.key, "PUT", `/v3/api_keys/${k.id}`, { name: "x", environment: "test" }),
      400,
      "environment is not a field of this request (PUT replaces name and scopes)",
      "environment",
    );
    expectError(await api(a.key, "PUT", "/v3/api_keys/key_nope", { name: "x" }), 404, "API key not found");
    // Nothing of the refused requests was applied.
    expect((await api(a.key, "GET", `/v3/api_keys/${k.id}`)).body).toMatchObject({
      name: "after",
      scopes: [],
    });
  });

  it("patch renames only (200 {api_key_id, name, …})", async () => {
    const a = await adminTenant();
    const k = (await create(a, { name: "old", scopes: ["mail.send"] })).body;
    const r = await api(a.key, "PATCH", `/v3/api_keys/${k.id}`, { name: "new" });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ api_key_id: k.id, name: "new", scopes: ["mail.send"] });
    expectError(
      await api(a.key, "PATCH", `/v3/api_keys/${k.id}`, { name: "n", scopes: [] }),
      400,
      "scopes is not a field of this request (PATCH renames; PUT replaces the scopes)",
      "scopes",
    );
    expectError(await api(a.key, "PATCH", `/v3/api_keys/${k.id}`, {}), 400, "name is required", "name");
  });

  it("delete revokes (204): the key is refused at once, gone from get (404) unless include_revoked", async () => {
    const a = await adminTenant();
    const k = (await create(a, { name: "doomed", scopes: ["mail.send"] })).body;
    expect((await api(k.api_key, "GET", "/v3/scopes")).status).toBe(200);
    const del = await call(`/v3/api_keys/${k.id}`, { method: "DELETE", headers: bearer(a.key) });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe("");
    expectError(await api(k.api_key, "GET", "/v3/scopes"), 401, "Invalid API key");
    expectError(await api(a.key, "GET", `/v3/api_keys/${k.id}`), 404, "API key not found");
    const kept = await api(a.key, "GET", `/v3/api_keys/${k.id}?include_revoked=true`);
    expect(kept.body.revoked_at).toMatch(ISO_SECONDS);
    // Already revoked: 404 for every change, as for an unknown id.
    for (const [m, p, b] of [
      ["DELETE", "", undefined],
      ["PATCH", "", { name: "x" }],
      ["PUT", "", { name: "x" }],
      ["POST", "/rotate", undefined],
    ] as const) {
      expectError(await api(a.key, m, `/v3/api_keys/${k.id}${p}`, b), 404, "API key not found");
    }
    expectError(
      await api(a.key, "DELETE", `/v3/api_keys/${a.keyId}`, { really: true }),
      400,
      "really is not a field of this request",
      "really",
    );
  });

  it("a key may revoke itself", async () => {
    const a = await adminTenant();
    expect((await api(a.key, "DELETE", `/v3/api_keys/${a.keyId}`)).status).toBe(204);
    expectError(await api(a.key, "GET", "/v3/api_keys"), 401, "Invalid API key");
  });

  it("rotate: a new secret for the same key; the old one is refused at once", async () => {
    const a = await adminTenant();
    const k = (await create(a, { name: "rotating", scopes: ["mail.send"] })).body;
    const r = await api(a.key, "POST", `/v3/api_keys/${k.id}/rotate`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      id: k.id,
      api_key_id: k.id,
      name: "rotating",
      environment: "live",
      scopes: ["mail.send"],
      created_at: k.created_at,
      api_key: expect.stringMatching(/^sg_live_[0-9a-f]{32}$/),
    });
    expect(r.body.api_key).not.toBe(k.api_key);
    expect(r.body.prefix).toBe(r.body.api_key.slice(0, 16));
    expectError(await api(k.api_key, "GET", "/v3/scopes"), 401, "Invalid API key");
    expect((await api(r.body.api_key, "GET", "/v3/scopes")).body).toEqual({ scopes: ["mail.send"] });
    const row = await env.DB.prepare("SELECT key_hash FROM api_keys WHERE id = ?").bind(k.id).first();
    expect(row!.key_hash).toBe(await sha256Hex(r.body.api_key));
  });

  it("rotate is refused for a key holding more than the caller, or a live key from a test key", async () => {
    const tenantId = await createTenant();
    const wide = await createApiKey(tenantId, { scopes: ["admin.api_keys", "mail.send", "stats.read"] });
    const narrow = await createApiKey(tenantId, { scopes: ["admin.api_keys", "mail.send"] });
    const tkey = await createApiKey(tenantId, {
      environment: "test",
      scopes: ["admin.api_keys", "mail.send", "stats.read"],
    });
    expectError(
      await api(narrow.key, "POST", `/v3/api_keys/${wide.id}/rotate`),
      403,
      "Cannot rotate scopes this API key does not hold: stats.read",
    );
    expectError(
      await api(tkey.key, "POST", `/v3/api_keys/${wide.id}/rotate`),
      403,
      "A test API key cannot rotate a live key",
    );
    // The refused rotations changed nothing.
    expect((await api(wide.key, "GET", "/v3/scopes")).status).toBe(200);
  });
});

describe("the rotation guard (db/api-keys.ts)", () => {
  it("a rotation's write applies only if the secret and scopes are still those that were checked", async () => {
    const a = await adminTenant();
    const k = (await create(a, { name: "guarded", scopes: ["mail.send"] })).body;
    const keys = tenantApiKeys(createDb(env.DB), a.tenantId);
    const checked = (await keys.get(k.id))!;
    // A concurrent PUT widens the key after the check…
    expect(
      (await api(a.key, "PUT", `/v3/api_keys/${k.id}`, { name: "g", scopes: ["mail.send", "stats.read"] }))
        .status,
    ).toBe(200);
    // …so the rotation's write does not apply.
    expect(await keys.update(k.id, { prefix: "sg_live_ffffffff", keyHash: "x" }, checked)).toBeUndefined();
    const now = (await keys.get(k.id))!;
    expect(now.keyHash).toBe(checked.keyHash);
    expect(await keys.update(k.id, { name: "ok" }, now)).toMatchObject({ name: "ok" });
    // And another tenant's repository does not see the key at all.
    expect(await tenantApiKeys(createDb(env.DB), "tnt_other").get(k.id)).toBeUndefined();
    expect(await tenantApiKeys(createDb(env.DB), "tnt_other").update(k.id, { name: "x" })).toBeUndefined();
  });
});

describe("tenant isolation", () => {
  it("another tenant's key id → 404 on every route, exactly as an unknown id; nothing changes", async () => {
    const a = await adminTenant();
    const b = await adminTenant();
    const target = (await create(a, { name: "a-only", scopes: ["mail.send"] })).body;
    const unknown = await api(b.key, "GET", "/v3/api_keys/key_01HZZZZZZZZZZZZZZZZZZZZZZZ");
    for (const [m, p, body] of [
      ["GET", "", undefined],
      ["GET", "?include_revoked=true", undefined],
      ["PUT", "", { name: "pwned", scopes: [] }],
      ["PATCH", "", { name: "pwned" }],
      ["POST", "/rotate", undefined],
      ["DELETE", "", undefined],
    ] as const) {
      const r = await api(b.key, m, `/v3/api_keys/${target.id}${p}`, body);
      expect(r.status).toBe(404);
      expect(r.body).toEqual(unknown.body);
    }
    const list = await api(b.key, "GET", "/v3/api_keys?include_revoked=true");
    expect(list.body.result.map((k: { api_key_id: string }) => k.api_key_id)).toEqual([b.keyId]);
    // A's key is untouched and still works.
    expect((await api(a.key, "GET", `/v3/api_keys/${target.id}`)).body).toMatchObject({
      name: "a-only",
      scopes: ["mail.send"],
      revoked_at: null,
    });
    expect((await api(target.api_key, "GET", "/v3/scopes")).status).toBe(200);
  });
});

describe("get /v3/scopes", () => {
  it("answers the calling key's own scopes, with no particular scope needed", async () => {
    const tenantId = await createTenant();
    const k = await createApiKey(tenantId, { scopes: ["templates.read", "mail.send"] });
    const r = await api(k.key, "GET", "/v3/scopes");
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ scopes: ["templates.read", "mail.send"] });
    expectError(await api(k.key, "GET", "/v3/scopes?x=1"), 400, "x is not a parameter", "query.x");
    const none = await call("/v3/scopes");
    expect(none.status).toBe(401);
  });
});
