/**
 * Native admin API (/api/admin/*, docs/api/admin.md): FastAPI-style errors, `{"data": …}` bodies.
 * Tenants and their first keys are created with the operator token (ADMIN_TOKEN), which is how a
 * fresh deployment is bootstrapped (the `scaisend` CLI wraps these calls). Domain routes also take
 * an API key with `domains.read` / `domains.write`; the operator names the tenant with `tenant_id`
 * (./domains.ts). POST /secrets/reseal (operator only, ./secrets.ts) re-seals every sealed secret
 * under the current SECRETS_KEY, one page per request (docs/operations.md, "Rotating SECRETS_KEY").
 */
import { Hono } from "hono";
import { z } from "zod";
import { PERMISSIONS } from "../../../../shared/permissions.ts";
import type { AppEnv } from "../../context.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { authenticate, requireOperator } from "../../middleware/auth.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import { createApiKey, createTenant, requireTenant } from "../../services/tenants.ts";
import { skQuotaAdminApi } from "./sk-quota.ts";
import { renderFastApi } from "../errors.ts";
import { tenantTrackingApi } from "./tracking.ts";
import { tenantRateLimitsApi } from "./rate-limits.ts";
import { domainsApi } from "./domains.ts";
import { secretsApi } from "./secrets.ts";
import { partnersApi, tenantsApi } from "./identity-tenants.ts";
import { groupMappingsApi, permissionsApi, rolesApi, usersApi } from "./identity-roles.ts";
import { skTemplatesAdminApi } from "./sk-templates.ts";
import { scaikeyAdminApi } from "./scaikey.ts";
import { providerConnectionsApi } from "./provider-connections.ts";
import { parseInput, readJson } from "../validate.ts";

const TenantBody = z.object({ name: z.string().trim().min(1).max(255) });
const ApiKeyBody = z.object({
  name: z.string().trim().min(1).max(255),
  environment: z.enum(["live", "test"]).default("live"),
  // Scopes default to empty, meaning no access (docs/api/admin.md#api-keys).
  scopes: z.array(z.enum(PERMISSIONS)).default([]),
  expires_at: z.iso.datetime({ offset: true }).optional(),
  // "senderkit": an sk_live_/sk_test_ key for /v1 (docs/api/senderkit.md#authentication), which has no scopes.
  format: z.enum(["sendgrid", "senderkit"]).default("sendgrid"),
});
export const adminApi = new Hono<AppEnv>()
  .use(authenticate({ allowOperator: true }))
  .post("/tenants", requireOperator(), async (c) => {
    const body = parseInput(TenantBody, await readJson(c.req.raw), "body");
    const t = await createTenant(c.get("db"), body.name, Date.now());
    return c.json({ data: { id: t.id, name: t.name, status: t.status, created_at: iso(t.createdAt) } }, 201);
  })
  .post("/tenants/:id/api_keys", requireOperator(), async (c) => {
    const tenant = await requireTenant(c.get("db"), c.req.param("id"));
    const body = parseInput(ApiKeyBody, await readJson(c.req.raw), "body");
    const { row, apiKey } = await createApiKey(
      c.get("db"),
      tenant.id,
      {
        name: body.name,
        environment: body.environment,
        scopes: body.scopes,
        expiresAt: body.expires_at ? Date.parse(body.expires_at) : undefined,
        format: body.format,
      },
      Date.now(),
    );
    // This isolate may hold a negative entry for the hash (services/catalog-cache.ts).
    catalogCache.forgetKey(row.keyHash);
    return c.json(
      {
        data: {
          id: row.id,
          name: row.name,
          api_key: apiKey,
          prefix: row.prefix,
          environment: row.environment,
          scopes: row.scopes,
          created_at: iso(row.createdAt),
          expires_at: iso(row.expiresAt),
        },
      },
      201,
    );
  });

// Tracking defaults (docs/api/tracking.md#tenant-defaults): the operator, or a key with admin.settings.
adminApi.route("/tenants/:id/tracking", tenantTrackingApi);
// SenderKit's monthly quota per tenant (docs/api/senderkit.md#quota).
adminApi.route("/tenants/:id/senderkit_quota", skQuotaAdminApi);
// Rate-limit overrides (docs/api/admin.md#rate-limits): read by the operator or admin.settings, set by the operator.
adminApi.route("/tenants/:id/rate_limits", tenantRateLimitsApi);
// Sender domains (docs/api/admin.md#sender-domains) and the SECRETS_KEY re-seal (operator only).
adminApi.route("/domains", domainsApi);
adminApi.route("/secrets", secretsApi);
// SenderKit templates (docs/api/admin.md#senderkit-templates): the operator, or a key with templates.*.
adminApi.route("/tenants/:id/senderkit_templates", skTemplatesAdminApi);
// SMS / push / web push provider connections (docs/api/admin.md#provider-connections): the operator, or admin.settings.
adminApi.route("/tenants/:id/provider-connections", providerConnectionsApi);
// Identity (docs/api/admin.md#partners … #group-mappings): ScaiKey JWTs and the operator token.
adminApi.route("/partners", partnersApi);
adminApi.route("/tenants", tenantsApi);
adminApi.route("/permissions", permissionsApi);
adminApi.route("/roles", rolesApi);
adminApi.route("/users", usersApi);
adminApi.route("/group_mappings", groupMappingsApi);
// ScaiKey's registration and bulk sync (docs/api/admin.md#scaikey): the operator token.
adminApi.route("/scaikey", scaikeyAdminApi);
adminApi.onError(renderFastApi);
