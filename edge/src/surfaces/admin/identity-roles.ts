/**
 * Permissions, roles, users and group mappings in the admin API (docs/api/admin.md#permissions,
 * #roles, #users, #group-mappings), `{"data": …}` bodies, always within one tenant (the JWT's, or
 * the operator's `?tenant_id=`); another tenant's role, user or mapping answers 404.
 *
 *  - Reading permissions and roles needs only a JWT of the tenant; changing roles, users, role
 *    assignments and group mappings needs `admin.users`.
 *  - Default roles (`admin`, `developer`) are shared by every tenant and read-only (403); a custom
 *    role cannot take a default role's name (409).
 *  - No escalation: a user can only put into a role, or assign or map to a role, permissions it
 *    holds itself (403 otherwise); the operator is not limited.
 *  - A change is seen at once by this isolate (services/access.ts forget*), elsewhere within
 *    AUTH_CACHE_TTL_MS.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import { PERMISSIONS } from "../../../../shared/permissions.ts";
import type { AppEnv } from "../../context.ts";
import {
  tenantIdentity,
  type GroupMappingRow,
  type RoleWithPermissions,
  type UserRow,
} from "../../db/identity.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { PARTNER_ADMIN_ROLE } from "../../middleware/jwt-principal.ts";
import { accessCache } from "../../services/access.ts";
import { routePermission } from "../route-permissions.ts";
import { parseInput, readJson } from "../validate.ts";
import {
  actingTenant,
  isUniqueViolation,
  newLocalId,
  pageOf,
  principalOf,
  requireGrantable,
  requireJwtOrOperator,
} from "./identity-access.ts";

/** What each permission grants (docs/api/admin.md#permissions). */
const PERMISSION_DESCRIPTIONS: Record<(typeof PERMISSIONS)[number], string> = {
  "mail.send": "Send mail through POST /v3/mail/send",
  "mail.schedule": "Use a future send_at, or batch grouping on send",
  "mail.cancel": "Cancel a queued or processing message",
  "templates.read": "List and read templates and versions",
  "templates.write": "Create and update templates and versions",
  "templates.delete": "Delete templates and versions",
  "suppressions.read": "List bounces, spam reports, unsubscribes, groups",
  "suppressions.write": "Add and remove suppressions; create and edit groups",
  "stats.read": "Read stats, category breakdowns, totals",
  "stats.export": "Trigger stats exports and rebuilds",
  "webhooks.read": "List webhook endpoints and event settings",
  "webhooks.write": "Create, update and delete webhook endpoints",
  "domains.read": "List sender domains",
  "domains.write": "Add domains, verify DNS, rotate DKIM",
  "admin.api_keys": "Create, update and revoke API keys",
  "admin.users": "Manage roles, user-role assignments and group mappings",
  "admin.settings": "Edit tenant settings (tracking, defaults)",
};
const CATEGORIES = [...new Set(PERMISSIONS.map((p) => p.split(".")[0]!))];
const permissionView = (p: (typeof PERMISSIONS)[number]) => ({
  id: p,
  name: p,
  category: p.split(".")[0]!,
  description: PERMISSION_DESCRIPTIONS[p],
});

const RESERVED_ROLE_NAMES = new Set([PARTNER_ADMIN_ROLE]);
const roleName = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9_.-]*$/, "must be lower-case letters, digits, '_', '.' or '-'");
const permissionList = z.array(z.enum(PERMISSIONS)).max(PERMISSIONS.length * 2);
const RoleCreate = z.strictObject({
  name: roleName,
  description: z.string().max(1000).nullable().optional(),
  permissions: permissionList.default([]),
});
const RolePatch = z.strictObject({
  name: roleName.optional(),
  description: z.string().max(1000).nullable().optional(),
  permissions: permissionList.optional(),
});
const text = (max: number) => z.string().trim().max(max).nullable().optional();
const UserCreate = z.strictObject({
  scaikey_id: z.string().trim().min(1).max(100),
  email: z.email().max(320).nullable().optional(),
  first_name: text(255),
  last_name: text(255),
  display_name: text(255),
});
const UserPatch = UserCreate.omit({ scaikey_id: true });
const MappingCreate = z.strictObject({
  group_id: z.string().trim().min(1).max(255),
  role_id: z.string().min(1).max(100),
});
const MappingPatch = MappingCreate.partial();
const RolesQuery = z.object({ include_permissions: z.enum(["true", "false"]).default("false") }).loose();

