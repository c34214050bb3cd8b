/**
 * The principal a ScaiKey JWT yields (docs/api/sendgrid.md#authentication): the token verified
 * (services/jwt-auth.ts), its `tenant_id` resolved to a local tenant (unknown → 401, suspended →
 * 403, as for API keys), its roles turned into the scopes every route checks.
 */
import { AppError } from "../../../shared/errors.ts";
import type { Principal } from "../context.ts";
import { createDb } from "../db/client.ts";
import type { Config } from "../env.ts";
import { jwksCache } from "../services/jwks-cache.ts";
import { tenantStatusCache, verifyScaiKeyJwt } from "../services/jwt-auth.ts";

export async function jwtPrincipal(d1: D1Database, config: Config, token: string): Promise<Principal> {
  const { SCAIKEY_JWKS_URL: jwksUrl, SCAIKEY_ISSUER: issuer, SCAIKEY_AUDIENCE: audience } = config;
  if (jwksUrl === undefined || issuer === undefined || audience === undefined) {
    throw new AppError("unauthorized", "JWT authentication is not configured on this deployment");
  }
  const jwt = await verifyScaiKeyJwt(token, { jwksUrl, issuer, audience }, jwksCache);
  const status = await tenantStatusCache.statusOf(createDb(d1), jwt.tenantId, config.AUTH_CACHE_TTL_MS);
  if (status === undefined) throw new AppError("unauthorized", "Invalid JWT: unknown tenant_id");
  if (status !== "active") throw new AppError("forbidden", "Tenant suspended");
  return {
    kind: "jwt",
    tenantId: jwt.tenantId,
    keyId: `jwt:${jwt.subject}`,
    subject: jwt.subject,
    environment: "live",
    roles: jwt.roles,
    scopes: jwt.scopes,
  };
}
