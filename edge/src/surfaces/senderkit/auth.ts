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
import { adoptApiKey } from "../../services/key-principal.ts";
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
    // The mode is the one the prefix names; a row of the other environment is refused.
    const refusal = await adoptApiKey(c, token, format[1] as "live" | "test");
    if (refusal === "invalid") throw unauthorized("Invalid API key");
    if (refusal === "suspended") throw unauthorized("The API key's workspace is suspended");
    return next();
  };
}

/** The authenticated SenderKit key (set by skAuthenticate). */
export function skPrincipal(c: { get(k: "principal"): AppEnv["Variables"]["principal"] }) {
  const p = c.get("principal");
  if (p.kind !== "api_key") throw unauthorized("Invalid API key");
  return p;
}