function roleView(r: RoleWithPermissions, withPermissions = true) {
  return {
    id: r.id,
    tenant_id: r.tenantId,
    name: r.name,
    description: r.description,
    is_default: r.isDefault,
    ...(withPermissions ? { permissions: PERMISSIONS.filter((p) => r.permissions.includes(p)) } : {}),
    created_at: iso(r.createdAt),
    updated_at: iso(r.updatedAt),
  };
}

function userView(u: UserRow, roles: { id: string; name: string }[]) {
  return {
    id: u.id,
    scaikey_id: u.scaikeyId,
    email: u.email,
    first_name: u.firstName,
    last_name: u.lastName,
    display_name: u.displayName,
    roles,
    created_at: iso(u.createdAt),
    updated_at: iso(u.updatedAt),
  };
}

const mappingView = (m: GroupMappingRow, role: RoleWithPermissions | undefined) => ({
  id: m.id,
  group_id: m.groupId,
  role_id: m.roleId,
  role_name: role?.name ?? null,
  created_at: iso(m.createdAt),
});

const roleNotFound = (id: string) => new AppError("not_found", `Role not found: ${id}`);
const userNotFound = (id: string) => new AppError("not_found", `User not found: ${id}`);
const mappingNotFound = (id: string) => new AppError("not_found", `Group mapping not found: ${id}`);

async function identityOf(c: Context<AppEnv>) {
  const tenantId = await actingTenant(c);
  return { tenantId, identity: tenantIdentity(c.get("db"), tenantId) };
}

async function requireRole(c: Context<AppEnv>, id: string): Promise<RoleWithPermissions> {
  const { identity } = await identityOf(c);
  const r = await identity.getRole(id);
  if (!r) throw roleNotFound(id);
  return r;
}

async function requireUser(c: Context<AppEnv>, id: string): Promise<UserRow> {
  const { identity } = await identityOf(c);
  const u = await identity.getUser(id);
  if (!u) throw userNotFound(id);
  return u;
}

async function rolesOfUser(c: Context<AppEnv>, userId: string) {
  const { identity } = await identityOf(c);
  const [ids, all] = await Promise.all([identity.userRoleIds(userId), identity.listRoles()]);
  return all.filter((r) => ids.includes(r.id)).map((r) => ({ id: r.id, name: r.name }));
}

/** 409 if `name` is a default role's, a reserved name, or another role of the tenant's. */
async function requireFreeName(c: Context<AppEnv>, name: string, self?: string): Promise<void> {
  const { identity } = await identityOf(c);
  const taken = await identity.roleByName(name);
  if (RESERVED_ROLE_NAMES.has(name) || (taken && taken.id !== self)) {
    throw new AppError("conflict", `A role named ${JSON.stringify(name)} already exists`);
  }
}

const readOnly = () => new AppError("forbidden", "Default roles are read-only; create a role of your own");

export const permissionsApi = new Hono<AppEnv>()
  .use(requireJwtOrOperator())
  .get("/", routePermission(), (c) => {
    const category = c.req.query("category");
    if (category !== undefined && !CATEGORIES.includes(category)) {
      throw new AppError(
        "invalid_request",
        `Unknown category ${JSON.stringify(category)}: use ${CATEGORIES.join(", ")}`,
      );
    }
    const list = PERMISSIONS.filter((p) => category === undefined || p.startsWith(`${category}.`));
    return c.json({ data: list.map(permissionView) });
  })
  .get("/:id", routePermission(), (c) => {
    const id = c.req.param("id");
    const p = PERMISSIONS.find((x) => x === id);
    if (!p) throw new AppError("not_found", `Permission not found: ${id}`);
    return c.json({ data: permissionView(p) });
  });

