/**
 * The web dashboard at /app in workerd (docs/dashboard.md): sign-in with an operator-created login,
 * the session cookie's attributes, idle and absolute expiry, logout, CSRF and Origin refusals, the
 * sign-in throttle, tenant isolation of the pages, and a role without admin.api_keys seeing no key
 * management (its POST refused anyway). Real D1, real Worker; expiry is made by ageing the session's
 * row in D1, the one clock the session reads.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ABSOLUTE_MS, IDLE_MS, MAX_FAILURES } from "../../edge/src/services/dashboard-sessions.ts";
import { sha256Hex } from "../../edge/src/lib/crypto.ts";
import { PERMISSIONS } from "../../shared/permissions.ts";
import {
  call,
  createApiKey,
  createDomain,
  mailBody,
  operatorHeaders,
  sendOne,
  setupTenant,
  uid,
} from "./helpers.ts";
import { Browser, createLogin, createRole, PASSWORD } from "./dashboard.helpers.ts";

async function ageSession(b: Browser, by: { lastSeen?: number; created?: number }) {
  const idHash = await sha256Hex(b.cookie.split("=")[1]!);
  await env.DB.prepare(
    "UPDATE dashboard_sessions SET last_seen_at = last_seen_at - ?, created_at = created_at - ? WHERE id_hash = ?",
  )
    .bind(by.lastSeen ?? 0, by.created ?? 0, idHash)
    .run();
}

describe("dashboard sign-in and sessions", () => {
  it("signs in with an operator-created login; the cookie is HttpOnly, Secure, SameSite=Lax, Path=/app", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const b = new Browser();
    const res = await b.post(
      "/app/login",
      { email: login.email.toUpperCase(), password: PASSWORD, next: "/app/stats" },
      { csrf: null },
    );
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/app/stats");
    const cookie = res.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^scaisend_session=[0-9a-f]{64};/);
    for (const attr of ["HttpOnly", "Secure", "SameSite=Lax", "Path=/app"]) expect(cookie).toContain(attr);
    const page = await b.get("/app/messages");
    expect(page.status).toBe(200);
    expect(page.text).toContain(login.email);
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(page.headers.get("cache-control")).toBe("no-store");
    // D1 holds the session id's hash, never the id.
    const rows = await env.DB.prepare("SELECT id_hash FROM dashboard_sessions WHERE login_id = ?")
      .bind(login.id)
      .all();
    expect(rows.results.map((r) => r.id_hash)).toEqual([await sha256Hex(b.cookie.split("=")[1]!)]);
  });

  it("refuses a wrong password and an unknown email alike (401), and an off-site next", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const wrong = await new Browser().post(
      "/app/login",
      { email: login.email, password: "not the password" },
      { csrf: null },
    );
    const unknown = await new Browser().post(
      "/app/login",
      { email: `nobody-${uid()}@example.org`, password: PASSWORD },
      { csrf: null },
    );
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    expect(wrong.text).toContain("The email or the password is wrong.");
    expect(unknown.text).toContain("The email or the password is wrong.");
    const offsite = await new Browser().post(
      "/app/login",
      { email: login.email, password: PASSWORD, next: "//evil.example/x" },
      { csrf: null },
    );
    expect(offsite.headers.get("location")).toBe("/app/messages");
  });

  it("refuses a sign-in form posted from another origin, or with no Origin or Referer", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const cross = await new Browser().post(
      "/app/login",
      { email: login.email, password: PASSWORD },
      { csrf: null, origin: "https://evil.example" },
    );
    expect(cross.status).toBe(403);
    const none = await new Browser().post(
      "/app/login",
      { email: login.email, password: PASSWORD },
      { csrf: null, origin: null },
    );
    expect(none.status).toBe(403);
  });

  it(`throttles an (address, email) pair after ${MAX_FAILURES} failures, even with the right password`, async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    for (let i = 0; i < MAX_FAILURES; i++) {
      const r = await new Browser().post(
        "/app/login",
        { email: login.email, password: `wrong-${i}-password` },
        { csrf: null },
      );
      expect(r.status).toBe(401);
    }
    const right = await new Browser().post(
      "/app/login",
      { email: login.email, password: PASSWORD },
      { csrf: null },
    );
    expect(right.status).toBe(429);
    expect(Number(right.headers.get("retry-after"))).toBeGreaterThan(0);
    // Another email from the same address is not throttled.
    const other = await createLogin(t.tenantId, ["admin"]);
    await Browser.signIn(other.email);
  });

  it("a session ends after IDLE_MS without a request, and ABSOLUTE_MS after sign-in however active", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const idle = await Browser.signIn(login.email);
    await ageSession(idle, { lastSeen: IDLE_MS + 1000 });
    const r1 = await idle.get("/app/messages");
    expect(r1.status).toBe(303);
    expect(r1.headers.get("location")).toBe("/app/login?next=%2Fapp%2Fmessages");

    const old = await Browser.signIn(login.email);
    await ageSession(old, { created: ABSOLUTE_MS + 1000 });
    expect((await old.get("/app/messages")).status).toBe(303);

    const fresh = await Browser.signIn(login.email);
    await ageSession(fresh, { lastSeen: IDLE_MS - 60_000, created: ABSOLUTE_MS - 60_000 });
    expect((await fresh.get("/app/messages")).status).toBe(200);
  });

  it("logout ends the session on the server: the old cookie opens nothing", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const b = await Browser.signIn(login.email);
    const cookie = b.cookie;
    const out = await b.post("/app/logout");
    expect(out.status).toBe(303);
    expect(out.headers.get("location")).toBe("/app/login");
    expect(out.headers.get("set-cookie")).toMatch(/scaisend_session=;.*Max-Age=0/);
    const again = await call("/app/messages", { headers: { Cookie: cookie }, redirect: "manual" });
    expect(again.status).toBe(303);
  });

  it("an unsafe request without the session's CSRF token, with another session's, or from another origin is 403 and changes nothing", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const b = await Browser.signIn(login.email);
    const other = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    for (const opts of [
      { csrf: null },
      { csrf: "" },
      { csrf: other.csrf },
      { origin: "https://evil.example" },
      { origin: null },
    ]) {
      const r = await b.post("/app/keys", { name: `csrf-${uid()}`, scopes: "mail.send" }, opts);
      expect(r.status, JSON.stringify(opts)).toBe(403);
    }
    const logout = await b.post("/app/logout", {}, { csrf: null });
    expect(logout.status).toBe(403);
    const keys = await env.DB.prepare(
      "SELECT count(*) AS n FROM api_keys WHERE tenant_id = ? AND name LIKE 'csrf-%'",
    )
      .bind(t.tenantId)
      .first<{ n: number }>();
    expect(keys!.n).toBe(0);
    expect((await b.get("/app/messages")).status).toBe(200);
  });

  it("a new password signs the login out everywhere; a deleted login's session opens nothing", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const b = await Browser.signIn(login.email);
    const patch = await call(`/api/admin/tenants/${t.tenantId}/logins/${login.id}`, {
      method: "PATCH",
      headers: operatorHeaders(),
      body: JSON.stringify({ password: "another long password" }),
    });
    expect(patch.status).toBe(200);
    expect((await b.get("/app/messages")).status).toBe(303);
    const c = await Browser.signIn(login.email, "another long password");
    const del = await call(`/api/admin/tenants/${t.tenantId}/logins/${login.id}`, {
      method: "DELETE",
      headers: operatorHeaders(),
    });
    expect(del.status).toBe(204);
    expect((await c.get("/app/messages")).status).toBe(303);
  });
});

describe("the operator's login routes (/api/admin/tenants/{id}/logins)", () => {
  const logins = (tenantId: string, rest = "") => `/api/admin/tenants/${tenantId}/logins${rest}`;
  const send = (path: string, method: string, body?: unknown) =>
    call(path, { method, headers: operatorHeaders(), ...(body ? { body: JSON.stringify(body) } : {}) });

  it("create, list, change roles, delete; never the hash; the documented refusals", async () => {
    const t = await setupTenant();
    const email = `Ops-${uid()}@Example.org`;
    const created = await send(logins(t.tenantId), "POST", {
      email,
      password: PASSWORD,
      roles: ["developer"],
    });
    expect(created.status).toBe(201);
    const text = await created.text();
    const login = (JSON.parse(text) as { data: { id: string; email: string; roles: string[] } }).data;
    expect(login).toMatchObject({ email: email.toLowerCase(), roles: ["developer"] });
    expect(text).not.toMatch(/password|salt|hash/);
    const listed = (await (await send(logins(t.tenantId), "GET")).json()) as { data: { id: string }[] };
    expect(listed.data.map((l) => l.id)).toEqual([login.id]);
    const patched = await send(logins(t.tenantId, `/${login.id}`), "PATCH", { roles: ["admin"] });
    expect(((await patched.json()) as { data: { roles: string[] } }).data.roles).toEqual(["admin"]);

    const refusals: [unknown, number, string][] = [
      [
        { email: `a-${uid()}@example.org`, password: "short", roles: ["admin"] },
        400,
        "password must be at least 12 characters",
      ],
      [{ email: `a-${uid()}@example.org`, password: PASSWORD, roles: ["nope"] }, 400, "Unknown role: nope"],
      [{ email, password: PASSWORD, roles: ["admin"] }, 409, "A login with this email exists"],
      [
        { email: `a-${uid()}@example.org`, password: PASSWORD, roles: ["admin"], colour: "red" },
        422,
        "colour",
      ],
      [{ email: "not-an-email", password: PASSWORD, roles: ["admin"] }, 422, "email"],
    ];
    for (const [body, status, detail] of refusals) {
      const r = await send(logins(t.tenantId), "POST", body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(await r.text()).toContain(detail);
    }
    // The same email is taken in another tenant too; another tenant's login is not found here.
    const other = await setupTenant();
    expect(
      (await send(logins(other.tenantId), "POST", { email, password: PASSWORD, roles: ["admin"] })).status,
    ).toBe(409);
    expect((await send(logins(other.tenantId, `/${login.id}`), "DELETE")).status).toBe(404);
    expect((await send(logins("tnt_00000000000000000000000000"), "GET")).status).toBe(404);
    expect((await send(logins(t.tenantId, `/${login.id}`), "DELETE")).status).toBe(204);
    expect((await (await send(logins(t.tenantId), "GET")).json()) as unknown).toEqual({ data: [] });
    // A tenant's own API key, even with every permission, may not hand out logins.
    const key = await createApiKey(t.tenantId, { scopes: [...PERMISSIONS] });
    const byKey = await call(logins(t.tenantId), { headers: { Authorization: `Bearer ${key.key}` } });
    expect(byKey.status).toBe(403);
  });
});

describe("dashboard pages", () => {
  it("messages: the list uses /v3/messages' filters, a message page shows its timeline, headers and a sandboxed preview", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const m = uid();
    const id = await sendOne(
      t.liveKey,
      mailBody(t.from, {
        subject: `Subject ${m}`,
        categories: [`cat-${m}`],
        headers: { "X-Probe": `probe-${m}` },
        content: [
          { type: "text/plain", value: "plain" },
          { type: "text/html", value: `<p id="x">Hello ${m}</p><script>parent.pwned=1</script>` },
        ],
      }),
    );
    const b = await Browser.signIn(login.email);
    const page = await b.get(`/app/messages/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain(`Subject ${m}`);
    expect(page.text).toContain(`probe-${m}`);
    expect(page.text).toMatch(/<td>processed<\/td>/);
    // The HTML only inside srcdoc of a sandbox="" iframe, escaped: no live <script> on the page.
    expect(page.text).toMatch(
      /<iframe class="preview" sandbox="" [^>]*srcdoc="&lt;p id=&quot;x&quot;&gt;Hello/,
    );
    expect(page.text).not.toContain("<script>parent.pwned");
    // The list, filtered the API's way: the category finds it, another category does not; a bad filter is a 400.
    await expect
      .poll(async () => (await b.get(`/app/messages?category=cat-${m}`)).text, { timeout: 5000 })
      .toContain(`/app/messages/${id}`);
    expect((await b.get(`/app/messages?category=other-${m}`)).text).not.toContain(id);
    const bad = await b.get("/app/messages?status=nope");
    expect(bad.status).toBe(400);
    expect(bad.text).toContain("status");
    expect((await b.get("/app/messages/msg_00000000000000000000000000")).status).toBe(404);
  });

  it("API keys: create shows the secret once and the key works; revoke stops it", async () => {
    const t = await setupTenant();
    const login = await createLogin(t.tenantId, ["admin"]);
    const b = await Browser.signIn(login.email);
    const name = `dash-${uid()}`;
    const created = await b.post("/app/keys", {
      name,
      environment: "live",
      scopes: ["mail.send", "stats.read"],
    });
    expect(created.status, created.text).toBe(201);
    const secret = /<output class="secret" id="new-key-secret">(sg_live_[0-9a-f]{32})<\/output>/.exec(
      created.text,
    )?.[1];
    expect(secret).toBeDefined();
    const scopes = await call("/v3/scopes", { headers: { Authorization: `Bearer ${secret}` } });
    expect(await scopes.json()).toEqual({ scopes: ["mail.send", "stats.read"] });
    const list = await b.get("/app/keys");
    expect(list.text).toContain(name);
    expect(list.text).not.toContain(secret!);
    const keyId = (await env.DB.prepare("SELECT id FROM api_keys WHERE tenant_id = ? AND name = ?")
      .bind(t.tenantId, name)
      .first<{ id: string }>())!.id;
    const revoked = await b.post(`/app/keys/${keyId}/revoke`);
    expect(revoked.status).toBe(303);
    expect((await call("/v3/scopes", { headers: { Authorization: `Bearer ${secret}` } })).status).toBe(401);
    expect((await b.get("/app/keys")).text).not.toContain(name);
    // Scopes the session does not hold, and unknown fields, are refused.
    const unknownField = await b.post("/app/keys", { name: "x", colour: "red" });
    expect(unknownField.status).toBe(400);
    const keyAdmin = await createRole(t.tenantId, ["admin.api_keys", "mail.send"]);
    const narrow = await Browser.signIn((await createLogin(t.tenantId, [keyAdmin])).email);
    expect((await narrow.get("/app/keys")).text).not.toContain('value="stats.read"');
    const escalate = await narrow.post("/app/keys", {
      name: `esc-${uid()}`,
      scopes: ["mail.send", "stats.read"],
    });
    expect(escalate.status).toBe(403);
    expect(escalate.text).toContain("Cannot grant scopes this API key does not hold: stats.read");
  });

  it("a role without admin.api_keys sees no key-management link or form, and its POST is 403", async () => {
    const t = await setupTenant();
    const viewer = await createRole(t.tenantId, ["stats.read"]);
    const login = await createLogin(t.tenantId, [viewer]);
    const b = await Browser.signIn(login.email);
    const messages = await b.get("/app/messages");
    expect(messages.text).not.toContain('href="/app/keys"');
    expect(messages.text).toContain('href="/app/stats"');
    const keys = await b.get("/app/keys");
    expect(keys.status).toBe(403);
    expect(keys.text).not.toContain('id="create-key"');
    const post = await b.post("/app/keys", { name: `viewer-${uid()}`, scopes: "stats.read" });
    expect(post.status).toBe(403);
    const n = await env.DB.prepare(
      "SELECT count(*) AS n FROM api_keys WHERE tenant_id = ? AND name LIKE 'viewer-%'",
    )
      .bind(t.tenantId)
      .first<{ n: number }>();
    expect(n!.n).toBe(0);
    // The developer role (no admin.api_keys) is refused too; admin is not.
    const dev = await Browser.signIn((await createLogin(t.tenantId, ["developer"])).email);
    expect((await dev.get("/app/keys")).status).toBe(403);
  });

  it("tenant isolation: tenant B's session never sees tenant A's message or key", async () => {
    const a = await setupTenant();
    const bT = await setupTenant();
    const m = uid();
    const id = await sendOne(
      a.liveKey,
      mailBody(a.from, { subject: `Secret ${m}`, categories: [`cat-${m}`] }),
    );
    const aLogin = await createLogin(a.tenantId, ["admin"]);
    const aBrowser = await Browser.signIn(aLogin.email);
    const keyName = `a-key-${m}`;
    expect((await aBrowser.post("/app/keys", { name: keyName, scopes: "mail.send" })).status).toBe(201);
    const aKeyId = (await env.DB.prepare("SELECT id FROM api_keys WHERE name = ?")
      .bind(keyName)
      .first<{ id: string }>())!.id;

    const b = await Browser.signIn((await createLogin(bT.tenantId, ["admin"])).email);
    const detail = await b.get(`/app/messages/${id}`);
    expect(detail.status).toBe(404);
    expect(detail.text).not.toContain(`Secret ${m}`);
    const list = await b.get(`/app/messages?category=cat-${m}`);
    expect(list.text).not.toContain(id);
    const all = await b.get("/app/messages");
    expect(all.text).not.toContain(m);
    const keys = await b.get("/app/keys");
    expect(keys.text).not.toContain(keyName);
    expect(keys.text).not.toContain(a.liveKeyId);
    const revoke = await b.post(`/app/keys/${aKeyId}/revoke`);
    expect(revoke.status).toBe(404);
    expect((await aBrowser.get("/app/keys")).text).toContain(keyName);
  });

  it("stats: the 16 metrics per day in a table, the chart's data island, and uPlot served immutable", async () => {
    const t = await setupTenant();
    await sendOne(t.liveKey, mailBody(t.from));
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const today = new Date().toISOString().slice(0, 10);
    const page = await b.get(`/app/stats?start_date=${today}&end_date=${today}`);
    expect(page.status).toBe(200);
    const island = JSON.parse(
      /<script type="application\/json" id="stats-data">(.*?)<\/script>/s.exec(page.text)![1]!,
    );
    expect(island.metrics).toHaveLength(16);
    expect(island.days).toEqual([today]);
    expect(island.values.requests).toEqual([1]);
    const scripts = [...page.text.matchAll(/<script src="([^"]+)"/g)].map((x) => x[1]!);
    expect(scripts[0]).toBe("/app/assets/uplot-1.6.32.iife.min.js");
    const lib = await call(scripts[0]!);
    expect(lib.status).toBe(200);
    expect(lib.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(lib.headers.get("content-type")).toContain("text/javascript");
    expect(await lib.text()).toContain("uPlot");
    const chart = await call(scripts[1]!);
    expect(await chart.text()).toContain("stats-data");
    const css = /<link rel="stylesheet" href="([^"]+)"/.exec(page.text)![1]!;
    expect(await (await call(css)).text()).toContain("--accent");
    expect((await b.get("/app/stats?start_date=2026-02-30")).status).toBe(400);
    expect((await b.get("/app/stats?colour=red")).status).toBe(400);
  });

  it("domains: the records to publish with copy buttons, rotate DKIM; domains.read may look, not act", async () => {
    const t = await setupTenant();
    const name = `fresh-${uid()}.example.com`;
    const d = await createDomain(t.tenantId, name);
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const list = await b.get("/app/domains");
    expect(list.text).toContain(`href="/app/domains/${d.id}"`);
    const page = await b.get(`/app/domains/${d.id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain(`scaisend._domainkey.${name}`);
    expect(page.text).toMatch(/v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+/);
    expect(page.text).toMatch(/<button type="button" class="copy" data-copy="value-0"[^>]*hidden/);
    expect(page.text).toMatch(/<script src="\/app\/assets\/copy-[0-9a-f]{8}\.js" defer(="")?>/);
    expect(page.text).toContain(`action="/app/domains/${d.id}/verify"`);
    const rotated = await b.post(`/app/domains/${d.id}/rotate-dkim`);
    expect(rotated.status).toBe(200);
    expect(rotated.text).toContain("A new DKIM key was made");
    const after = (await (
      await call(`/api/admin/domains/${d.id}?tenant_id=${t.tenantId}`, { headers: operatorHeaders() })
    ).json()) as {
      data: { dkim_pending_selector: string | null };
    };
    expect(after.data.dkim_pending_selector).not.toBeNull();
    expect(rotated.text).toContain(`${after.data.dkim_pending_selector}._domainkey.${name}`);

    const reader = await Browser.signIn(
      (await createLogin(t.tenantId, [await createRole(t.tenantId, ["domains.read"])])).email,
    );
    const readOnly = await reader.get(`/app/domains/${d.id}`);
    expect(readOnly.status).toBe(200);
    expect(readOnly.text).not.toContain("/verify");
    expect(readOnly.text).not.toContain("/rotate-dkim");
    expect((await reader.post(`/app/domains/${d.id}/rotate-dkim`)).status).toBe(403);
    expect((await reader.post(`/app/domains/${d.id}/verify`)).status).toBe(403);
    // The developer role has no domains.* at all: no link, and the page is refused.
    const dev = await Browser.signIn((await createLogin(t.tenantId, ["developer"])).email);
    expect((await dev.get("/app/messages")).text).not.toContain('href="/app/domains"');
    expect((await dev.get(`/app/domains/${d.id}`)).status).toBe(403);
  });

  it("suppressions: a list with its addresses, remove one; suppressions.read may look, not remove", async () => {
    const t = await setupTenant();
    const key = await createApiKey(t.tenantId, { scopes: ["suppressions.read", "suppressions.write"] });
    const m = uid();
    const api = (method: string, path: string, body?: unknown) =>
      call(path, {
        method,
        headers: { Authorization: `Bearer ${key.key}`, "Content-Type": "application/json" },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    for (const email of [`one-${m}@example.org`, `two-${m}@example.org`])
      expect(
        (await api("POST", "/v3/suppression/bounces", { email, reason: `550 no such user ${m}` })).status,
      ).toBe(201);
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const page = await b.get("/app/suppressions?list=bounces");
    expect(page.text).toContain(`one-${m}@example.org`);
    expect(page.text).toContain(`550 no such user ${m}`);
    const filtered = await b.get(`/app/suppressions?list=bounces&email=two-${m}`);
    expect(filtered.text).toContain(`two-${m}@example.org`);
    expect(filtered.text).not.toContain(`one-${m}@example.org`);
    const removed = await b.post("/app/suppressions/bounces/remove", { email: `one-${m}@example.org` });
    expect(removed.status).toBe(303);
    expect((await api("GET", `/v3/suppression/bounces/one-${m}@example.org`)).status).toBe(404);
    expect((await b.post("/app/suppressions/bounces/remove", { email: `one-${m}@example.org` })).status).toBe(
      404,
    );
    expect(
      (await b.post("/app/suppressions/unsubscribes/remove", { email: `two-${m}@example.org` })).status,
    ).toBe(404);
    expect((await b.get("/app/suppressions?list=nope")).status).toBe(400);
    expect(
      (await b.post("/app/suppressions/bounces/remove", { email: `two-${m}@example.org`, extra: "x" }))
        .status,
    ).toBe(400);

    const reader = await Browser.signIn(
      (await createLogin(t.tenantId, [await createRole(t.tenantId, ["suppressions.read"])])).email,
    );
    const readOnly = await reader.get("/app/suppressions?list=bounces");
    expect(readOnly.text).toContain(`two-${m}@example.org`);
    expect(readOnly.text).not.toContain("/remove");
    expect(
      (await reader.post("/app/suppressions/bounces/remove", { email: `two-${m}@example.org` })).status,
    ).toBe(403);
    expect((await api("GET", `/v3/suppression/bounces/two-${m}@example.org`)).status).toBe(200);
  });
});
