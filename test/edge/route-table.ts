/**
 * The classification of every route of the Worker, shared by the route-auth test files (split so
 * vitest-pool-workers can run them side by side; the table is one module so each new route is
 * classified in one place):
 *  - test/edge/route-auth.test.ts: every route the app serves is in ROUTES (and nothing else is), the
 *    permission table the guards read agrees; public, origin, operator, JWT, signed, admin identity
 *    and SenderKit routes refuse the wrong credentials;
 *  - test/edge/route-auth.tenant.test.ts: every tenant route answers 401 without credentials, 403 to
 *    a key without the route's permission, and 404 to tenant B's key on tenant A's ids (never A's
 *    data: no id, address, name or category of A appears in any answer B gets, lists included);
 *  - test/edge/route-auth.matrix.test.ts: a key holding only P reaches exactly the routes that
 *    declare P (plus the routes any key may read) and gets 403 everywhere else
 *    (docs/api/admin.md#permissions).
 * The routes declare their permission in their own surface modules; ROUTES below is the one table
 * that says which permission each route needs, checked against the running code.
 * New routes go here (and in edge/src/surfaces/route-permissions.ts).
 */
import { expect } from "vitest";
import { PERMISSIONS, type Permission } from "../../shared/permissions.ts";
import { createApp } from "../../edge/src/app.ts";
import { call, createApiKey, mailBody, setupTenant, sendOne, bearer, uid } from "./helpers.ts";
import { encodePng } from "./image-fixtures.ts";
import { inQueue } from "./webhooks.helpers.ts";

export type Guard =
  | { kind: "public" }
  | { kind: "origin" }
  | { kind: "operator" }
  /** A ScaiKey JWT, not an API key (docs/api/sendgrid.md#scaikey-jwts). */
  | { kind: "jwt" }
  /** perms: any one of them is enough; "any": every valid key of the tenant. */
  | { kind: "tenant"; perms: readonly Permission[] | "any" }
  /** A SenderKit key (sk_live_/sk_test_), which has no permissions (docs/api/senderkit.md#authentication). */
  | { kind: "senderkit" }
  /**
   * The dashboard's pages (docs/dashboard.md): a session cookie whose login's roles hold `perms` (any
   * one; "any": every session of the tenant) and, on unsafe methods, its CSRF token; no bearer
   * credential opens them. Probed in test/edge/dashboard.routes.test.ts (no session, missing
   * permission, tenant B's session on A's ids).
   */
  | { kind: "dashboard"; perms: readonly Permission[] | "any" }
  /** The dashboard's sign-in form post: public, but only from the Worker's own origin (login CSRF). */
  | { kind: "dashboard_signin" }
  /** Signed by ScaiKey (X-Scaikey-Signature, docs/scaikey.md#webhook): no credential opens it. */
  | { kind: "signed" }
  /**
   * The admin API's identity routes (docs/api/admin.md#credentials): a ScaiKey JWT with `perms` (any
   * one; "any": every JWT of the tenant) or the operator token; API keys are refused (403). The JWT
   * permission matrix of these routes is in test/edge/identity.test.ts.
   */
  | { kind: "admin_jwt"; perms: readonly Permission[] | "any" };

export const PUBLIC: Guard = { kind: "public" };
export const ORIGIN: Guard = { kind: "origin" };
export const OPERATOR: Guard = { kind: "operator" };
export const JWT: Guard = { kind: "jwt" };
export const SENDERKIT: Guard = { kind: "senderkit" };
export const DASHBOARD_SIGNIN: Guard = { kind: "dashboard_signin" };
export const dashboard = (...perms: Permission[]): Guard => ({
  kind: "dashboard",
  perms: perms.length ? perms : "any",
});
export const SIGNED: Guard = { kind: "signed" };
export const adminJwt = (...perms: Permission[]): Guard => ({
  kind: "admin_jwt",
  perms: perms.length ? perms : "any",
});
export const ANY_KEY: Guard = { kind: "tenant", perms: "any" };
export const needs = (...perms: Permission[]): Guard => ({ kind: "tenant", perms });

