/**
 * Which permission every tenant route needs: the one table the surfaces' guards read
 * (`routePermission()`) and the route-auth tests (test/edge/route-auth*.test.ts, over the
 * classification in test/edge/route-table.ts) check against the running Worker
 * (docs/api/admin.md#permissions). Keys are "METHOD /full/path" as Hono names the route (its
 * `routePath`); a list means any one of its permissions is enough, "any" that every credential of
 * the tenant may call it. Routes with other guards (public, origin, operator-only, JWT-only,
 * SenderKit keys, and POST /webhooks/scaikey, which ScaiKey's signature authenticates with no
 * credential: surfaces/scaikey-webhook.ts) are not listed here.
 *
 * Invariant: fail closed. A route that calls `routePermission()` without an entry here answers
 * 500 and never runs, so a route cannot ship with its permission forgotten.
 */
import type { MiddlewareHandler } from "hono";
import { AppError } from "../../../shared/errors.ts";
import type { Permission } from "../../../shared/permissions.ts";
import type { AppEnv } from "../context.ts";

export type RoutePermission = readonly Permission[] | "any";

export const ROUTE_PERMISSIONS: Readonly<Record<string, RoutePermission>> = {
  // The dashboard's pages (docs/dashboard.md): a session has its login's roles' permissions.
  "POST /app/logout": "any",
  "GET /app/messages": "any",
  "GET /app/messages/:id": "any",
  "GET /app/stats": ["stats.read"],
  "GET /app/keys": ["admin.api_keys"],
  "POST /app/keys": ["admin.api_keys"],
  "POST /app/keys/:id/revoke": ["admin.api_keys"],
  "GET /app/domains": ["domains.read"],
  "GET /app/domains/:id": ["domains.read"],
  "POST /app/domains/:id/verify": ["domains.write"],
  "POST /app/domains/:id/rotate-dkim": ["domains.write"],
  "POST /app/domains": ["domains.write"],
  "POST /app/domains/:id/dkim/ed25519": ["domains.write"],
  "POST /app/domains/:id/dkim/ed25519/remove": ["domains.write"],
  "GET /app/suppressions": ["suppressions.read"],
  "POST /app/suppressions/:list/remove": ["suppressions.write"],
  "GET /app/suppressions/:list/export": ["suppressions.read"],
  "POST /app/suppressions/:list/import": ["suppressions.write"],
  "GET /app/webhooks": ["webhooks.read"],
  "GET /app/webhooks/:id": ["webhooks.read"],
  "POST /app/webhooks/:id/enabled": ["webhooks.write"],
  "POST /app/webhooks/:id/test": ["webhooks.write"],
  "POST /app/webhooks/:id/deliveries/:delivery_id/retry": ["webhooks.write"],
  "GET /app/templates": ["templates.read"],
  "GET /app/templates/:id": ["templates.read"],
  "GET /app/templates/:id/versions/:vid": ["templates.read"],
  "POST /app/templates/:id/versions/:vid/preview": ["templates.read"],
  "POST /app/templates/:id/versions/:vid/activate": ["templates.write"],
  "GET /api/admin/tenants": "any",
  "GET /api/admin/tenants/:id": "any",
  "PATCH /api/admin/tenants/:id": ["admin.settings"],
  "GET /api/admin/partners": "any",
  "GET /api/admin/partners/:id": "any",
  "GET /api/admin/permissions": "any",
  "GET /api/admin/permissions/:id": "any",
  "GET /api/admin/roles": "any",
  "GET /api/admin/roles/:id": "any",
  "POST /api/admin/roles": ["admin.users"],
  "PATCH /api/admin/roles/:id": ["admin.users"],
  "DELETE /api/admin/roles/:id": ["admin.users"],
  "GET /api/admin/users": ["admin.users"],
  "POST /api/admin/users": ["admin.users"],
  "GET /api/admin/users/:id": ["admin.users"],
  "PATCH /api/admin/users/:id": ["admin.users"],
  "DELETE /api/admin/users/:id": ["admin.users"],
  "GET /api/admin/users/:id/roles": ["admin.users"],
  "POST /api/admin/users/:id/roles/:role_id": ["admin.users"],
  "DELETE /api/admin/users/:id/roles/:role_id": ["admin.users"],
  "GET /api/admin/group_mappings": ["admin.users"],
  "POST /api/admin/group_mappings": ["admin.users"],
  "GET /api/admin/group_mappings/:id": ["admin.users"],
  "PATCH /api/admin/group_mappings/:id": ["admin.users"],
  "DELETE /api/admin/group_mappings/:id": ["admin.users"],
  "POST /v3/mail/send": ["mail.send"],
  "POST /v3/mail/batch": ["mail.schedule"],
  "GET /v3/mail/batch/:batchId": ["mail.schedule"],
  "POST /v3/user/scheduled_sends": ["mail.cancel"],
  "GET /v3/user/scheduled_sends": ["mail.cancel", "mail.schedule"],
  "GET /v3/user/scheduled_sends/:batchId": ["mail.cancel", "mail.schedule"],
  "PATCH /v3/user/scheduled_sends/:batchId": ["mail.cancel"],
  "DELETE /v3/user/scheduled_sends/:batchId": ["mail.cancel"],
  "GET /v3/messages": "any",
  "GET /v3/messages/:id": "any",
  "POST /v3/messages/:id/cancel": ["mail.cancel"],
  "POST /v3/messages/:id/fail": ["mail.send"],
  "POST /v3/messages/:id/retry": ["mail.send"],
  "POST /v3/templates": ["templates.write"],
  "GET /v3/templates": ["templates.read"],
  "GET /v3/templates/:id": ["templates.read"],
  "POST /v3/templates/:id": ["templates.write"],
  "PATCH /v3/templates/:id": ["templates.write"],
  "DELETE /v3/templates/:id": ["templates.delete"],
  "GET /v3/templates/:id/versions": ["templates.read"],
  "POST /v3/templates/:id/versions": ["templates.write"],
  "GET /v3/templates/:id/versions/:vid": ["templates.read"],
  "PATCH /v3/templates/:id/versions/:vid": ["templates.write"],
  "DELETE /v3/templates/:id/versions/:vid": ["templates.delete"],
  "POST /v3/templates/:id/versions/:vid/activate": ["templates.write"],
  "GET /v3/images": ["templates.read"],
  "POST /v3/images": ["templates.write"],
  "GET /v3/images/folders": ["templates.read"],
  "GET /v3/images/:id": ["templates.read"],
  "PATCH /v3/images/:id": ["templates.write"],
  "DELETE /v3/images/:id": ["templates.delete"],
  "GET /v3/suppression/:list": ["suppressions.read"],
  "GET /v3/suppression/:list/export": ["suppressions.read"],
  "POST /v3/suppression/:list/import": ["suppressions.write"],
  "GET /v3/suppression/:list/:email": ["suppressions.read"],
  "POST /v3/suppression/:list": ["suppressions.write"],
  "DELETE /v3/suppression/:list": ["suppressions.write"],
  "DELETE /v3/suppression/:list/:email": ["suppressions.write"],
  "POST /v3/asm/groups": ["suppressions.write"],
  "GET /v3/asm/groups": ["suppressions.read"],
  "GET /v3/asm/groups/:id": ["suppressions.read"],
  "PATCH /v3/asm/groups/:id": ["suppressions.write"],
  "DELETE /v3/asm/groups/:id": ["suppressions.write"],
  "POST /v3/asm/groups/:id/suppressions": ["suppressions.write"],
  "GET /v3/asm/groups/:id/suppressions": ["suppressions.read"],
  "POST /v3/asm/groups/:id/suppressions/search": ["suppressions.read"],
  "DELETE /v3/asm/groups/:id/suppressions/:email": ["suppressions.write"],
  "POST /v3/asm/suppressions/global": ["suppressions.write"],
  "GET /v3/asm/suppressions/global/:email": ["suppressions.read"],
  "DELETE /v3/asm/suppressions/global/:email": ["suppressions.write"],
  "GET /v3/asm/suppressions": ["suppressions.read"],
  "GET /v3/asm/suppressions/:email": ["suppressions.read"],
  "GET /v3/user/webhooks/event/settings": ["webhooks.read"],
  "PATCH /v3/user/webhooks/event/settings": ["webhooks.write"],
  "GET /v3/user/webhooks/event/settings/signed": ["webhooks.read"],
  "PATCH /v3/user/webhooks/event/settings/signed": ["webhooks.write"],
  "GET /v3/user/webhooks/event/settings/deliveries": ["webhooks.read"],
  "POST /v3/user/webhooks/event/test": ["webhooks.write"],
  "GET /v3/user/webhooks": ["webhooks.read"],
  "POST /v3/user/webhooks": ["webhooks.write"],
  "GET /v3/user/webhooks/:id": ["webhooks.read"],
  "PATCH /v3/user/webhooks/:id": ["webhooks.write"],
  "DELETE /v3/user/webhooks/:id": ["webhooks.write"],
  "POST /v3/user/webhooks/:id/signing_secret": ["webhooks.write"],
  "GET /v3/user/webhooks/:id/deliveries": ["webhooks.read"],
  "POST /v3/user/webhooks/:id/deliveries/:delivery_id/retry": ["webhooks.write"],
  "GET /v3/stats": ["stats.read"],
  "GET /v3/stats/categories": ["stats.read"],
  "GET /v3/stats/summary": ["stats.read"],
  "GET /v3/stats/sum": ["stats.read"],
  "POST /v3/stats/rebuild": ["stats.export"],
  "GET /v3/categories/stats": ["stats.read"],
  "GET /v3/categories/stats/sums": ["stats.read"],
  "POST /v3/api_keys": ["admin.api_keys"],
  "GET /v3/api_keys": ["admin.api_keys"],
  "GET /v3/api_keys/:id": ["admin.api_keys"],
  "PUT /v3/api_keys/:id": ["admin.api_keys"],
  "PATCH /v3/api_keys/:id": ["admin.api_keys"],
  "DELETE /v3/api_keys/:id": ["admin.api_keys"],
  "POST /v3/api_keys/:id/rotate": ["admin.api_keys"],
  "GET /v3/scopes": "any",
  "POST /api/admin/domains": ["domains.write"],
  "GET /api/admin/domains/:id": ["domains.read"],
  "POST /api/admin/domains/:id/dkim/ed25519": ["domains.write"],
  "DELETE /api/admin/domains/:id/dkim/ed25519": ["domains.write"],
  "POST /api/admin/domains/:id/verify": ["domains.write"],
  "GET /api/admin/domains": ["domains.read"],
  "PATCH /api/admin/domains/:id": ["domains.write"],
  "DELETE /api/admin/domains/:id": ["domains.write"],
  "POST /api/admin/domains/:id/rotate-dkim": ["domains.write"],
  "GET /api/admin/tenants/:id/tracking": ["admin.settings"],
  "PUT /api/admin/tenants/:id/tracking": ["admin.settings"],
  "GET /api/admin/tenants/:id/rate_limits": ["admin.settings"],
  "GET /api/admin/tenants/:id/senderkit_templates": ["templates.read"],
  "POST /api/admin/tenants/:id/senderkit_templates": ["templates.write"],
  "GET /api/admin/tenants/:id/senderkit_templates/:slug": ["templates.read"],
  "PATCH /api/admin/tenants/:id/senderkit_templates/:slug": ["templates.write"],
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/versions": ["templates.write"],
  "GET /api/admin/tenants/:id/senderkit_templates/:slug/versions/:version": ["templates.read"],
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/publish": ["templates.write"],
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/rollback": ["templates.write"],
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/archive": ["templates.delete"],
  "POST /api/admin/tenants/:id/senderkit_templates/:slug/unarchive": ["templates.write"],
  "GET /api/admin/tenants/:id/provider-connections": ["admin.settings"],
  "POST /api/admin/tenants/:id/provider-connections": ["admin.settings"],
  "GET /api/admin/tenants/:id/provider-connections/:connection_id": ["admin.settings"],
  "PATCH /api/admin/tenants/:id/provider-connections/:connection_id": ["admin.settings"],
  "DELETE /api/admin/tenants/:id/provider-connections/:connection_id": ["admin.settings"],
};

/** 403 unless the principal holds one of the permissions the table gives this route; the operator passes. */
export function routePermission(): MiddlewareHandler<AppEnv> {
  return async function routePermissionMiddleware(c, next) {
    const route = `${c.req.method} ${c.req.routePath}`;
    const needed = Object.hasOwn(ROUTE_PERMISSIONS, route) ? ROUTE_PERMISSIONS[route] : undefined;
    if (needed === undefined) {
      console.error(JSON.stringify({ level: "error", msg: "route without a declared permission", route }));
      throw new AppError("internal", "Internal server error");
    }
    const p = c.get("principal");
    if (p.kind === "operator" || needed === "any") return next();
    if (!needed.some((perm) => p.scopes.includes(perm))) {
      // SendGrid's 403 names one scope; with a choice, the first listed (the one that allows the most).
      throw new AppError("forbidden", `Missing required scope: ${needed[0]}`);
    }
    return next();
  };
}
