/**
 * Every dashboard route the Worker serves (createApp().routes under /app, classified in
 * test/edge/route-table.ts ROUTES), probed against the real Worker:
 *  - without a live session (none, an unknown or malformed cookie, or any bearer credential: an API
 *    key with every permission, the operator token) a page is a 303 to /app/login and runs nothing;
 *  - a session of the tenant without the route's permission is 403; with it, not refused;
 *  - tenant B's session holding every permission on tenant A's ids answers 404, as for an id that
 *    exists nowhere, and no answer B gets carries A's data;
 *  - the sign-in form post is refused (403) without this origin's Origin or Referer.
 * The permission each route needs is the API's table (surfaces/route-permissions.ts).
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { PERMISSIONS, type Permission } from "../../shared/permissions.ts";
import { createApp } from "../../edge/src/app.ts";
import { ROUTE_PERMISSIONS } from "../../edge/src/surfaces/route-permissions.ts";
import { BASE, call, createApiKey, mailBody, sendOne, setupTenant, uid } from "./helpers.ts";
import { Browser, createLogin, createRole, form } from "./dashboard.helpers.ts";
import { inQueue } from "./webhooks.helpers.ts";

const PUBLIC = new Set([
  "GET /app",
  "GET /app/assets/:file",
  "GET /app/login",
  "POST /app/login",
  // Sign-in with ScaiKey (test/edge/dashboard.oidc.test.ts); 404 where no issuer is configured.
  "POST /app/login/scaikey",
  "GET /app/login/scaikey/callback",
]);
const ROUTES = [
  ...new Set(
    createApp()
      .routes.filter((r) => r.method !== "ALL" && r.path.startsWith("/app"))
      .map((r) => `${r.method} ${r.path}`),
  ),
].sort();
// Sign-out last: it ends the session the probes after it would use.
const GUARDED = ROUTES.filter((r) => !PUBLIC.has(r)).sort(
  (x, y) => Number(x === "POST /app/logout") - Number(y === "POST /app/logout"),
);
const needed = (r: string) => ROUTE_PERMISSIONS[r]!;

interface Ids {
  messageId: string;
  keyId: string;
  domainId: string;
  /** The domain's name (what its delete's confirmation asks to type). */
  domainName: string;
  /** An address on the tenant's bounces list. */
  email: string;
  templateId: string;
  versionId: string;
  /** A ScaiSend webhook endpoint of the tenant's (wh_…). */
  webhookId: string;
  /** An unsubscribe group holding `email`. */
  groupId: string;
}
const NOWHERE: Ids = {
  messageId: "msg_00000000000000000000000000",
  keyId: "key_00000000000000000000000000",
  domainId: "dom_00000000000000000000000000",
  domainName: "nowhere.example",
  email: "nobody@example.org",
  templateId: "d-00000000000000000000000000000000",
  versionId: "00000000-0000-4000-8000-000000000000",
  webhookId: "wh_00000000000000000000000000",
  groupId: "999999999999999",
};

/** Routes whose only parameter is a list's name, not a tenant's id: B's session gets B's own list. */
const LIST_NAMED = new Set([
  "GET /app/suppressions/:list/export",
  "POST /app/suppressions/:list/import",
  "POST /app/suppressions/:list/add",
]);

function pathOf(route: string, ids: Ids): string {
  const path = route.slice(route.indexOf(" ") + 1);
  const id = path.startsWith("/app/keys")
    ? ids.keyId
    : path.startsWith("/app/domains")
      ? ids.domainId
      : path.startsWith("/app/templates")
        ? ids.templateId
        : path.startsWith("/app/webhooks")
          ? ids.webhookId
          : path.startsWith("/app/suppressions/groups")
            ? ids.groupId
            : ids.messageId;
  return path
    .replace(/:id/, id)
    .replace(/:vid/, ids.versionId)
    .replace(/:delivery_id/, "whd_00000000000000000000000000")
    .replace(/:list/, "bounces");
}

