/**
 * GET/PUT /api/admin/tenants/{id}/tracking: a tenant's tracking defaults (docs/api/tracking.md#tenant-defaults).
 * The operator token, or an API key with `admin.settings` for its own tenant (another tenant's id is
 * 404, like one that does not exist). PUT is partial and additive; an unknown key or a non-boolean
 * value is a 400.
 */
import { Hono, type Context } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import { TenantTrackingPatchSchema } from "../../../../shared/tracking/settings.ts";
import type { AppEnv } from "../../context.ts";
import { routePermission } from "../route-permissions.ts";
import { requireTenant } from "../../services/tenants.ts";
import { patchTrackingDefaults, trackingDefaultsOf } from "../../services/tracking-settings.ts";
import { parseInput, readJson } from "../validate.ts";

async function tenantOf(c: Context<AppEnv>): Promise<string> {
  const id = c.req.param("id") ?? "";
  const p = c.get("principal");
  if (p.kind !== "operator" && p.tenantId !== id) throw new AppError("not_found", "Tenant not found");
  return (await requireTenant(c.get("db"), id)).id;
}

export const tenantTrackingApi = new Hono<AppEnv>()
  .get("/", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    return c.json({ data: await trackingDefaultsOf(c.get("db"), tenantId, 0) });
  })
  .put("/", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const patch = parseInput(TenantTrackingPatchSchema, await readJson(c.req.raw), "body");
    return c.json({ data: await patchTrackingDefaults(c.get("db"), tenantId, patch, Date.now()) });
  });
