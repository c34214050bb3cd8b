/**
 * The webhook configuration API (docs/api/webhooks.md) through the real Worker and the tenant's
 * WebhookQueue object: ScaiSend endpoints (CRUD, secret shown once and rotated, scopes, tenant
 * isolation, 400s), SendGrid's Event Webhook settings and signed key, and the SSRF guard on the URL
 * a tenant gives. Host names are resolved by a table handed to the object (the resolver is the one
 * seam; DoH itself is exercised end to end in test/e2e/webhooks.e2e.test.ts).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { bearer, call, createApiKey, createTenant } from "./helpers.ts";
import { inQueue } from "./webhooks.helpers.ts";

const DNS: Record<string, string[]> = {
  "hooks.example.com": ["93.184.216.34"],
  "internal.example.com": ["10.1.2.3"],
  "sneaky.example.com": ["93.184.216.34", "127.0.0.1"],
  "metadata.example.com": ["169.254.169.254"],
  "v6-loop.example.com": ["::1"],
  "mapped.example.com": ["::ffff:192.168.1.1"],
};

async function tenantWithKeys() {
  const tenantId = await createTenant();
  const rw = await createApiKey(tenantId, { scopes: ["webhooks.read", "webhooks.write"] });
  const ro = await createApiKey(tenantId, { scopes: ["webhooks.read"] });
  await inQueue(tenantId, (q) => {
    q.resolver = async (host) => {
      const a = DNS[host];
      if (!a) throw new Error(`no such name ${host}`);
      return a;
    };
  });
  return { tenantId, key: rw.key, readOnly: ro.key };
}

async function api(key: string, method: string, path: string, body?: unknown) {
  const res = await call(path, {
    method,
    headers: bearer(key),
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as any) : null };
}

describe("/v3/user/webhooks", () => {
  it("creates an endpoint with its secret shown once, reads, lists, changes and deletes it", async () => {
    const t = await tenantWithKeys();
    const created = await api(t.key, "POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/in",
      enabled_events: ["delivered", "bounce"],
    });
    expect(created.status).toBe(201);
    expect(created.body.signing_secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(created.body).toMatchObject({
      url: "https://hooks.example.com/in",
      enabled_events: ["delivered", "bounce"],
      enabled: true,
      failure_count: 0,
      disabled_at: null,
    });
    const id = created.body.id as string;
    expect(id).toMatch(/^wh_/);

    const got = await api(t.readOnly, "GET", `/v3/user/webhooks/${id}`);
    expect(got.status).toBe(200);
    expect(got.body.signing_secret).toBeUndefined();
    expect(got.body.id).toBe(id);

    // The secret is stored sealed, never in clear.
    const stored = await inQueue(t.tenantId, (_q, state) =>
      state.storage.sql.exec<{ secret: string }>("SELECT secret FROM endpoint WHERE id = ?", id).one(),
    );
    expect(stored.secret).toMatch(/^v2\./);
    expect(stored.secret).not.toContain(created.body.signing_secret);

    const list = await api(t.readOnly, "GET", "/v3/user/webhooks?page=1&page_size=10&is_active=true");
    expect(list.status).toBe(200);
    expect(list.body.total).toBe(1);
    expect(list.body.webhooks.map((w: any) => w.id)).toEqual([id]);
    expect(list.body.webhooks[0].signing_secret).toBeUndefined();

    const paused = await api(t.key, "PATCH", `/v3/user/webhooks/${id}`, {
      enabled: false,
      enabled_events: ["*"],
    });
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ enabled: false, enabled_events: ["*"] });
    expect((await api(t.key, "GET", "/v3/user/webhooks?is_active=true")).body.total).toBe(0);
    expect((await api(t.key, "GET", "/v3/user/webhooks?is_active=false")).body.total).toBe(1);

    const rotated = await api(t.key, "POST", `/v3/user/webhooks/${id}/signing_secret`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.signing_secret).toMatch(/^whsec_/);
    expect(rotated.body.signing_secret).not.toBe(created.body.signing_secret);

    expect((await api(t.key, "DELETE", `/v3/user/webhooks/${id}`)).status).toBe(204);
    expect((await api(t.key, "GET", `/v3/user/webhooks/${id}`)).status).toBe(404);
  });

  it("keeps tenants apart and checks scopes", async () => {
    const a = await tenantWithKeys();
    const b = await tenantWithKeys();
    const created = await api(a.key, "POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/a",
      enabled_events: ["*"],
    });
    const id = created.body.id as string;
    for (const [method, path] of [
      ["GET", `/v3/user/webhooks/${id}`],
      ["PATCH", `/v3/user/webhooks/${id}`],
      ["DELETE", `/v3/user/webhooks/${id}`],
      ["POST", `/v3/user/webhooks/${id}/signing_secret`],
      ["GET", `/v3/user/webhooks/${id}/deliveries`],
    ] as const) {
      const r = await api(b.key, method, path, method === "PATCH" ? { enabled: false } : undefined);
      expect(r.status, `${method} ${path}`).toBe(404);
    }
    expect((await api(b.key, "GET", "/v3/user/webhooks")).body.total).toBe(0);
    expect((await api(a.key, "GET", `/v3/user/webhooks/${id}`)).body.enabled).toBe(true);

    const denied = await api(a.readOnly, "POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/x",
      enabled_events: ["*"],
    });
    expect(denied.status).toBe(403);
    expect(denied.body.detail).toBe("Missing required scope: webhooks.write");
    const noScope = await createApiKey(a.tenantId, { scopes: ["mail.send"] });
    expect((await api(noScope.key, "GET", "/v3/user/webhooks")).status).toBe(403);
    expect((await api(noScope.key, "GET", "/v3/user/webhooks/event/settings")).status).toBe(403);
  });

  it("answers 400 for bad input, and refuses fields it does not honour", async () => {
    const t = await tenantWithKeys();
    const cases: [unknown, RegExp][] = [
      [{ enabled_events: ["*"] }, /^url: /],
      [{ url: "https://hooks.example.com/", enabled_events: [] }, /^enabled_events: /],
      [{ url: "https://hooks.example.com/", enabled_events: ["opened"] }, /"opened" is not an event type/],
      [{ url: "https://hooks.example.com/", enabled_events: ["*", "open"] }, /not an event type/],
      [
        { url: "https://hooks.example.com/", enabled_events: ["*"], secret: "x" },
        /^secret: is not a known field/,
      ],
      [
        { url: "https://hooks.example.com/", enabled_events: ["*"], oauth_client_id: "id" },
        /^oauth_client_id: oauth_client_id, oauth_client_secret and oauth_token_url go together/,
      ],
      [{ url: "ftp://hooks.example.com/", enabled_events: ["*"] }, /^url: must be https/],
      [{ url: "http://hooks.example.com/", enabled_events: ["*"] }, /^url: must be https/],
      [{ url: "https://user:pw@hooks.example.com/", enabled_events: ["*"] }, /user name or password/],
      [{ url: `https://hooks.example.com/${"a".repeat(2100)}`, enabled_events: ["*"] }, /at most 2048/],
    ];
    for (const [i, [body, detail]] of cases.entries()) {
      // POST /v3/user/webhooks allows 10 a minute per tenant, refused ones included.
      const key = i < 9 ? t.key : (await tenantWithKeys()).key;
      const r = await api(key, "POST", "/v3/user/webhooks", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.detail).toMatch(detail);
    }
    const t2 = await tenantWithKeys();
    const raw = await call("/v3/user/webhooks", {
      method: "POST",
      headers: bearer(t2.key),
      body: "{not json",
    });
    expect(raw.status).toBe(400);
    const id = (
      await api(t2.key, "POST", "/v3/user/webhooks", {
        url: "https://hooks.example.com/",
        enabled_events: ["*"],
      })
    ).body.id;
    expect((await api(t2.key, "PATCH", `/v3/user/webhooks/${id}`, {})).status).toBe(400);
    expect((await api(t2.key, "PATCH", `/v3/user/webhooks/${id}`, { enabled: "yes" })).body.detail).toBe(
      "enabled: must be true or false",
    );
    expect((await api(t.key, "GET", "/v3/user/webhooks?page_size=101")).status).toBe(400);
  });

  it("refuses loopback, private, link-local and metadata destinations, named or literal", async () => {
    let t = await tenantWithKeys();
    const refused = [
      "https://127.0.0.1/hook",
      "https://127.1.2.3:8443/hook",
      "https://10.0.0.1/hook",
      "https://10.255.1.1/hook",
      "https://172.16.5.4/hook",
      "https://192.168.1.1/hook",
      "https://169.254.169.254/latest/meta-data/",
      "https://100.64.0.1/hook",
      "https://0.0.0.0/hook",
      "https://[::1]/hook",
      "https://[fd00:ec2::254]/hook",
      "https://[fe80::1]/hook",
      "https://[::ffff:127.0.0.1]/hook",
      "https://localhost/hook",
      "https://api.localhost/hook",
      "https://internal.example.com/hook",
      "https://sneaky.example.com/hook",
      "https://metadata.example.com/hook",
      "https://v6-loop.example.com/hook",
      "https://mapped.example.com/hook",
      "https://nowhere.example.com/hook",
    ];
    const tenants = [t];
    for (const [i, url] of refused.entries()) {
      if (i > 0 && i % 9 === 0) tenants.push((t = await tenantWithKeys()));
      const r = await api(t.key, "POST", "/v3/user/webhooks", { url, enabled_events: ["*"] });
      expect(r.status, url).toBe(400);
      expect(r.body.detail, url).toMatch(/^url: /);
    }
    const sendgrid = await api(t.key, "PATCH", "/v3/user/webhooks/event/settings", {
      enabled: true,
      url: "https://169.254.169.254/",
    });
    expect(sendgrid.status).toBe(400);
    expect(sendgrid.body.errors[0].field).toBe("url");
    const test = await api(t.key, "POST", "/v3/user/webhooks/event/test", { url: "https://10.0.0.1/" });
    expect(test.status).toBe(400);
    // Nothing was stored for any of them.
    for (const each of tenants) expect((await api(each.key, "GET", "/v3/user/webhooks")).body.total).toBe(0);
  });
});

describe("/v3/user/webhooks/event/settings (SendGrid)", () => {
  const FLAGS = [
    "processed",
    "deferred",
    "delivered",
    "bounce",
    "dropped",
    "open",
    "click",
    "spam_report",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
  ];

  it("reads and changes the single URL and its per-event booleans in SendGrid's shape", async () => {
    const t = await tenantWithKeys();
    const first = await api(t.readOnly, "GET", "/v3/user/webhooks/event/settings");
    expect(first.status).toBe(200);
    expect(Object.keys(first.body).sort()).toEqual(
      ["enabled", "url", "oauth_client_id", "oauth_token_url", ...FLAGS].sort(),
    );
    expect(first.body.enabled).toBe(false);
    for (const f of FLAGS) expect(first.body[f]).toBe(false);

    const patched = await api(t.key, "PATCH", "/v3/user/webhooks/event/settings", {
      enabled: true,
      url: "https://hooks.example.com/sg",
      delivered: true,
      bounce: true,
      spam_report: true,
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      enabled: true,
      url: "https://hooks.example.com/sg",
      delivered: true,
      bounce: true,
    });
    expect(patched.body.open).toBe(false);
    const again = await api(t.key, "PATCH", "/v3/user/webhooks/event/settings", { bounce: false });
    expect(again.body).toMatchObject({ enabled: true, delivered: true, bounce: false, spam_report: true });

    const bad = await api(t.key, "PATCH", "/v3/user/webhooks/event/settings", { delivered: "yes" });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0]).toMatchObject({ field: "delivered", message: "must be true or false" });
    const unknown = await api(t.key, "PATCH", "/v3/user/webhooks/event/settings", { opened: true });
    expect(unknown.status).toBe(400);
    const oauth = await api(t.key, "PATCH", "/v3/user/webhooks/event/settings", { oauth_client_id: "abc" });
    expect(oauth.status).toBe(400);
    expect(oauth.body.errors[0].field).toBe("oauth_client_id");
    const noUrl = await api((await tenantWithKeys()).key, "PATCH", "/v3/user/webhooks/event/settings", {
      enabled: true,
    });
    expect(noUrl.status).toBe(400);
  });

  it("makes an ECDSA P-256 key when signing is enabled and exposes its public key as SendGrid does", async () => {
    const t = await tenantWithKeys();
    expect((await api(t.key, "GET", "/v3/user/webhooks/event/settings/signed")).body).toEqual({
      public_key: "",
    });
    const on = await api(t.key, "PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: true });
    expect(on.status).toBe(200);
    const pk = on.body.public_key as string;
    expect(pk).toHaveLength(124);
    expect(pk.startsWith("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")).toBe(true);
    const key = await crypto.subtle.importKey(
      "spki",
      Uint8Array.from(atob(pk), (ch) => ch.charCodeAt(0)),
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["verify"],
    );
    expect((key.algorithm as { namedCurve?: string }).namedCurve).toBe("P-256");
    expect((await api(t.readOnly, "GET", "/v3/user/webhooks/event/settings/signed")).body.public_key).toBe(
      pk,
    );
    // Enabling again keeps the key; disabling deletes it, and enabling then makes a new one.
    expect(
      (await api(t.key, "PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: true })).body
        .public_key,
    ).toBe(pk);
    expect(
      (await api(t.key, "PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: false })).body,
    ).toEqual({
      public_key: "",
    });
    const fresh = (await api(t.key, "PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: true }))
      .body.public_key;
    expect(fresh).not.toBe(pk);
    const sealed = await inQueue(t.tenantId, (_q, state) =>
      state.storage.sql.exec<{ private_key: string }>("SELECT private_key FROM signing_key").one(),
    );
    expect(sealed.private_key).toMatch(/^v2\./);
    expect((await api(t.key, "PATCH", "/v3/user/webhooks/event/settings/signed", {})).status).toBe(400);
  });
});