/** A browser's request: GETs plain, POSTs as the page's own form (Origin and CSRF token) with a valid body. */
async function hit(route: string, ids: Ids, b: Browser | null, headers: Record<string, string> = {}) {
  const [method] = route.split(" ") as [string];
  const path = pathOf(route, ids);
  if (b && method === "GET") return b.get(path);
  const fields: Record<string, Record<string, string | string[]>> = {
    "POST /app/keys": { name: `probe-${uid()}`, scopes: [] },
    "POST /app/suppressions/:list/remove": { email: ids.email },
    "POST /app/templates/:id/versions/:vid/preview": { data: "{}" },
    "POST /app/webhooks/:id/enabled": { enabled: "false" },
    "POST /app/webhooks/event/settings": { url: "" },
    "POST /app/domains/:id/dmarc": { dmarc_policy: "reject", dmarc_rua_email: "" },
    "POST /app/domains/:id/delete": { confirm_domain: ids.domainName },
    "POST /app/suppressions/:list/add": { email: `probe-${uid()}@example.org` },
    "POST /app/suppressions/groups": { name: `probe-${uid()}`.slice(0, 30) },
    "POST /app/suppressions/groups/:id/edit": { name: "probe", description: "probe" },
    "POST /app/suppressions/groups/:id/delete": { confirm: "yes" },
    "POST /app/suppressions/groups/:id/add": { emails: `probe-${uid()}@example.org` },
    "POST /app/suppressions/groups/:id/remove": { email: ids.email },
  };
  if (b) return b.post(path, fields[route] ?? {});
  const res = await call(path, {
    method,
    headers: { Origin: BASE, "Content-Type": "application/x-www-form-urlencoded", ...headers },
    ...(method === "POST" ? { body: form({ _csrf: "0".repeat(64) }) } : {}),
    redirect: "manual",
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

describe("dashboard routes", () => {
  let a: { ids: Ids; markers: string[]; browser: Browser; key: string };
  let b: Browser;

  beforeAll(async () => {
    const t = await setupTenant();
    const m = uid();
    const messageId = await sendOne(
      t.liveKey,
      mailBody(t.from, {
        subject: `Subject ${m}`,
        categories: [`cat-${m}`],
        personalizations: [{ to: [{ email: `leak-${m}@example.org` }] }],
      }),
    );
    const admin = await createApiKey(t.tenantId, { scopes: [...PERMISSIONS] });
    const email = `bounced-${m}@example.org`;
    const added = await call("/v3/suppression/bounces", {
      method: "POST",
      headers: { Authorization: `Bearer ${admin.key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ email, reason: `reason-${m}` }),
    });
    expect(added.status, await added.clone().text()).toBeLessThan(300);
    const json = { Authorization: `Bearer ${admin.key}`, "Content-Type": "application/json" };
    const tpl = await call("/v3/templates", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ name: `template-${m}`, generation: "dynamic" }),
    });
    expect(tpl.status, await tpl.clone().text()).toBe(201);
    const templateId = ((await tpl.json()) as { id: string }).id;
    const ver = await call(`/v3/templates/${templateId}/versions`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ name: `version-${m}`, subject: `Subject ${m}`, html_content: `<p>${m}</p>` }),
    });
    expect(ver.status, await ver.clone().text()).toBe(201);
    const versionId = ((await ver.json()) as { id: string }).id;
    const grp = await call("/v3/asm/groups", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ name: `group-${m}`.slice(0, 30), description: `description-${m}` }),
    });
    expect(grp.status, await grp.clone().text()).toBe(201);
    const groupId = String(((await grp.json()) as { id: number }).id);
    const inGroup = await call(`/v3/asm/groups/${groupId}/suppressions`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ recipient_emails: [email] }),
    });
    expect(inGroup.status, await inGroup.clone().text()).toBe(201);
    // A real endpoint of A's (the queue's resolver is its seam, as in test/edge/route-table.ts).
    await inQueue(t.tenantId, (q) => {
      q.resolver = async () => ["93.184.216.34"];
    });
    const hook = await call("/v3/user/webhooks", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ url: `https://hooks.example.com/in-${m}`, enabled_events: ["*"] }),
    });
    expect(hook.status, await hook.clone().text()).toBe(201);
    const webhookId = ((await hook.json()) as { id: string }).id;
    const browser = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    a = {
      ids: {
        messageId,
        keyId: admin.id,
        domainId: t.domainId,
        domainName: t.domain,
        email,
        templateId,
        versionId,
        groupId,
        webhookId,
      },
      markers: [
        m,
        t.tenantId,
        messageId,
        admin.id,
        t.liveKeyId,
        t.domain,
        templateId,
        versionId,
        webhookId,
      ].map((s) => s.toLowerCase()),
      browser,
      key: admin.key,
    };
    const other = await setupTenant();
    b = await Browser.signIn((await createLogin(other.tenantId, ["admin"])).email);
  }, 120_000);

  it("every dashboard route is either public or declares its permission in the API's table", () => {
    expect(GUARDED.length).toBeGreaterThan(5);
    expect(GUARDED.filter((r) => !Object.hasOwn(ROUTE_PERMISSIONS, r))).toEqual([]);
    expect(ROUTES.filter((r) => PUBLIC.has(r))).toEqual([...PUBLIC].sort());
  });

  it("without a live session every page is a 303 to /app/login, whatever bearer credential comes along", async () => {
    const out: string[] = [];
    for (const r of GUARDED) {
      for (const [label, headers] of [
        ["none", {}],
        ["unknown cookie", { Cookie: `scaisend_session=${"ab".repeat(32)}` }],
        ["malformed cookie", { Cookie: "scaisend_session=../../x" }],
        ["API key with every permission", { Authorization: `Bearer ${a.key}` }],
        ["operator token", { Authorization: `Bearer ${env.ADMIN_TOKEN}` }],
      ] as const) {
        const res = await hit(r, a.ids, null, headers);
        if (res.status !== 303 || !res.headers.get("location")?.startsWith("/app/login"))
          out.push(`${r} ${label} → ${res.status}`);
      }
    }
    expect(out).toEqual([]);
    // Nothing ran: A's key is not revoked, no key was created.
    expect((await call("/v3/scopes", { headers: { Authorization: `Bearer ${a.key}` } })).status).toBe(200);
  });

  it("a session without a route's permission is 403 there; one with only that permission is not refused", async () => {
    const t = await setupTenant();
    const nothing = await Browser.signIn(
      (await createLogin(t.tenantId, [await createRole(t.tenantId, [])])).email,
    );
    const out: string[] = [];
    const sets = new Map<string, Permission[]>();
    for (const r of GUARDED) {
      const n = needed(r);
      const res = await hit(r, NOWHERE, nothing);
      if (n === "any" ? res.status === 401 || res.status === 403 : res.status !== 403)
        out.push(`${r} no permissions → ${res.status}`);
      if (n !== "any") sets.set(n.join(","), [...n]);
    }
    for (const perms of sets.values()) {
      const s = await Browser.signIn(
        (await createLogin(t.tenantId, [await createRole(t.tenantId, [perms[0]!])])).email,
      );
      for (const r of GUARDED.filter(
        (r) => needed(r) !== "any" && (needed(r) as Permission[]).includes(perms[0]!),
      )) {
        const res = await hit(r, NOWHERE, s);
        // A 303 elsewhere than the sign-in page is a form's answer (the change was made).
        const toSignIn = res.status === 303 && res.headers.get("location")?.startsWith("/app/login");
        if (res.status === 401 || res.status === 403 || toSignIn)
          out.push(`${r} with ${perms[0]} → ${res.status}`);
      }
    }
    expect(out).toEqual([]);
  }, 120_000);

  it("tenant B's session (every permission) on A's ids is 404 as for no id at all, and no page carries A's data", async () => {
    const out: string[] = [];
    for (const r of GUARDED.filter((r) => r.includes(":") || r.startsWith("GET "))) {
      const res = await hit(r, a.ids, b);
      const sent = pathOf(r, a.ids).toLowerCase();
      const lower = res.text.toLowerCase();
      const leaked = a.markers.filter((mk) => lower.includes(mk) && !sent.includes(mk));
      if (leaked.length) out.push(`${r} → ${res.status} carries ${leaked.join(", ")}`);
      if (r.includes(":") && !LIST_NAMED.has(r)) {
        const nowhere = await hit(r, NOWHERE, b);
        if (res.status !== 404 || nowhere.status !== 404)
          out.push(`${r} → ${res.status} on A's id, ${nowhere.status} on none`);
      } else if (r.startsWith("GET ") && res.status !== 200) out.push(`${r} → ${res.status}`);
    }
    expect(out).toEqual([]);
    // A's key survived B's revoke, and A still sees its message.
    expect((await call("/v3/scopes", { headers: { Authorization: `Bearer ${a.key}` } })).status).toBe(200);
    expect((await a.browser.get(`/app/messages/${a.ids.messageId}`)).status).toBe(200);
    expect((await a.browser.get("/app/suppressions?list=bounces")).text).toContain(a.ids.email);
    expect((await a.browser.get(`/app/templates/${a.ids.templateId}`)).text).toContain(">active</td>");
    // A's endpoint: its page opens for A, and B's enable/disable, test and retry posts changed nothing.
    const own = await a.browser.get(`/app/webhooks/${a.ids.webhookId}`);
    expect(own.status).toBe(200);
    expect(own.text).toContain("<dd>enabled</dd>");
    const group = await call(`/v3/asm/groups/${a.ids.groupId}`, {
      headers: { Authorization: `Bearer ${a.key}` },
    });
    expect(await group.json()).toMatchObject({
      description: expect.stringMatching(/^description-/),
      unsubscribes: 1,
    });
    // A's domain survived B's delete and DMARC posts.
    const domain = await call(`/api/admin/domains/${a.ids.domainId}`, {
      headers: { Authorization: `Bearer ${a.key}` },
    });
    expect(domain.status).toBe(200);
    expect(((await domain.json()) as { data: { dmarc_policy: string } }).data.dmarc_policy).toBe("none");
  });

  it("public routes answer without a session; the sign-in post needs this origin", async () => {
    expect((await call("/app", { redirect: "manual" })).headers.get("location")).toBe("/app/messages");
    expect((await call("/app/login")).status).toBe(200);
    expect((await call("/app/assets/uplot-1.6.32.min.css")).status).toBe(200);
    expect((await call("/app/assets/nothing.js")).status).toBe(404);
    for (const headers of [
      {},
      { Origin: "https://evil.example" },
      { Referer: "https://evil.example/login" },
    ] as Record<string, string>[]) {
      const res = await call("/app/login", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", ...headers },
        body: form({ email: "x@example.org", password: "whatever-password" }),
      });
      expect(res.status, JSON.stringify(headers)).toBe(403);
    }
    const referer = await call("/app/login", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Referer: `${BASE}/app/login` },
      body: form({ email: `nobody-${uid()}@example.org`, password: "whatever-password" }),
    });
    expect(referer.status).toBe(401);
  });
});