/** Which credential and permission each route needs: the single table of docs/api/admin.md#permissions. */
export const ROUTES: Record<string, Guard> = {
  "GET /healthz": PUBLIC,
  // The web dashboard (docs/dashboard.md): its files and sign-in form are public, its pages need a session.
  "GET /app": PUBLIC,
  "GET /app/assets/:file": PUBLIC,
  "GET /app/login": PUBLIC,
  "POST /app/login": DASHBOARD_SIGNIN,
  "POST /app/login/scaikey": DASHBOARD_SIGNIN,
  "GET /app/login/scaikey/callback": PUBLIC,
  "POST /app/logout": dashboard(),
  "GET /app/messages": dashboard(),
  "GET /app/messages/:id": dashboard(),
  "GET /app/stats": dashboard("stats.read"),
  "GET /app/keys": dashboard("admin.api_keys"),
  "POST /app/keys": dashboard("admin.api_keys"),
  "POST /app/keys/:id/revoke": dashboard("admin.api_keys"),
  "GET /app/domains": dashboard("domains.read"),
  "GET /app/domains/:id": dashboard("domains.read"),
  "POST /app/domains/:id/verify": dashboard("domains.write"),
  "POST /app/domains/:id/rotate-dkim": dashboard("domains.write"),
  "POST /app/domains": dashboard("domains.write"),
  "POST /app/domains/:id/dkim/ed25519": dashboard("domains.write"),
  "POST /app/domains/:id/dkim/ed25519/remove": dashboard("domains.write"),
  "POST /app/domains/:id/dmarc": dashboard("domains.write"),
  "GET /app/domains/:id/delete": dashboard("domains.write"),
  "POST /app/domains/:id/delete": dashboard("domains.write"),
  "GET /app/suppressions": dashboard("suppressions.read"),
  "POST /app/suppressions/:list/remove": dashboard("suppressions.write"),
  "GET /app/suppressions/:list/export": dashboard("suppressions.read"),
  "POST /app/suppressions/:list/import": dashboard("suppressions.write"),
  "POST /app/suppressions/:list/add": dashboard("suppressions.write"),
  "GET /app/suppressions/groups": dashboard("suppressions.read"),
  "POST /app/suppressions/groups": dashboard("suppressions.write"),
  "GET /app/suppressions/groups/:id": dashboard("suppressions.read"),
  "POST /app/suppressions/groups/:id/edit": dashboard("suppressions.write"),
  "GET /app/suppressions/groups/:id/delete": dashboard("suppressions.write"),
  "POST /app/suppressions/groups/:id/delete": dashboard("suppressions.write"),
  "POST /app/suppressions/groups/:id/add": dashboard("suppressions.write"),
  "POST /app/suppressions/groups/:id/remove": dashboard("suppressions.write"),
  "GET /app/webhooks": dashboard("webhooks.read"),
  "GET /app/webhooks/:id": dashboard("webhooks.read"),
  "POST /app/webhooks/:id/enabled": dashboard("webhooks.write"),
  "POST /app/webhooks/:id/test": dashboard("webhooks.write"),
  "POST /app/webhooks/:id/deliveries/:delivery_id/retry": dashboard("webhooks.write"),
  "POST /app/webhooks/event/settings": dashboard("webhooks.write"),
  "POST /app/webhooks/event/settings/test": dashboard("webhooks.write"),
  "POST /app/webhooks/event/settings/deliveries/:delivery_id/retry": dashboard("webhooks.write"),
  "GET /app/templates": dashboard("templates.read"),
  "GET /app/templates/:id": dashboard("templates.read"),
  "GET /app/templates/:id/versions/:vid": dashboard("templates.read"),
  "POST /app/templates/:id/versions/:vid/preview": dashboard("templates.read"),
  "POST /app/templates/:id/versions/:vid/activate": dashboard("templates.write"),
  "POST /api/admin/tenants/:id/logins": OPERATOR,
  "GET /api/admin/tenants/:id/logins": OPERATOR,
  "PATCH /api/admin/tenants/:id/logins/:login_id": OPERATOR,
  "DELETE /api/admin/tenants/:id/logins/:login_id": OPERATOR,
  "GET /health": PUBLIC,
  "GET /t/o/:file": PUBLIC,
  "GET /t/c/:token": PUBLIC,
  "GET /t/u/:token": PUBLIC,
  "POST /t/u/:token": PUBLIC,
  "GET /i/:id": PUBLIC,
  "GET /i/p/:token": PUBLIC,

  "GET /link": ORIGIN,
  "GET /origin/blobs/*": ORIGIN,
  "GET /origin/templates/*": ORIGIN,

  "POST /api/admin/tenants": OPERATOR,
  "GET /api/admin/tenants": adminJwt(),
  "GET /api/admin/tenants/:id": adminJwt(),
  "PATCH /api/admin/tenants/:id": adminJwt("admin.settings"),
  "GET /api/admin/partners": adminJwt(),
  "GET /api/admin/partners/:id": adminJwt(),
  "POST /api/admin/partners": OPERATOR,
  "PATCH /api/admin/partners/:id": OPERATOR,
  "DELETE /api/admin/partners/:id": OPERATOR,
  "GET /api/admin/permissions": adminJwt(),
  "GET /api/admin/permissions/:id": adminJwt(),
  "GET /api/admin/roles": adminJwt(),
  "GET /api/admin/roles/:id": adminJwt(),
  "POST /api/admin/roles": adminJwt("admin.users"),
  "PATCH /api/admin/roles/:id": adminJwt("admin.users"),
  "DELETE /api/admin/roles/:id": adminJwt("admin.users"),
  "GET /api/admin/users": adminJwt("admin.users"),
  "POST /api/admin/users": adminJwt("admin.users"),
  "GET /api/admin/users/:id": adminJwt("admin.users"),
  "PATCH /api/admin/users/:id": adminJwt("admin.users"),
  "DELETE /api/admin/users/:id": adminJwt("admin.users"),
  "GET /api/admin/users/:id/roles": adminJwt("admin.users"),
  "POST /api/admin/users/:id/roles/:role_id": adminJwt("admin.users"),
  "DELETE /api/admin/users/:id/roles/:role_id": adminJwt("admin.users"),
  "GET /api/admin/group_mappings": adminJwt("admin.users"),
  "POST /api/admin/group_mappings": adminJwt("admin.users"),
  "GET /api/admin/group_mappings/:id": adminJwt("admin.users"),
  "PATCH /api/admin/group_mappings/:id": adminJwt("admin.users"),
  "DELETE /api/admin/group_mappings/:id": adminJwt("admin.users"),
  "POST /v3/auth/login": PUBLIC,
  "POST /v3/auth/callback": PUBLIC,
  "GET /v3/auth/callback": PUBLIC,
  // ScaiKey's identity sync (docs/scaikey.md): the webhook is signed, the rest is the operator's.
  "POST /webhooks/scaikey": SIGNED,
  "GET /api/admin/scaikey": OPERATOR,
  "PUT /api/admin/scaikey": OPERATOR,
  "POST /api/admin/scaikey/sync": OPERATOR,
  "POST /api/admin/scaikey/sync/prune": OPERATOR,
  "POST /v3/auth/refresh": PUBLIC,
  "POST /v3/auth/logout": PUBLIC,
  "POST /api/admin/tenants/:id/api_keys": OPERATOR,
  "PUT /api/admin/tenants/:id/senderkit_quota": OPERATOR,
  "GET /api/admin/tenants/:id/senderkit_quota": OPERATOR,
  "POST /api/admin/secrets/reseal": OPERATOR,

  "POST /v3/mail/send": needs("mail.send"),
  "POST /v3/mail/batch": needs("mail.schedule"),
  "GET /v3/mail/batch/:batchId": needs("mail.schedule"),
  "POST /v3/user/scheduled_sends": needs("mail.cancel"),
  "GET /v3/user/scheduled_sends": needs("mail.cancel", "mail.schedule"),
  "GET /v3/user/scheduled_sends/:batchId": needs("mail.cancel", "mail.schedule"),
  "PATCH /v3/user/scheduled_sends/:batchId": needs("mail.cancel"),
  "DELETE /v3/user/scheduled_sends/:batchId": needs("mail.cancel"),

  "GET /v3/messages": ANY_KEY,
  "GET /v3/messages/:id": ANY_KEY,
  "POST /v3/messages/:id/cancel": needs("mail.cancel"),
  "POST /v3/messages/:id/fail": needs("mail.send"),
  "POST /v3/messages/:id/retry": needs("mail.send"),

  "POST /v3/templates": needs("templates.write"),
  "GET /v3/templates": needs("templates.read"),
  "GET /v3/templates/:id": needs("templates.read"),
  "POST /v3/templates/:id": needs("templates.write"),
  "PATCH /v3/templates/:id": needs("templates.write"),
  "DELETE /v3/templates/:id": needs("templates.delete"),
  "GET /v3/templates/:id/versions": needs("templates.read"),
  "POST /v3/templates/:id/versions": needs("templates.write"),
  "GET /v3/templates/:id/versions/:vid": needs("templates.read"),
  "PATCH /v3/templates/:id/versions/:vid": needs("templates.write"),
  "DELETE /v3/templates/:id/versions/:vid": needs("templates.delete"),
  "POST /v3/templates/:id/versions/:vid/activate": needs("templates.write"),

  "GET /v3/images": needs("templates.read"),
  "POST /v3/images": needs("templates.write"),
  "GET /v3/images/folders": needs("templates.read"),
  "GET /v3/images/:id": needs("templates.read"),
  "PATCH /v3/images/:id": needs("templates.write"),
  "DELETE /v3/images/:id": needs("templates.delete"),

  "GET /v3/suppression/:list": needs("suppressions.read"),
  "GET /v3/suppression/:list/export": needs("suppressions.read"),
  "POST /v3/suppression/:list/import": needs("suppressions.write"),
  "GET /v3/suppression/:list/:email": needs("suppressions.read"),
  "POST /v3/suppression/:list": needs("suppressions.write"),
  "DELETE /v3/suppression/:list": needs("suppressions.write"),
  "DELETE /v3/suppression/:list/:email": needs("suppressions.write"),

  "POST /v3/asm/groups": needs("suppressions.write"),
  "GET /v3/asm/groups": needs("suppressions.read"),
  "GET /v3/asm/groups/:id": needs("suppressions.read"),
  "PATCH /v3/asm/groups/:id": needs("suppressions.write"),
  "DELETE /v3/asm/groups/:id": needs("suppressions.write"),
  "POST /v3/asm/groups/:id/suppressions": needs("suppressions.write"),
  "GET /v3/asm/groups/:id/suppressions": needs("suppressions.read"),
  "POST /v3/asm/groups/:id/suppressions/search": needs("suppressions.read"),
  "DELETE /v3/asm/groups/:id/suppressions/:email": needs("suppressions.write"),
  "POST /v3/asm/suppressions/global": needs("suppressions.write"),
  "GET /v3/asm/suppressions/global/:email": needs("suppressions.read"),
  "DELETE /v3/asm/suppressions/global/:email": needs("suppressions.write"),
  "GET /v3/asm/suppressions": needs("suppressions.read"),
  "GET /v3/asm/suppressions/:email": needs("suppressions.read"),

  "GET /v3/user/webhooks/event/settings": needs("webhooks.read"),
  "PATCH /v3/user/webhooks/event/settings": needs("webhooks.write"),
  "GET /v3/user/webhooks/event/settings/signed": needs("webhooks.read"),
  "PATCH /v3/user/webhooks/event/settings/signed": needs("webhooks.write"),
  "GET /v3/user/webhooks/event/settings/deliveries": needs("webhooks.read"),
  "POST /v3/user/webhooks/event/settings/deliveries/:delivery_id/retry": needs("webhooks.write"),
  "POST /v3/user/webhooks/event/test": needs("webhooks.write"),
  "GET /v3/user/webhooks": needs("webhooks.read"),
  "POST /v3/user/webhooks": needs("webhooks.write"),
  "GET /v3/user/webhooks/:id": needs("webhooks.read"),
  "PATCH /v3/user/webhooks/:id": needs("webhooks.write"),
  "DELETE /v3/user/webhooks/:id": needs("webhooks.write"),
  "POST /v3/user/webhooks/:id/signing_secret": needs("webhooks.write"),
  "GET /v3/user/webhooks/:id/deliveries": needs("webhooks.read"),
  "POST /v3/user/webhooks/:id/deliveries/:delivery_id/retry": needs("webhooks.write"),

  "GET /v3/stats": needs("stats.read"),
  "GET /v3/stats/categories": needs("stats.read"),
  "GET /v3/stats/summary": needs("stats.read"),
  "GET /v3/stats/sum": needs("stats.read"),
  "POST /v3/stats/rebuild": needs("stats.export"),
  "GET /v3/categories/stats": needs("stats.read"),
  "GET /v3/categories/stats/sums": needs("stats.read"),

  "POST /v3/api_keys": needs("admin.api_keys"),
  "GET /v3/api_keys": needs("admin.api_keys"),
  "GET /v3/api_keys/:id": needs("admin.api_keys"),
  "PUT /v3/api_keys/:id": needs("admin.api_keys"),
  "PATCH /v3/api_keys/:id": needs("admin.api_keys"),
  "DELETE /v3/api_keys/:id": needs("admin.api_keys"),
  "POST /v3/api_keys/:id/rotate": needs("admin.api_keys"),
  "GET /v3/scopes": ANY_KEY,
  "GET /v3/auth/me": JWT,

  // SenderKit's /v1 (docs/api/senderkit.md): SenderKit keys only; the contract itself is public.
  "GET /v1/openapi.json": PUBLIC,
  "GET /v1/context": SENDERKIT,
  "POST /v1/send": SENDERKIT,
  "GET /v1/messages": SENDERKIT,
  "GET /v1/messages/:id": SENDERKIT,
  "DELETE /v1/messages/:id": SENDERKIT,
  "GET /v1/templates": SENDERKIT,
  "GET /v1/templates/:slug": SENDERKIT,
  "POST /v1/templates/:slug/render": SENDERKIT,

  "POST /api/admin/domains": needs("domains.write"),
  "GET /api/admin/domains/:id": needs("domains.read"),
  "POST /api/admin/domains/:id/dkim/ed25519": needs("domains.write"),
  "DELETE /api/admin/domains/:id/dkim/ed25519": needs("domains.write"),
  "POST /api/admin/domains/:id/verify": needs("domains.write"),
  "GET /api/admin/domains": needs("domains.read"),
  "PATCH /api/admin/domains/:id": needs("domains.write"),
  "DELETE /api/admin/domains/:id": needs("domains.write"),
  "POST /api/admin/domains/:id/rotate-dkim": needs("domains.write"),
  "GET /api/admin/tenants/:id/tracking": needs("admin.settings"),
  "PUT /api/admin/tenants/:id/tracking": needs("admin.settings"),
  "GET /api/admin/tenants/:id/rate_limits": needs("admin.settings"),
  "PUT /api/admin/tenants/:id/rate_limits": OPERATOR,
  // SenderKit templates (docs/api/admin.md#senderkit-templates); archive is SenderKit's delete.
  "GET /api/admin/tenants/:id/senderkit_templates": needs("templates.read"),
  "POST /api/admin/tenants/:id/senderkit_templates": needs("templates.write"),
  "GET /api/admin/tenants/:id/senderkit_templates/:slug": needs("templates.read"),
  "PATCH /api/admin/tenants/:id/senderkit_templates/:slug": needs("templates.write"),
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/versions": needs("templates.write"),
  "GET /api/admin/tenants/:id/senderkit_templates/:slug/versions/:version": needs("templates.read"),
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/publish": needs("templates.write"),
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/rollback": needs("templates.write"),
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/archive": needs("templates.delete"),
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/unarchive": needs("templates.write"),
  // SMS / push / web push provider connections (docs/api/admin.md#provider-connections).
  "GET /api/admin/tenants/:id/provider-connections": needs("admin.settings"),
  "POST /api/admin/tenants/:id/provider-connections": needs("admin.settings"),
  "GET /api/admin/tenants/:id/provider-connections/:connection_id": needs("admin.settings"),
  "PATCH /api/admin/tenants/:id/provider-connections/:connection_id": needs("admin.settings"),
  "DELETE /api/admin/tenants/:id/provider-connections/:connection_id": needs("admin.settings"),
};

