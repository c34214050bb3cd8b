/**
 * ScaiKey JWTs (docs/api/sendgrid.md#authentication): verified on every request against the key
 * set at SCAIKEY_JWKS_URL (no token cache; the keys are cached, services/jwks-cache.ts).
 *
 *  - Signature: RS256 or ES256 only. `none`, HS* (e.g. HS256 keyed with the public key) and every
 *    other algorithm are refused before any key is looked at.
 *  - Claims: `iss` must be SCAIKEY_ISSUER, `aud` must contain SCAIKEY_AUDIENCE, `exp` is required,
 *    `exp`/`nbf`/`iat` are checked with CLOCK_SKEW_S of tolerance; `sub` and `tenant_id` are
 *    required strings; `roles`, when present, is an array of role names.
 *  - Permissions: here the union of the default roles named in `roles` (shared/roles.ts); the
 *    principal's are resolved against the tenant's roles and group mappings (services/access.ts).
 *  - Tenant: `tenant_id` is the local tenant id or its ScaiKey id. No such tenant → 401, suspended → 403; the
 *    tenant's status is cached per isolate for AUTH_CACHE_TTL_MS, as an API key's is.
 * Failures are AppErrors (401, or 503 when the key set cannot be fetched).
 */
import { errors, jwtVerify, type JWTPayload } from "jose";
import { AppError } from "../../../shared/errors.ts";
import { permissionsOfRoles } from "../../../shared/roles.ts";
import type { Permission } from "../../../shared/permissions.ts";
import type { Db } from "../db/client.ts";
import { findTenant } from "../db/identity.ts";
import { IsolateCache, MISSING, type Clock } from "../lib/isolate-cache.ts";
import type { JwksCache } from "./jwks-cache.ts";

import { CLOCK_SKEW_S, JWT_ALGORITHMS } from "./jwt-rules.ts";

export { CLOCK_SKEW_S, JWT_ALGORITHMS };
const MAX_TENANTS = 10_000;
const MAX_UNKNOWN_TENANTS = 2_000;

/**
 * Three dot-separated base64url parts: tells a JWT from an API key or the operator token cheaply.
 * The signature part may be empty, so an `alg: none` token is refused by the verifier, by name.
 */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
export const looksLikeJwt = (token: string): boolean => token.length <= 16_384 && JWT_SHAPE.test(token);

export interface JwtSettings {
  jwksUrl: string;
  issuer: string;
  audience: string;
}

export interface VerifiedJwt {
  subject: string;
  tenantId: string;
  roles: string[];
  /** ScaiKey groups (the `groups` claim), mapped to roles by the tenant's group mappings. */
  groups: string[];
  scopes: Permission[];
}

const invalid = (why: string, cause?: unknown) =>
  new AppError("unauthorized", `Invalid JWT: ${why}`, { cause });

/** Checks signature and claims; says which check failed (never the token or the key). */
export async function verifyScaiKeyJwt(
  token: string,
  settings: JwtSettings,
  jwks: JwksCache,
): Promise<VerifiedJwt> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, (header) => jwks.keyFor(settings.jwksUrl, header), {
      algorithms: JWT_ALGORITHMS,
      issuer: settings.issuer,
      audience: settings.audience,
      clockTolerance: CLOCK_SKEW_S,
      requiredClaims: ["exp", "sub", "tenant_id"],
      currentDate: new Date(jwks.clock()),
    }));
  } catch (err) {
    if (err instanceof AppError) throw err;
    if (err instanceof errors.JWTExpired) throw invalid("the token has expired", err);
    if (err instanceof errors.JWTClaimValidationFailed) throw invalid(err.message, err);
    if (err instanceof errors.JOSEAlgNotAllowed) throw invalid("only RS256 and ES256 are accepted", err);
    if (err instanceof errors.JWKSNoMatchingKey) throw invalid("no signing key matches the token's kid", err);
    if (err instanceof errors.JWSSignatureVerificationFailed) throw invalid("bad signature", err);
    throw invalid("malformed token", err);
  }
  const {
    sub,
    tenant_id: tenantId,
    roles,
    groups,
  } = payload as JWTPayload & { tenant_id?: unknown; roles?: unknown; groups?: unknown };
  if (typeof sub !== "string" || sub === "") throw invalid('"sub" must be a non-empty string');
  if (typeof tenantId !== "string" || tenantId === "")
    throw invalid('"tenant_id" must be a non-empty string');
  if (roles !== undefined && !(Array.isArray(roles) && roles.every((r) => typeof r === "string"))) {
    throw invalid('"roles" must be an array of role names');
  }
  if (groups !== undefined && !(Array.isArray(groups) && groups.every((g) => typeof g === "string"))) {
    throw invalid('"groups" must be an array of group ids');
  }
  const roleList = (roles as string[] | undefined) ?? [];
  return {
    subject: sub,
    tenantId,
    roles: roleList,
    groups: (groups as string[] | undefined) ?? [],
    scopes: permissionsOfRoles(roleList),
  };
}

type TenantStatus = "active" | "suspended";
/** The local tenant a `tenant_id` claim names (its local id, or its ScaiKey id). */
export interface JwtTenant {
  id: string;
  status: TenantStatus;
  partnerId: string | null;
}

/**
 * `tenant_id` claim → tenant, for JWT principals (API keys carry their tenant's status in their own
 * cache entry). A suspension made through this isolate calls `clear()`; elsewhere it is seen within
 * the TTL.
 */
export class TenantStatusCache {
  private readonly entries: IsolateCache<string, JwtTenant>;

  constructor(public clock: Clock = Date.now) {
    this.entries = new IsolateCache(MAX_TENANTS, MAX_UNKNOWN_TENANTS, () => this.clock());
  }

  async tenantOf(db: Db, claim: string, ttlMs: number): Promise<JwtTenant | undefined> {
    const found = await this.entries.get(claim, ttlMs, async () => {
      const row = await findTenant(db, claim);
      return row ? { id: row.id, status: row.status, partnerId: row.partnerId } : MISSING;
    });
    return found === MISSING ? undefined : found;
  }

  async statusOf(db: Db, tenantId: string, ttlMs: number): Promise<TenantStatus | undefined> {
    return (await this.tenantOf(db, tenantId, ttlMs))?.status;
  }

  forget(tenantId: string): void {
    this.entries.delete(tenantId);
  }

  clear(): void {
    this.entries.clear();
  }
}

export const tenantStatusCache = new TenantStatusCache();
