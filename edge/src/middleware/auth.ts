/**
 * Bearer authentication (docs/api/sendgrid.md#authentication, docs/api/admin.md#credentials). The prefix tells credentials apart:
 *  - `sg_live_` / `sg_test_` + 32 hex: API keys, looked up by SHA-256 (the key itself is never stored),
 *    through this isolate's cache (services/catalog-cache.ts: a revoked key or suspended tenant is
 *    refused within AUTH_CACHE_TTL_MS everywhere, at once in the isolate that made the change);
 *  - the operator token (ADMIN_TOKEN secret), accepted only where a route allows it, compared in constant time;
 *  - three dot-separated base64url parts: a ScaiKey JWT, verified against SCAIKEY_JWKS_URL on every
 *    request (services/jwt-auth.ts); its principal passes the same scope checks as an API key's;
 *  - anything else → 401.
 * Failures are AppErrors; each surface renders them in its own dialect. Once authenticated, a route
 * that names no rate-limit row of its own spends from the `default` row (middleware/rate-limit.ts).
 */
import type { MiddlewareHandler } from "hono";
import { AppError } from "../../../shared/errors.ts";
import type { AppEnv } from "../context.ts";
import { touchApiKey } from "../db/api-keys.ts";
import { sha256Hex, timingSafeEqualStrings } from "../lib/crypto.ts";
import { catalogCache } from "../services/catalog-cache.ts";
import { looksLikeJwt } from "../services/jwt-auth.ts";
import { jwtPrincipal } from "./jwt-principal.ts";
import { afterAuthentication } from "./rate-limit.ts";

const API_KEY_FORMAT = /^sg_(live|test)_[0-9a-f]{32}$/;

export function authenticate(options: { allowOperator?: boolean } = {}): MiddlewareHandler<AppEnv> {
  return async function authMiddleware(c, next) {
    const header = c.req.header("authorization");
    if (!header) throw new AppError("unauthorized", "Missing Authorization header");
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new AppError("unauthorized", "Missing Authorization header");
    const token = match[1]!;

    if (token.startsWith("sg_live_") || token.startsWith("sg_test_")) {
      if (!API_KEY_FORMAT.test(token)) throw new AppError("unauthorized", "Invalid API key");
      const key = await catalogCache.keyByHash(
        c.env.DB,
        await sha256Hex(token),
        c.get("config").AUTH_CACHE_TTL_MS,
      );
      const now = catalogCache.now();
      if (!key || key.revokedAt !== null || (key.expiresAt !== null && key.expiresAt <= now)) {
        throw new AppError("unauthorized", "Invalid API key");
      }
      if (key.tenantStatus !== "active") throw new AppError("forbidden", "Tenant suspended");
      c.set("principal", {
        kind: "api_key",
        tenantId: key.tenantId,
        keyId: key.keyId,
        environment: key.environment,
        scopes: key.scopes,
      });
      // Written behind the response, at most once a minute per key and isolate: never a round trip
      // on the request's path, and a hot key is not a write per request.
      if (catalogCache.touchDue(key, now)) {
        c.executionCtx.waitUntil(touchApiKey(c.get("db"), key.keyId, now).catch(() => undefined));
      }
      return afterAuthentication(c, next);
    }

    if (options.allowOperator && (await timingSafeEqualStrings(token, c.get("config").ADMIN_TOKEN))) {
      c.set("principal", { kind: "operator" });
      return afterAuthentication(c, next);
    }
    if (looksLikeJwt(token)) {
      c.set("principal", await jwtPrincipal(c.env.DB, c.get("config"), token));
      return afterAuthentication(c, next);
    }
    throw new AppError("unauthorized", options.allowOperator ? "Invalid credentials" : "Invalid API key");
  };
}

/** 403 unless the API key carries `scope`. The operator token may do anything. */
export function requireScope(scope: string): MiddlewareHandler<AppEnv> {
  return async function scopeMiddleware(c, next) {
    const p = c.get("principal");
    if (p.kind !== "operator" && !p.scopes.includes(scope)) {
      throw new AppError("forbidden", `Missing required scope: ${scope}`);
    }
    return next();
  };
}

export function requireOperator(): MiddlewareHandler<AppEnv> {
  return async function operatorOnly(c, next) {
    if (c.get("principal").kind !== "operator") {
      throw new AppError("forbidden", "This endpoint needs the operator token");
    }
    return next();
  };
}