/**
 * What a tenant route answers for an id the caller does not own, where that is not a 404 by
 * SendGrid's contract: 400 "invalid batch id" for a batch, 200 with `[]` / `{}` / the caller's own
 * groups for the "what is the state of this id or address" reads. The probe checks the answer is
 * the same as for an id that exists nowhere, and carries none of A's data.
 */
export const FOREIGN_ID_STATUS: Record<string, number> = {
  "GET /v3/mail/batch/:batchId": 400,
  "GET /v3/user/scheduled_sends/:batchId": 200,
  "GET /v3/asm/suppressions/global/:email": 200,
  "GET /v3/asm/suppressions/:email": 200,
};

/** Reads without an id that answer 404 to a tenant that has not configured the thing (B has no Event Webhook). */
export const UNCONFIGURED_404 = new Set(["GET /v3/user/webhooks/event/settings/deliveries"]);

/** Query strings the reads need (stats take a date range). */
export const today = new Date().toISOString().slice(0, 10);
export const QUERIES: Record<string, string> = {
  "GET /v3/stats": `start_date=${today}`,
  "GET /v3/stats/categories": `start_date=${today}`,
  "GET /v3/stats/summary": `start_date=${today}`,
  "GET /v3/stats/sum": `start_date=${today}`,
  "GET /v3/categories/stats": `start_date=${today}&categories=CATEGORY`,
  "GET /v3/categories/stats/sums": `start_date=${today}`,
};

