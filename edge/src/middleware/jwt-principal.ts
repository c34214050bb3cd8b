/**
 * The principal a ScaiKey JWT yields (docs/api/sendgrid.md#authentication): the token verified
 * (services/jwt-auth.ts), its `tenant_id` resolved to a local tenant (unknown → 401, suspended →
 * 403, as for API keys), its roles, groups and role assignments turned into the scopes every route
 * checks (services/access.ts).
 */
import { AppError } from "../../../shared/errors.ts";
import type { Principal } from "../context.ts";
import { createDb } from "../db/client.ts";
import type { Config } from "../env.ts";
import { jwksCache } from "../services/jwks-cache.ts";
import { accessCache } from "../services/access.ts";
import { tenantStatusCache, verifyScaiKeyJwt } from "../services/jwt-auth.ts";

/** The `roles` claim value that makes a user an admin of its tenant's partner. */
export const PARTNER_ADMIN_ROLE = "partner_admin";

export async function jwtPrincipal(d1: D1Database, config: Config, token: string): Promise<Principal> {
  const { SCAIKEY_JWKS_URL: jwksUrl, SCAIKEY_ISSUER: issuer, SCAIKEY_AUDIENCE: audience } = config;
  if (jwksUrl === undefined || issuer === undefined || audience === undefined) {
    throw new AppError("unauthorized", "JWT authentication is not configured on this deployment");
  }
  const jwt = await verifyScaiKeyJwt(token, { jwksUrl, issuer, audience }, jwksCache);
  const db = createDb(d1);
  const tenant = await tenantStatusCache.tenantOf(db, jwt.tenantId, config.AUTH_CACHE_TTL_MS);
  if (tenant === undefined) throw new AppError("unauthorized", "Invalid JWT: unknown tenant_id");
  if (tenant.status !== "active") throw new AppError("forbidden", "Tenant suspended");
  const access = await accessCache.accessOf(db, tenant.id, jwt, config.AUTH_CACHE_TTL_MS);
  return {
    kind: "jwt",
    tenantId: tenant.id,
    partnerId: tenant.partnerId,
    keyId: `jwt:${jwt.subject}`,
    subject: jwt.subject,
    environment: "live",
    roles: access.roles,
    groups: jwt.groups,
    // ScaiKey's own partner-level role (docs/api/admin.md#partners): a claim, not a tenant role.
    partnerAdmin: jwt.roles.includes(PARTNER_ADMIN_ROLE) && tenant.partnerId !== null,
    scopes: access.permissions,
  };
}
