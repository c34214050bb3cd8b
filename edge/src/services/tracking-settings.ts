/**
 * Tenant tracking defaults (docs/api/tracking.md#tenant-defaults): read on the live send path through
 * an isolate cache (AUTH_CACHE_TTL_MS, like API keys and sender domains), written by
 * PUT /api/admin/tenants/{id}/tracking, which is partial and additive (keys not sent keep their value).
 */
import { eq, sql } from "drizzle-orm";
import {
  tenantDefaults,
  type TenantTrackingDefaults,
  type TenantTrackingPatch,
} from "../../../shared/tracking/settings.ts";
import type { Db } from "../db/client.ts";
import { tenantTrackingSettings } from "../db/schema.ts";
import { IsolateCache, MISSING } from "../lib/isolate-cache.ts";
import { catalogCache } from "./catalog-cache.ts";

const cache = new IsolateCache<string, TenantTrackingDefaults>(10_000, 10_000);

async function load(db: Db, tenantId: string): Promise<TenantTrackingDefaults> {
  const row = await db
    .select({ settings: tenantTrackingSettings.settings })
    .from(tenantTrackingSettings)
    .where(eq(tenantTrackingSettings.tenantId, tenantId))
    .get();
  return tenantDefaults(row?.settings as Partial<TenantTrackingDefaults> | undefined);
}

/** The tenant's defaults, from this isolate's memory for up to `ttlMs` (default AUTH_CACHE_TTL_MS). */
export async function trackingDefaultsOf(
  db: Db,
  tenantId: string,
  ttlMs: number = catalogCache.ttlMs,
): Promise<TenantTrackingDefaults> {
  if (ttlMs <= 0) return load(db, tenantId);
  const hit = cache.peek(tenantId, ttlMs);
  if (hit !== undefined && hit !== MISSING) return hit;
  const v = await cache.get(tenantId, ttlMs, () => load(db, tenantId));
  return v === MISSING ? tenantDefaults(null) : v;
}

/** Merges `patch` into the stored defaults (one statement) and returns the result. */
export async function patchTrackingDefaults(
  db: Db,
  tenantId: string,
  patch: TenantTrackingPatch,
  now: number,
): Promise<TenantTrackingDefaults> {
  const json = JSON.stringify(patch);
  await db.run(sql`INSERT INTO tenant_tracking_settings (tenant_id, settings, updated_at)
    VALUES (${tenantId}, json(${json}), ${now})
    ON CONFLICT (tenant_id) DO UPDATE SET settings = json_patch(settings, excluded.settings), updated_at = excluded.updated_at`);
  cache.delete(tenantId);
  return load(db, tenantId);
}