/** Bodies that pass validation, so a cross-tenant 404 is the lookup's answer and not the parser's. */
export const BODIES: Record<string, unknown> = {
  "POST /v3/templates/:id": { name: "copy" },
  "PATCH /v3/templates/:id": { name: "renamed" },
  "POST /v3/templates/:id/versions": { name: "v", subject: "s", html_content: "<p>x</p>" },
  "PATCH /v3/templates/:id/versions/:vid": { name: "renamed" },
  "PATCH /v3/user/scheduled_sends/:batchId": { status: "cancel" },
  "PATCH /v3/asm/groups/:id": { name: "renamed" },
  "POST /v3/asm/groups/:id/suppressions": { recipient_emails: ["probe@example.org"] },
  "POST /v3/asm/groups/:id/suppressions/search": { recipient_emails: ["probe@example.org"] },
  "PATCH /v3/user/webhooks/:id": { enabled: false },
  "PATCH /v3/images/:id": { alt_text: "renamed" },
  "PUT /v3/api_keys/:id": { name: "renamed", scopes: ["mail.send"] },
  "PATCH /v3/api_keys/:id": { name: "renamed" },
  "PUT /api/admin/tenants/:id/tracking": { open_tracking_enabled: false },
  "PUT /api/admin/tenants/:id/rate_limits": { rate_limits: {} },
};

