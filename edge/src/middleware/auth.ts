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
import { timingSafeEqualStrings } from "../lib/crypto.ts";
import { adoptApiKey } from "../services/key-principal.ts";
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
      const format = API_KEY_FORMAT.exec(token);
      if (!format) throw new AppError("unauthorized", "Invalid API key");
      const refusal = await adoptApiKey(c, token, format[1] as "live" | "test");
      if (refusal === "invalid") throw new AppError("unauthorized", "Invalid API key");
      if (refusal === "suspended") throw new AppError("forbidden", "Tenant suspended");
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

export function requireOperator(): MiddlewareHandler<AppEnv> {
  return async function operatorOnly(c, next) {
    if (c.get("principal").kind !== "operator") {
      throw new AppError("forbidden", "This endpoint needs the operator token");
    }
    return next();
  };
}
