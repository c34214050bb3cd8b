/**
 * /api/admin/tenants/{id}/logins (docs/api/admin.md#dashboard-logins): the operator creates, lists,
 * changes and deletes the tenant's dashboard logins. Operator token only: a login can hold any role of
 * the tenant, so handing one out is a grant no tenant credential may make for itself. Mounted before
 * the admin API (edge/src/app.ts), with the admin API's authentication and error dialect.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../../context.ts";
import type { DashboardLoginRow } from "../../db/dashboard-logins.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { authenticate, requireOperator } from "../../middleware/auth.ts";
import { createLogin, deleteLogin, listLogins, updateLogin } from "../../services/dashboard-logins.ts";
import { requireTenant } from "../../services/tenants.ts";
import { renderFastApi } from "../errors.ts";
import { parseInput, readJson } from "../validate.ts";

const roleNames = z.array(z.string().min(1).max(100)).min(1).max(20);
const CreateBody = z.strictObject({
  email: z.email().max(254),
  password: z.string(),
  roles: roleNames,
});
const UpdateBody = z
  .strictObject({ password: z.string().optional(), roles: roleNames.optional() })
  .refine((b) => b.password !== undefined || b.roles !== undefined, "give password or roles");

/** Never the hash or its salt. */
const view = (r: DashboardLoginRow) => ({
  id: r.id,
  tenant_id: r.tenantId,
  email: r.email,
  roles: r.roles,
  created_at: iso(r.createdAt),
  updated_at: iso(r.updatedAt),
});

export const dashboardLoginsAdminApi = new Hono<AppEnv>()
  .use(authenticate({ allowOperator: true }), requireOperator())
  .post("/", async (c) => {
    const tenant = await requireTenant(c.get("db"), c.req.param("id")!);
    const body = parseInput(CreateBody, await readJson(c.req.raw), "body");
    return c.json({ data: view(await createLogin(c.get("db"), tenant.id, body, Date.now())) }, 201);
  })
  .get("/", async (c) => {
    const tenant = await requireTenant(c.get("db"), c.req.param("id")!);
    return c.json({ data: (await listLogins(c.get("db"), tenant.id)).map(view) });
  })
  .patch("/:login_id", async (c) => {
    const tenant = await requireTenant(c.get("db"), c.req.param("id")!);
    const body = parseInput(UpdateBody, await readJson(c.req.raw), "body");
    const row = await updateLogin(c.get("db"), tenant.id, c.req.param("login_id"), body, Date.now());
    return c.json({ data: view(row) });
  })
  .delete("/:login_id", async (c) => {
    const tenant = await requireTenant(c.get("db"), c.req.param("id")!);
    await deleteLogin(c.get("db"), tenant.id, c.req.param("login_id"));
    return c.body(null, 204);
  })
  .onError(renderFastApi);