/** The handler routes of the app: `use()` middleware is registered as method ALL on a `/*` path. */
export function routeTable(): string[] {
  const keys = new Set<string>();
  const concretePaths = new Set<string>();
  const all: string[] = [];
  for (const r of createApp().routes) {
    if (r.method === "ALL") all.push(r.path);
    else {
      keys.add(`${r.method} ${r.path}`);
      concretePaths.add(r.path);
    }
  }
  // A handler mounted with .all() on a path of its own would be a route; only middleware is exempt.
  for (const p of all) if (!p.endsWith("/*") && !concretePaths.has(p)) keys.add(`ALL ${p}`);
  return [...keys].sort();
}

export interface Ids {
  tenantId: string;
  messageId: string;
  templateId: string;
  versionId: string;
  batchId: string;
  groupId: string;
  webhookId: string;
  imageId: string;
  keyId: string;
  domainId: string;
  email: string;
  category: string;
}

export function pathOf(route: string, ids: Ids): string {
  const path = route.slice(route.indexOf(" ") + 1);
  const family = path.split("/").slice(0, 4).join("/");
  return path.replace(/\*$/, "x").replace(/:(\w+)/g, (_, name: string) => {
    if (name === "vid") return ids.versionId;
    if (name === "batchId") return ids.batchId;
    if (name === "list") return "bounces";
    if (name === "email") return encodeURIComponent(ids.email);
    if (name === "file" || name === "token") return "not-a-token";
    if (family.startsWith("/v3/messages")) return ids.messageId;
    if (family.startsWith("/v3/templates")) return ids.templateId;
    if (family.startsWith("/v3/asm")) return ids.groupId;
    if (family.startsWith("/v3/user/webhooks")) return ids.webhookId;
    if (family.startsWith("/v3/images")) return ids.imageId;
    if (family.startsWith("/v3/api_keys")) return ids.keyId;
    if (family.startsWith("/api/admin/tenants")) return ids.tenantId;
    if (family.startsWith("/api/admin/domains")) return ids.domainId;
    if (path.startsWith("/v1/messages")) return ids.messageId;
    if (path.startsWith("/v1/templates")) return "welcome";
    if (path.startsWith("/i/")) return "img_doesnotexist";
    if (name === "role_id" || family.startsWith("/api/admin/roles")) return "role_developer";
    if (family.startsWith("/api/admin/partners")) return "prt_nowhere";
    if (family.startsWith("/api/admin/permissions")) return "mail.send";
    if (family.startsWith("/api/admin/users")) return "usr_nowhere";
    if (family.startsWith("/api/admin/group_mappings")) return "grm_nowhere";
    throw new Error(`no sample value for :${name} in ${route}`);
  });
}

