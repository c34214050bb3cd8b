/**
 * Identity queries (docs/api/admin.md#partners … #group-mappings). Partners and tenants are read
 * across tenants only by the admin routes that decide visibility first; everything a tenant owns
 * (its roles, users, role assignments and group mappings) goes through `tenantIdentity(db, tenantId)`,
 * whose every statement is built from the tenant it was opened for, so another tenant's id is
 * simply not there (→ 404 upstream). Default roles (tenant_id null) are visible to every tenant and
 * changed by no statement here.
 */
import { and, asc, eq, inArray, isNull, lt, or, sql } from "drizzle-orm";
import type { AnySQLiteColumn } from "drizzle-orm/sqlite-core";
import { ulid } from "../../../shared/ids.ts";
import type { Db } from "./client.ts";
import {
  groupMappings,
  partners,
  rolePermissions,
  roles,
  scaikeyEvents,
  scaikeyRegistration,
  tenants,
  userGroups,
  userRoles,
  users,
} from "./schema.ts";

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

export async function insertPartner(db: Db, row: typeof partners.$inferInsert): Promise<PartnerRow> {
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

    async insertUser(row: typeof users.$inferInsert): Promise<void> {
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
    /**
     * The role ids a user holds in this tenant: assigned directly, or mapped from a ScaiKey group the
     * mirror has the user in (user_groups, docs/scaikey.md#records).
     */
    async userRoleIds(userId: string): Promise<string[]> {
      const [direct, grouped] = await Promise.all([
        db
          .select({ roleId: userRoles.roleId })
          .from(userRoles)
          .where(and(eq(userRoles.tenantId, tenantId), eq(userRoles.userId, userId)))
          .all(),
        db
          .select({ roleId: groupMappings.roleId })
          .from(userGroups)
          .innerJoin(
            groupMappings,
            and(eq(groupMappings.tenantId, tenantId), eq(groupMappings.groupId, userGroups.groupId)),
          )
          .where(and(eq(userGroups.tenantId, tenantId), eq(userGroups.userId, userId)))
          .all(),
      ]);
      return [...new Set([...direct, ...grouped].map((r) => r.roleId))];
    },

    /** The role ids a user (by JWT `sub`) holds in this tenant, as userRoleIds counts them. */
    async subjectRoleIds(scaikeyId: string): Promise<string[]> {
      const user = await this.userBySubject(scaikeyId);
      return user ? this.userRoleIds(user.id) : [];
    },

    /** The ScaiKey groups the mirror has the user in, sorted. */
    async userGroupIds(userId: string): Promise<string[]> {
      const rows = await db
        .select({ groupId: userGroups.groupId })
        .from(userGroups)
        .where(and(eq(userGroups.tenantId, tenantId), eq(userGroups.userId, userId)))
        .orderBy(asc(userGroups.groupId))
        .all();
      return rows.map((r) => r.groupId);
    },

    // the ScaiKey mirror (docs/scaikey.md): sign-in, the sync webhook and `sync --full`
    /**
     * Creates or updates the user `u.id` (its ScaiKey id) unless the mirror holds a newer ScaiKey
     * `updated_at` for it; marks it seen at `seenAt` either way. When applied and `u.groups` is
     * given, the user's groups become exactly those. Returns whether it was applied.
     */
    async upsertScaiKeyUser(u: ScaiKeyUser, now: number, seenAt = now): Promise<boolean> {
      const fields = {
        email: u.email,
        firstName: u.firstName,
        lastName: u.lastName,
        displayName: u.displayName,
        scaikeyUpdatedAt: u.updatedAt,
      };
      const [applied] = await db
        .insert(users)
        .values({
          id: newMirrorId("usr", now),
          tenantId,
          scaikeyId: u.id,
          ...fields,
          createdAt: now,
          updatedAt: now,
          scaikeySyncedAt: seenAt,
        })
        .onConflictDoUpdate({
          target: [users.tenantId, users.scaikeyId],
          set: { ...fields, updatedAt: now },
          setWhere: newer(users.scaikeyUpdatedAt, u.updatedAt),
        })
        .returning({ id: users.id });
      await db
        .update(users)
        .set({ scaikeySyncedAt: sql`max(coalesce(${users.scaikeySyncedAt}, 0), ${seenAt})` })
        .where(and(eq(users.tenantId, tenantId), eq(users.scaikeyId, u.id)));
      if (applied && u.groups !== undefined) {
        const groups = [...new Set(u.groups)];
        await db.batch([
          db
            .delete(userGroups)
            .where(and(eq(userGroups.tenantId, tenantId), eq(userGroups.userId, applied.id))),
          ...groups.map((groupId) =>
            db.insert(userGroups).values({ tenantId, userId: applied.id, groupId }).onConflictDoNothing(),
          ),
        ]);
      }
      return applied !== undefined;
    },

    /** Removes the mirror of ScaiKey user `scaikeyId` unless it holds a newer `updated_at`. */
    async deleteScaiKeyUser(scaikeyId: string, updatedAt: number): Promise<boolean> {
      const res = await db
        .delete(users)
        .where(
          and(
            eq(users.tenantId, tenantId),
            eq(users.scaikeyId, scaikeyId),
            newer(users.scaikeyUpdatedAt, updatedAt, true),
          ),
        )
        .run();
      return res.meta.changes > 0;
    },

    /** Adds (or removes) one ScaiKey group of the user `scaikeyId`; false if the user is not mirrored. */
    async setUserGroup(scaikeyId: string, groupId: string, member: boolean): Promise<boolean> {
      const user = await this.userBySubject(scaikeyId);
      if (!user) return false;
      if (member) {
        await db.insert(userGroups).values({ tenantId, userId: user.id, groupId }).onConflictDoNothing();
      } else {
        await db
          .delete(userGroups)
          .where(
            and(
              eq(userGroups.tenantId, tenantId),
              eq(userGroups.userId, user.id),
              eq(userGroups.groupId, groupId),
            ),
          );
      }
      return true;
    },

    /** Removes every user a full sync that started at `run` did not see (nor a webhook since). */
    async pruneScaiKeyUsers(run: number): Promise<string[]> {
      const gone = await db
        .delete(users)
        .where(
          and(
            eq(users.tenantId, tenantId),
            or(isNull(users.scaikeySyncedAt), lt(users.scaikeySyncedAt, run)),
          ),
        )
        .returning({ scaikeyId: users.scaikeyId });
      return gone.map((u) => u.scaikeyId);
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

// ---- the ScaiKey mirror across tenants (docs/scaikey.md): partners, tenants, events, registration --

/** A ScaiKey record as the mirror stores it; `updatedAt` is ScaiKey's, in unix ms. */
export interface ScaiKeyPartner {
  id: string;
  name: string;
  slug: string;
  updatedAt: number;
}

export interface ScaiKeyTenant {
  id: string;
  /** The local id of its partner (resolved from ScaiKey's `partner_id`), or null. */
  partnerId: string | null;
  name: string;
  slug: string | null;
  status: "active" | "suspended";
  updatedAt: number;
}

export interface ScaiKeyUser {
  id: string;
  email: string | null;
  firstName: string | null;
  lastName: string | null;
  displayName: string | null;
  /** The user's groups; undefined leaves the mirrored ones as they are. */
  groups?: string[] | undefined;
  updatedAt: number;
}

/** A local id for a new mirror row, time-ordered like every public id (shared/ids.ts). */
const newMirrorId = (prefix: string, now: number): string => `${prefix}_${ulid(now)}`;

/**
 * The stored ScaiKey `updated_at` is older than `incoming` (or there is none): a record applies only
 * then, so a replay or a late, older event changes nothing. `orEqual`: a delete at the same instant wins.
 */
function newer(column: AnySQLiteColumn, incoming: number, orEqual = false) {
  return or(isNull(column), orEqual ? sql`${column} <= ${incoming}` : lt(column, incoming))!;
}

const seen = (column: AnySQLiteColumn, at: number) => sql`max(coalesce(${column}, 0), ${at})`;

/** Creates or updates a partner by ScaiKey id, unless the mirror holds a newer one. */
export async function upsertScaiKeyPartner(
  db: Db,
  p: ScaiKeyPartner,
  now: number,
  seenAt = now,
): Promise<boolean> {
  const fields = { name: p.name, slug: p.slug, scaikeyUpdatedAt: p.updatedAt };
  const [applied] = await db
    .insert(partners)
    .values({ id: newMirrorId("prt", now), scaikeyId: p.id, ...fields, createdAt: now, updatedAt: now })
    .onConflictDoUpdate({
      target: partners.scaikeyId,
      set: { ...fields, updatedAt: now },
      setWhere: newer(partners.scaikeyUpdatedAt, p.updatedAt),
    })
    .returning({ id: partners.id });
  await db
    .update(partners)
    .set({ scaikeySyncedAt: seen(partners.scaikeySyncedAt, seenAt) })
    .where(eq(partners.scaikeyId, p.id));
  return applied !== undefined;
}

/** Creates or updates a tenant by ScaiKey id, unless the mirror holds a newer one. */
export async function upsertScaiKeyTenant(
  db: Db,
  t: ScaiKeyTenant,
  now: number,
  seenAt = now,
): Promise<boolean> {
  const fields = {
    name: t.name,
    slug: t.slug,
    status: t.status,
    partnerId: t.partnerId,
    scaikeyUpdatedAt: t.updatedAt,
  };
  const [applied] = await db
    .insert(tenants)
    .values({ id: newMirrorId("tnt", now), scaikeyId: t.id, ...fields, createdAt: now, updatedAt: now })
    .onConflictDoUpdate({
      target: tenants.scaikeyId,
      set: { ...fields, updatedAt: now },
      setWhere: newer(tenants.scaikeyUpdatedAt, t.updatedAt),
    })
    .returning({ id: tenants.id });
  await db
    .update(tenants)
    .set({ scaikeySyncedAt: seen(tenants.scaikeySyncedAt, seenAt) })
    .where(eq(tenants.scaikeyId, t.id));
  return applied !== undefined;
}

/**
 * A partner ScaiKey deleted: its tenants lose their partner, the partner row goes (unless the
 * mirror holds a newer record of it).
 */
export async function deleteScaiKeyPartner(db: Db, scaikeyId: string, updatedAt: number): Promise<boolean> {
  const row = await db
    .select({ id: partners.id })
    .from(partners)
    .where(and(eq(partners.scaikeyId, scaikeyId), newer(partners.scaikeyUpdatedAt, updatedAt, true)))
    .get();
  if (!row) return false;
  await db.batch([
    db.update(tenants).set({ partnerId: null }).where(eq(tenants.partnerId, row.id)),
    db.delete(partners).where(eq(partners.id, row.id)),
  ]);
  return true;
}

/**
 * A tenant ScaiKey deleted is suspended, not removed: its messages, keys and events stay for the
 * operator (docs/scaikey.md#deletions).
 */
export async function retireScaiKeyTenant(
  db: Db,
  scaikeyId: string,
  updatedAt: number,
  now: number,
): Promise<boolean> {
  const res = await db
    .update(tenants)
    .set({ status: "suspended", scaikeyUpdatedAt: updatedAt, updatedAt: now })
    .where(and(eq(tenants.scaikeyId, scaikeyId), newer(tenants.scaikeyUpdatedAt, updatedAt, true)))
    .run();
  return res.meta.changes > 0;
}

/** Partners (ScaiKey ids) a full sync that started at `run` did not see: detached and deleted. */
export async function pruneScaiKeyPartners(db: Db, run: number): Promise<string[]> {
  const stale = await db
    .select({ id: partners.id, scaikeyId: partners.scaikeyId })
    .from(partners)
    .where(
      and(
        sql`${partners.scaikeyId} IS NOT NULL`,
        or(isNull(partners.scaikeySyncedAt), lt(partners.scaikeySyncedAt, run)),
      ),
    )
    .all();
  for (const p of stale) {
    await db.batch([
      db.update(tenants).set({ partnerId: null }).where(eq(tenants.partnerId, p.id)),
      db.delete(partners).where(eq(partners.id, p.id)),
    ]);
  }
  return stale.map((p) => p.scaikeyId!);
}

/** Tenants (ScaiKey ids) a full sync that started at `run` did not see: suspended, as a deletion. */
export async function pruneScaiKeyTenants(db: Db, run: number, now: number): Promise<string[]> {
  const rows = await db
    .update(tenants)
    .set({ status: "suspended", updatedAt: now })
    .where(
      and(
        sql`${tenants.scaikeyId} IS NOT NULL`,
        eq(tenants.status, "active"),
        or(isNull(tenants.scaikeySyncedAt), lt(tenants.scaikeySyncedAt, run)),
      ),
    )
    .returning({ scaikeyId: tenants.scaikeyId });
  return rows.map((t) => t.scaikeyId!);
}

/** How long an applied event id is remembered; far beyond the webhook's 300 s replay window. */
const EVENT_MEMORY_MS = 24 * 3600_000;

export async function scaiKeyEventSeen(db: Db, id: string): Promise<boolean> {
  const row = await db
    .select({ id: scaikeyEvents.id })
    .from(scaikeyEvents)
    .where(eq(scaikeyEvents.id, id))
    .get();
  return row !== undefined;
}

export async function recordScaiKeyEvent(db: Db, id: string, now: number): Promise<void> {
  await db.batch([
    db.insert(scaikeyEvents).values({ id, receivedAt: now }).onConflictDoNothing(),
    db.delete(scaikeyEvents).where(lt(scaikeyEvents.receivedAt, now - EVENT_MEMORY_MS)),
  ]);
}

export type ScaiKeyRegistrationRow = typeof scaikeyRegistration.$inferSelect;
const REGISTRATION_ID = "default";

export function getScaiKeyRegistration(db: Db): Promise<ScaiKeyRegistrationRow | undefined> {
  return db.select().from(scaikeyRegistration).where(eq(scaikeyRegistration.id, REGISTRATION_ID)).get();
}

/** Sets the fields given (secrets already sealed); creates the row on first use. */
export async function putScaiKeyRegistration(
  db: Db,
  patch: Omit<Partial<ScaiKeyRegistrationRow>, "id" | "createdAt" | "updatedAt"> & { issuer: string },
  now: number,
): Promise<ScaiKeyRegistrationRow> {
  const [row] = await db
    .insert(scaikeyRegistration)
    .values({ id: REGISTRATION_ID, ...patch, createdAt: now, updatedAt: now })
    .onConflictDoUpdate({ target: scaikeyRegistration.id, set: { ...patch, updatedAt: now } })
    .returning();
  return row!;
}
