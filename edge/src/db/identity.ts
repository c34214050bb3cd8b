/**
 * Identity queries (docs/api/admin.md#partners … #group-mappings). Partners and tenants are read
 * across tenants only by the admin routes that decide visibility first; everything a tenant owns
 * (its roles, users, role assignments and group mappings) goes through `tenantIdentity(db, tenantId)`,
 * whose every statement is built from the tenant it was opened for, so another tenant's id is
 * simply not there (→ 404 upstream). Default roles (tenant_id null) are visible to every tenant and
 * changed by no statement here.
 */
import { and, asc, eq, inArray, isNull, or, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { groupMappings, partners, rolePermissions, roles, tenants, userRoles, users } from "./schema.ts";

export type PartnerRow = typeof partners.$inferSelect;
export type RoleRow = typeof roles.$inferSelect;
export type UserRow = typeof users.$inferSelect;
export type GroupMappingRow = typeof groupMappings.$inferSelect;
export type TenantRecord = typeof tenants.$inferSelect;

export interface RoleWithPermissions extends RoleRow {
  permissions: string[];
}

// ---- partners and tenants (cross-tenant: callers decide visibility) -------------------------

/** By local id or ScaiKey id (`prt_…`). */
export function findPartner(db: Db, idOrScaikey: string): Promise<PartnerRow | undefined> {
  return db
    .select()
    .from(partners)
    .where(or(eq(partners.id, idOrScaikey), eq(partners.scaikeyId, idOrScaikey)))
    .get();
}

export function listPartners(db: Db, onlyId?: string | null): Promise<PartnerRow[]> {
  if (onlyId === null) return Promise.resolve([]);
  const q = db.select().from(partners);
  return (onlyId === undefined ? q : q.where(eq(partners.id, onlyId))).orderBy(asc(partners.id)).all();
}

export async function insertPartner(db: Db, row: PartnerRow): Promise<PartnerRow> {
  const [created] = await db.insert(partners).values(row).returning();
  return created!;
}

export async function updatePartner(
  db: Db,
  id: string,
  patch: Partial<Pick<PartnerRow, "name" | "slug" | "scaikeyId" | "updatedAt">>,
): Promise<PartnerRow | undefined> {
  const [row] = await db.update(partners).set(patch).where(eq(partners.id, id)).returning();
  return row;
}

/** Deletes a partner that has no tenants; false if it has some (or does not exist). */
export async function deletePartnerIfEmpty(db: Db, id: string): Promise<boolean> {
  const res = await db.run(
    sql`DELETE FROM partners WHERE id = ${id} AND NOT EXISTS (SELECT 1 FROM tenants WHERE partner_id = ${id})`,
  );
  return res.meta.changes === 1;
}

export async function partnerTenantCount(db: Db, id: string): Promise<number> {
  const row = await db
    .select({ n: sql<number>`count(*)` })
    .from(tenants)
    .where(eq(tenants.partnerId, id))
    .get();
  return row?.n ?? 0;
}

/** By local id or ScaiKey id (`tnt_…` as ScaiKey names it). */
export function findTenant(db: Db, idOrScaikey: string): Promise<TenantRecord | undefined> {
  return db
    .select()
    .from(tenants)
    .where(or(eq(tenants.id, idOrScaikey), eq(tenants.scaikeyId, idOrScaikey)))
    .get();
}

/** Tenants in id order; `partnerId` narrows to one partner's, `onlyId` to one tenant. */
export function listTenants(
  db: Db,
  filter: { partnerId?: string; onlyId?: string },
  page: { after: string | null; limit: number },
): Promise<TenantRecord[]> {
  const conds = [
    filter.partnerId !== undefined ? eq(tenants.partnerId, filter.partnerId) : undefined,
    filter.onlyId !== undefined ? eq(tenants.id, filter.onlyId) : undefined,
    page.after !== null ? sql`${tenants.id} > ${page.after}` : undefined,
  ].filter((c) => c !== undefined);
  return db
    .select()
    .from(tenants)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(asc(tenants.id))
    .limit(page.limit)
    .all();
}

export async function updateTenant(
  db: Db,
  id: string,
  patch: Partial<
    Pick<TenantRecord, "name" | "settings" | "status" | "partnerId" | "slug" | "scaikeyId" | "updatedAt">
  >,
): Promise<TenantRecord | undefined> {
  const [row] = await db.update(tenants).set(patch).where(eq(tenants.id, id)).returning();
  return row;
}

// ---- what one tenant owns ---------------------------------------------------------------------

async function withPermissions(db: Db, rows: RoleRow[]): Promise<RoleWithPermissions[]> {
  if (rows.length === 0) return [];
  const perms = await db
    .select()
    .from(rolePermissions)
    .where(
      inArray(
        rolePermissions.roleId,
        rows.map((r) => r.id),
      ),
    )
    .all();
  const by = new Map<string, string[]>();
  for (const p of perms) by.set(p.roleId, [...(by.get(p.roleId) ?? []), p.permission]);
  return rows.map((r) => ({ ...r, permissions: by.get(r.id) ?? [] }));
}

export function tenantIdentity(db: Db, tenantId: string) {
  /** The tenant's own roles and the default ones: what this tenant may read or assign. */
  const visibleRole = or(eq(roles.tenantId, tenantId), isNull(roles.tenantId));
  const ownUser = (id: string) => and(eq(users.tenantId, tenantId), eq(users.id, id));

  return {
    // roles
    async listRoles(): Promise<RoleWithPermissions[]> {
      const rows = await db
        .select()
        .from(roles)
        .where(visibleRole)
        .orderBy(sql`${roles.isDefault} DESC`, asc(roles.name))
        .all();
      return withPermissions(db, rows);
    },

    async getRole(id: string): Promise<RoleWithPermissions | undefined> {
      const row = await db
        .select()
        .from(roles)
        .where(and(visibleRole, eq(roles.id, id)))
        .get();
      return row ? (await withPermissions(db, [row]))[0] : undefined;
    },

    roleByName(name: string): Promise<RoleRow | undefined> {
      return db
        .select()
        .from(roles)
        .where(and(visibleRole, eq(roles.name, name)))
        .get();
    },

    async insertRole(row: RoleRow, permissions: readonly string[]): Promise<void> {
      await db.batch([
        db.insert(roles).values({ ...row, tenantId, isDefault: false }),
        ...permissions.map((permission) => db.insert(rolePermissions).values({ roleId: row.id, permission })),
      ]);
    },

    /** Changes a custom role of this tenant (never a default role); false if there is none. */
    async updateRole(
      id: string,
      patch: { name?: string; description?: string | null; updatedAt: number },
      permissions: readonly string[] | undefined,
    ): Promise<boolean> {
      const own = and(eq(roles.tenantId, tenantId), eq(roles.id, id), eq(roles.isDefault, false));
      const found = await db.select({ id: roles.id }).from(roles).where(own).get();
      if (!found) return false;
      await db.batch([
        db.update(roles).set(patch).where(own),
        ...(permissions === undefined
          ? []
          : [
              db.delete(rolePermissions).where(eq(rolePermissions.roleId, id)),
              ...permissions.map((permission) =>
                db.insert(rolePermissions).values({ roleId: id, permission }),
              ),
            ]),
      ]);
      return true;
    },

    /** Deletes a custom role with its permissions, assignments and mappings; false if there is none. */
    async deleteRole(id: string): Promise<boolean> {
      const own = and(eq(roles.tenantId, tenantId), eq(roles.id, id), eq(roles.isDefault, false));
      const found = await db.select({ id: roles.id }).from(roles).where(own).get();
      if (!found) return false;
      await db.batch([
        db.delete(userRoles).where(and(eq(userRoles.tenantId, tenantId), eq(userRoles.roleId, id))),
        db
          .delete(groupMappings)
          .where(and(eq(groupMappings.tenantId, tenantId), eq(groupMappings.roleId, id))),
        db.delete(rolePermissions).where(eq(rolePermissions.roleId, id)),
        db.delete(roles).where(own),
      ]);
      return true;
    },

    // users
    listUsers(page: { after: string | null; limit: number }): Promise<UserRow[]> {
      return db
        .select()
        .from(users)
        .where(
          and(
            eq(users.tenantId, tenantId),
            page.after !== null ? sql`${users.id} > ${page.after}` : undefined,
          ),
        )
        .orderBy(asc(users.id))
        .limit(page.limit)
        .all();
    },

    getUser(id: string): Promise<UserRow | undefined> {
      return db.select().from(users).where(ownUser(id)).get();
    },

    userBySubject(scaikeyId: string): Promise<UserRow | undefined> {
      return db
        .select()
        .from(users)
        .where(and(eq(users.tenantId, tenantId), eq(users.scaikeyId, scaikeyId)))
        .get();
    },

    async insertUser(row: UserRow): Promise<void> {
      await db.insert(users).values({ ...row, tenantId });
    },

    async updateUser(
      id: string,
      patch: Partial<Pick<UserRow, "email" | "firstName" | "lastName" | "displayName" | "updatedAt">>,
    ): Promise<UserRow | undefined> {
      const [row] = await db.update(users).set(patch).where(ownUser(id)).returning();
      return row;
    },

    async deleteUser(id: string): Promise<boolean> {
      const found = await db.select({ id: users.id }).from(users).where(ownUser(id)).get();
      if (!found) return false;
      await db.batch([
        db.delete(userRoles).where(and(eq(userRoles.tenantId, tenantId), eq(userRoles.userId, id))),
        db.delete(users).where(ownUser(id)),
      ]);
      return true;
    },

    // role assignments
    async userRoleIds(userId: string): Promise<string[]> {
      const rows = await db
        .select({ roleId: userRoles.roleId })
        .from(userRoles)
        .where(and(eq(userRoles.tenantId, tenantId), eq(userRoles.userId, userId)))
        .all();
      return rows.map((r) => r.roleId);
    },

    /** The role ids a user (by JWT `sub`) holds directly in this tenant. */
    async subjectRoleIds(scaikeyId: string): Promise<string[]> {
      const rows = await db
        .select({ roleId: userRoles.roleId })
        .from(userRoles)
        .innerJoin(users, eq(users.id, userRoles.userId))
        .where(
          and(eq(userRoles.tenantId, tenantId), eq(users.tenantId, tenantId), eq(users.scaikeyId, scaikeyId)),
        )
        .all();
      return rows.map((r) => r.roleId);
    },

    /** Idempotent: assigning a role the user holds already changes nothing. */
    async assign(userId: string, roleId: string, now: number): Promise<void> {
      await db.insert(userRoles).values({ tenantId, userId, roleId, createdAt: now }).onConflictDoNothing();
    },

    async unassign(userId: string, roleId: string): Promise<void> {
      await db
        .delete(userRoles)
        .where(
          and(eq(userRoles.tenantId, tenantId), eq(userRoles.userId, userId), eq(userRoles.roleId, roleId)),
        );
    },

    // group mappings
    listMappings(): Promise<GroupMappingRow[]> {
      return db
        .select()
        .from(groupMappings)
        .where(eq(groupMappings.tenantId, tenantId))
        .orderBy(asc(groupMappings.id))
        .all();
    },

    getMapping(id: string): Promise<GroupMappingRow | undefined> {
      return db
        .select()
        .from(groupMappings)
        .where(and(eq(groupMappings.tenantId, tenantId), eq(groupMappings.id, id)))
        .get();
    },

    /** False when the tenant already maps this group to this role. */
    async insertMapping(row: GroupMappingRow): Promise<boolean> {
      const res = await db
        .insert(groupMappings)
        .values({ ...row, tenantId })
        .onConflictDoNothing()
        .run();
      return res.meta.changes === 1;
    },

    async updateMapping(
      id: string,
      patch: Partial<Pick<GroupMappingRow, "groupId" | "roleId">>,
    ): Promise<GroupMappingRow | undefined> {
      const [row] = await db
        .update(groupMappings)
        .set(patch)
        .where(and(eq(groupMappings.tenantId, tenantId), eq(groupMappings.id, id)))
        .returning();
      return row;
    },

    async deleteMapping(id: string): Promise<boolean> {
      const res = await db
        .delete(groupMappings)
        .where(and(eq(groupMappings.tenantId, tenantId), eq(groupMappings.id, id)))
        .run();
      return res.meta.changes === 1;
    },

    /**
     * Everything that turns a JWT into permissions in this tenant: every visible role with its
     * permissions, and every group mapping. One read per auth-cache TTL (services/access.ts).
     */
    async accessTable(): Promise<{ roles: RoleWithPermissions[]; mappings: GroupMappingRow[] }> {
      const [roleRows, mappings] = await Promise.all([this.listRoles(), this.listMappings()]);
      return { roles: roleRows, mappings };
    },
  };
}

export type TenantIdentity = ReturnType<typeof tenantIdentity>;
