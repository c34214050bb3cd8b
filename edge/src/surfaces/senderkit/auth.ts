/**
 * SenderKit keys (docs/api/senderkit.md#authentication): `Authorization: Bearer sk_live_…` or
 * `sk_test_…` + 32 hex. They are rows of the one API-key store (api_keys: SHA-256 at rest, the first
 * 16 characters as the visible prefix, environment live|test), minted by the operator with
 * `POST /api/admin/tenants/{id}/api_keys` and `"format": "senderkit"`, and looked up through the same
 * isolate cache as `sg_` keys (services/catalog-cache.ts: TTL, negative caching, a revoked key or
 * suspended tenant refused within AUTH_CACHE_TTL_MS). The mode is the key's environment, which its
 * prefix names. `/v1` takes only SenderKit keys and `/v3` only `sg_` keys: the two formats hash to
 * different rows, so one format's secret never opens the other surface.
 * Every refusal is `401 unauthorized` (SenderKit's contract has no 403).
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../../context.ts";
import { touchApiKey } from "../../db/api-keys.ts";
import { sha256Hex } from "../../lib/crypto.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import { SkError } from "./errors.ts";

export const SK_KEY_FORMAT = /^sk_(live|test)_[0-9a-f]{32}$/;

const unauthorized = (message: string) => new SkError(401, "unauthorized", message);

export function skAuthenticate(): MiddlewareHandler<AppEnv> {
  return async function skAuthMiddleware(c, next) {
    const header = c.req.header("authorization");
    if (!header) throw unauthorized("Missing Authorization header");
    const token = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
    if (!token) throw unauthorized("Authorization must be: Bearer sk_live_… or sk_test_…");
    const format = SK_KEY_FORMAT.exec(token);
    if (!format) throw unauthorized("Invalid API key");
    const key = await catalogCache.keyByHash(
      c.env.DB,
      await sha256Hex(token),
      c.get("config").AUTH_CACHE_TTL_MS,
    );
    const now = catalogCache.now();
    if (!key || key.revokedAt !== null || (key.expiresAt !== null && key.expiresAt <= now)) {
      throw unauthorized("Invalid API key");
    }
    // The hash matched, so the row is this very key; its environment is the one its prefix names.
    if (key.environment !== format[1]) throw unauthorized("Invalid API key");
    if (key.tenantStatus !== "active") throw unauthorized("The API key's workspace is suspended");
    c.set("principal", {
      kind: "api_key",
      tenantId: key.tenantId,
      keyId: key.keyId,
      environment: key.environment,
      scopes: key.scopes,
    });
    if (catalogCache.touchDue(key, now)) {
      c.executionCtx.waitUntil(touchApiKey(c.get("db"), key.keyId, now).catch(() => undefined));
    }
    return next();
  };
}

/** The authenticated SenderKit key (set by skAuthenticate). */
export function skPrincipal(c: { get(k: "principal"): AppEnv["Variables"]["principal"] }) {
  const p = c.get("principal");
  if (p.kind !== "api_key") throw unauthorized("Invalid API key");
  return p;
}