export async function hit(route: string, ids: Ids, headers: Record<string, string>, withBody = true) {
  const method = route.slice(0, route.indexOf(" "));
  const body = withBody ? BODIES[route] : undefined;
  const query = QUERIES[route]?.replace("CATEGORY", encodeURIComponent(ids.category));
  const res = await call(`${pathOf(route, ids)}${query ? `?${query}` : ""}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    redirect: "manual",
  });
  return { status: res.status, text: await res.text() };
}

/** Ids of every family that exist in no tenant. */
export const NOWHERE = {
  messageId: "msg_00000000000000000000000000",
  templateId: "d-00000000000000000000000000000000",
  versionId: "00000000-0000-4000-8000-000000000000",
  batchId: "00000000-0000-4000-8000-000000000000",
  groupId: "999999",
  webhookId: "00000000-0000-4000-8000-000000000000",
  imageId: "img_doesnotexist",
  keyId: "00000000-0000-4000-8000-000000000000",
  domainId: "00000000-0000-4000-8000-000000000000",
  tenantId: "00000000-0000-4000-8000-000000000000",
  email: "nobody@example.org",
} satisfies Partial<Ids>;

/** Runs fn over items, `width` at a time (two cores, five people testing). */
export async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

export const ROUTE_LIST = routeTable();
export const guardOf = (r: string): Guard => ROUTES[r] ?? { kind: "public" };
export const tenantRoutes = ROUTE_LIST.filter((r) => ROUTES[r]?.kind === "tenant");
export const hasId = (r: string) => /:(?!list\b)\w+/.test(r);

export async function json(key: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await call(path, {
    method,
    headers: bearer(key),
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  expect(res.status, `${method} ${path}: ${text}`).toBeLessThan(300);
  return text ? JSON.parse(text) : null;
}

/** Tenant A with one real object of every family, and the strings that would betray a leak. */
export async function tenantWithEverything(): Promise<{ ids: Ids; adminKey: string; markers: string[] }> {
  const t = await setupTenant();
  const admin = await createApiKey(t.tenantId, { scopes: [...PERMISSIONS] });
  const m = uid();
  const email = `leak-${m}@example.org`;
  const category = `cat-${m}`;
  const messageId = await sendOne(
    t.liveKey,
    mailBody(t.from, { personalizations: [{ to: [{ email }] }], categories: [category] }),
  );
  const template = await json(admin.key, "POST", "/v3/templates", {
    name: `tpl-${m}`,
    generation: "dynamic",
  });
  const version = await json(admin.key, "POST", `/v3/templates/${template.id}/versions`, {
    name: `ver-${m}`,
    subject: "Hello",
    html_content: "<p>Hello</p>",
  });
  const batch = await json(admin.key, "POST", "/v3/mail/batch", "");
  await json(admin.key, "POST", "/v3/user/scheduled_sends", { batch_id: batch.batch_id, status: "pause" });
  await json(admin.key, "POST", "/v3/suppression/bounces", { email, reason: `reason-${m}` });
  const group = await json(admin.key, "POST", "/v3/asm/groups", { name: `grp-${m}`, description: "d" });
  await json(admin.key, "POST", `/v3/asm/groups/${group.id}/suppressions`, { recipient_emails: [email] });
  await json(admin.key, "POST", "/v3/asm/suppressions/global", { recipient_emails: [email] });
  // The webhook object's resolver is its one seam (test/edge/webhooks.api.test.ts): a public address.
  await inQueue(t.tenantId, (q) => {
    q.resolver = async () => ["93.184.216.34"];
  });
  const hookUrl = `https://hooks.example.com/in-${m}`;
  const webhook = await json(admin.key, "POST", "/v3/user/webhooks", { url: hookUrl, enabled_events: ["*"] });
  const form = new FormData();
  form.append("file", new File([encodePng(4, 4)], `img-${m}.png`, { type: "image/png" }));
  form.append("alt_text", `alt-${m}`);
  const imgRes = await call("/v3/images", {
    method: "POST",
    headers: { Authorization: `Bearer ${admin.key}` },
    body: form,
  });
  expect(imgRes.status, await imgRes.clone().text()).toBe(201);
  const image = (await imgRes.json()) as { id: string };
  const ids: Ids = {
    tenantId: t.tenantId,
    messageId,
    templateId: template.id,
    versionId: version.id,
    batchId: batch.batch_id,
    groupId: String(group.id),
    webhookId: webhook.id,
    imageId: image.id,
    keyId: admin.id,
    domainId: t.domainId,
    email,
    category,
  };
  const markers = [
    m,
    t.tenantId,
    messageId,
    template.id,
    version.id,
    batch.batch_id,
    webhook.id,
    image.id,
    admin.id,
    t.liveKeyId,
    t.domainId,
    t.domain,
  ].map((s) => String(s).toLowerCase());
  return { ids, adminKey: admin.key, markers };
}