export const rolesApi = new Hono<AppEnv>()
  .use(requireJwtOrOperator())
  .get("/", routePermission(), async (c) => {
    const q = parseInput(RolesQuery, c.req.query(), "query");
    const { identity } = await identityOf(c);
    const rows = await identity.listRoles();
    return c.json({ data: rows.map((r) => roleView(r, q.include_permissions === "true")) });
  })
  .get("/:id", routePermission(), async (c) =>
    c.json({ data: roleView(await requireRole(c, c.req.param("id"))) }),
  )
  .post("/", routePermission(), async (c) => {
    const body = parseInput(RoleCreate, await readJson(c.req.raw), "body");
    requireGrantable(principalOf(c), body.permissions, "grant");
    const { tenantId, identity } = await identityOf(c);
    await requireFreeName(c, body.name);
    const now = Date.now();
    const id = newLocalId("rol", now);
    const permissions = [...new Set(body.permissions)];
    await identity.insertRole(
      {
        id,
        tenantId,
        name: body.name,
        description: body.description ?? null,
        isDefault: false,
        createdAt: now,
        updatedAt: now,
      },
      permissions,
    );
    accessCache.forgetTenant(tenantId);
    return c.json({ data: roleView((await identity.getRole(id))!) }, 201);
  })
  .patch("/:id", routePermission(), async (c) => {
    const role = await requireRole(c, c.req.param("id"));
    if (role.isDefault) throw readOnly();
    const body = parseInput(RolePatch, await readJson(c.req.raw), "body");
    const p = principalOf(c);
    // Changing a role's permissions changes what its holders may do: both the old and the new set
    // must be the caller's to give.
    if (body.permissions !== undefined)
      requireGrantable(p, [...role.permissions, ...body.permissions], "change");
    if (body.name !== undefined) await requireFreeName(c, body.name, role.id);
    const { tenantId, identity } = await identityOf(c);
    await identity.updateRole(
      role.id,
      {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.description !== undefined ? { description: body.description } : {}),
        updatedAt: Date.now(),
      },
      body.permissions === undefined ? undefined : [...new Set(body.permissions)],
    );
    accessCache.forgetTenant(tenantId);
    return c.json({ data: roleView((await identity.getRole(role.id))!) });
  })
  .delete("/:id", routePermission(), async (c) => {
    const role = await requireRole(c, c.req.param("id"));
    if (role.isDefault) throw readOnly();
    requireGrantable(principalOf(c), role.permissions, "remove");
    const { tenantId, identity } = await identityOf(c);
    await identity.deleteRole(role.id);
    accessCache.forgetTenant(tenantId);
    return c.body(null, 204);
  });

export const usersApi = new Hono<AppEnv>()
  .use(requireJwtOrOperator())
  .get("/", routePermission(), async (c) => {
    const page = pageOf(c);
    const { identity } = await identityOf(c);
    const [rows, roles] = await Promise.all([identity.listUsers(page), identity.listRoles()]);
    const out = [];
    for (const u of rows) {
      const ids = await identity.userRoleIds(u.id);
      out.push(
        userView(
          u,
          roles.filter((r) => ids.includes(r.id)).map((r) => ({ id: r.id, name: r.name })),
        ),
      );
    }
    return c.json({ data: out });
  })
  .post("/", routePermission(), async (c) => {
    const body = parseInput(UserCreate, await readJson(c.req.raw), "body");
    const { tenantId, identity } = await identityOf(c);
    if (await identity.userBySubject(body.scaikey_id)) {
      throw new AppError(
        "conflict",
        `A user with scaikey_id ${JSON.stringify(body.scaikey_id)} already exists`,
      );
    }
    const now = Date.now();
    const row: UserRow = {
      id: newLocalId("usr", now),
      tenantId,
      scaikeyId: body.scaikey_id,
      email: body.email ?? null,
      firstName: body.first_name ?? null,
      lastName: body.last_name ?? null,
      displayName: body.display_name ?? null,
      createdAt: now,
      updatedAt: now,
      scaikeyUpdatedAt: null,
      scaikeySyncedAt: null,
    };
    try {
      await identity.insertUser(row);
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new AppError(
          "conflict",
          `A user with scaikey_id ${JSON.stringify(body.scaikey_id)} already exists`,
        );
      }
      throw err;
    }
    accessCache.forgetUser(tenantId, row.scaikeyId);
    return c.json({ data: userView(row, []) }, 201);
  })
  .get("/:id", routePermission(), async (c) => {
    const u = await requireUser(c, c.req.param("id"));
    return c.json({ data: userView(u, await rolesOfUser(c, u.id)) });
  })
  .patch("/:id", routePermission(), async (c) => {
    const u = await requireUser(c, c.req.param("id"));
    const body = parseInput(UserPatch, await readJson(c.req.raw), "body");
    const { identity } = await identityOf(c);
    const row = await identity.updateUser(u.id, {
      ...(body.email !== undefined ? { email: body.email } : {}),
      ...(body.first_name !== undefined ? { firstName: body.first_name } : {}),
      ...(body.last_name !== undefined ? { lastName: body.last_name } : {}),
      ...(body.display_name !== undefined ? { displayName: body.display_name } : {}),
      updatedAt: Date.now(),
    });
    if (!row) throw userNotFound(u.id);
    return c.json({ data: userView(row, await rolesOfUser(c, u.id)) });
  })
  .delete("/:id", routePermission(), async (c) => {
    const u = await requireUser(c, c.req.param("id"));
    const { tenantId, identity } = await identityOf(c);
    await identity.deleteUser(u.id);
    accessCache.forgetUser(tenantId, u.scaikeyId);
    return c.body(null, 204);
  })
  .get("/:id/roles", routePermission(), async (c) => {
    const u = await requireUser(c, c.req.param("id"));
    return c.json({ data: await rolesOfUser(c, u.id) });
  })
  .post("/:id/roles/:role_id", routePermission(), async (c) => {
    const u = await requireUser(c, c.req.param("id"));
    const role = await requireRole(c, c.req.param("role_id"));
    requireGrantable(principalOf(c), role.permissions, "assign");
    const { tenantId, identity } = await identityOf(c);
    await identity.assign(u.id, role.id, Date.now());
    accessCache.forgetUser(tenantId, u.scaikeyId);
    return c.body(null, 204);
  })
  .delete("/:id/roles/:role_id", routePermission(), async (c) => {
    const u = await requireUser(c, c.req.param("id"));
    const role = await requireRole(c, c.req.param("role_id"));
    requireGrantable(principalOf(c), role.permissions, "remove");
    const { tenantId, identity } = await identityOf(c);
    await identity.unassign(u.id, role.id);
    accessCache.forgetUser(tenantId, u.scaikeyId);
    return c.body(null, 204);
  });

