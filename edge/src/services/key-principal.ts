/**
 * One API key (an `sg_…` key of /v3 and the admin API, or an `sk_…` key of /v1) turned into the
 * request's principal: looked up by SHA-256 through the isolate's cache (services/catalog-cache.ts:
 * a revoked key, an expired one or a suspended tenant is refused within AUTH_CACHE_TTL_MS everywhere,
 * at once in the isolate that made the change). Each surface renders a refusal in its own dialect.
 */
import type { Context } from "hono";
import type { AppEnv } from "../context.ts";
import { touchApiKey } from "../db/api-keys.ts";
import { sha256Hex } from "../lib/crypto.ts";
import { catalogCache } from "./catalog-cache.ts";

/** Why a key was refused: unknown, revoked, expired or of another environment; or its tenant is suspended. */
export type KeyRefusal = "invalid" | "suspended";

/**
 * Sets the principal for `token` (already checked against its surface's format) and notes its use,
 * or says why not. `environment`: the one the token's prefix names; a row of the other is refused.
 */
export async function adoptApiKey(
  c: Context<AppEnv>,
  token: string,
  environment?: "live" | "test",
): Promise<KeyRefusal | null> {
  const key = await catalogCache.keyByHash(
    c.env.DB,
    await sha256Hex(token),
    c.get("config").AUTH_CACHE_TTL_MS,
  );
  const now = catalogCache.now();
  if (!key || key.revokedAt !== null || (key.expiresAt !== null && key.expiresAt <= now)) return "invalid";
  if (environment !== undefined && key.environment !== environment) return "invalid";
  if (key.tenantStatus !== "active") return "suspended";
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
  return null;
}