export const groupMappingsApi = new Hono<AppEnv>()
  .use(requireJwtOrOperator())
  .get("/", routePermission(), async (c) => {
    const { identity } = await identityOf(c);
    const [rows, roles] = await Promise.all([identity.listMappings(), identity.listRoles()]);
    return c.json({
      data: rows.map((m) =>
        mappingView(
          m,
          roles.find((r) => r.id === m.roleId),
        ),
      ),
    });
  })
  .post("/", routePermission(), async (c) => {
    const body = parseInput(MappingCreate, await readJson(c.req.raw), "body");
    const role = await requireRole(c, body.role_id);
    requireGrantable(principalOf(c), role.permissions, "map");
    const { tenantId, identity } = await identityOf(c);
    const now = Date.now();
    const row: GroupMappingRow = {
      id: newLocalId("grm", now),
      tenantId,
      groupId: body.group_id,
      roleId: role.id,
      createdAt: now,
    };
    if (!(await identity.insertMapping(row))) {
      throw new AppError(
        "conflict",
        `Group ${JSON.stringify(body.group_id)} is already mapped to role ${role.id}`,
      );
    }
    accessCache.forgetTenant(tenantId);
    return c.json({ data: mappingView(row, role) }, 201);
  })
  .get("/:id", routePermission(), async (c) => {
    const { identity } = await identityOf(c);
    const m = await identity.getMapping(c.req.param("id"));
    if (!m) throw mappingNotFound(c.req.param("id"));
    return c.json({ data: mappingView(m, await identity.getRole(m.roleId)) });
  })
  .patch("/:id", routePermission(), async (c) => {
    const { tenantId, identity } = await identityOf(c);
    const m = await identity.getMapping(c.req.param("id"));
    if (!m) throw mappingNotFound(c.req.param("id"));
    const body = parseInput(MappingPatch, await readJson(c.req.raw), "body");
    const p = principalOf(c);
    const oldRole = await identity.getRole(m.roleId);
    const newRole = body.role_id !== undefined ? await requireRole(c, body.role_id) : oldRole;
    requireGrantable(p, [...(oldRole?.permissions ?? []), ...(newRole?.permissions ?? [])], "map");
    let row: GroupMappingRow | undefined;
    try {
      row = await identity.updateMapping(m.id, {
        ...(body.group_id !== undefined ? { groupId: body.group_id } : {}),
        ...(newRole !== undefined ? { roleId: newRole.id } : {}),
      });
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new AppError("conflict", "That group is already mapped to that role");
      }
      throw err;
    }
    accessCache.forgetTenant(tenantId);
    return c.json({ data: mappingView(row!, newRole) });
  })
  .delete("/:id", routePermission(), async (c) => {
    const { tenantId, identity } = await identityOf(c);
    const m = await identity.getMapping(c.req.param("id"));
    if (!m) throw mappingNotFound(c.req.param("id"));
    const role = await identity.getRole(m.roleId);
    requireGrantable(principalOf(c), role?.permissions ?? [], "remove");
    await identity.deleteMapping(m.id);
    accessCache.forgetTenant(tenantId);
    return c.body(null, 204);
  });
