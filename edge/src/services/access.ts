/**
 * What a ScaiKey JWT may do in its tenant (docs/api/sendgrid.md#scaikey-jwts, docs/api/admin.md#roles):
 * the union of the permissions of
 *  - the roles its `roles` claim names (a default role, or one of the tenant's own roles, by name),
 *  - the roles its `groups` claim maps to through the tenant's group mappings, and
 *  - the roles assigned to the user (by the JWT's `sub`) in the tenant.
 * Names the tenant does not know grant nothing.
 *
 * Invariants:
 *  - One D1 read per tenant (its roles and group mappings) and one per (tenant, user) (its direct
 *    assignments) per AUTH_CACHE_TTL_MS in an isolate: a change made through another isolate is
 *    seen here within that window; one made through this isolate's admin routes calls `forget*`
 *    and is seen at once.
 *  - Bounded memory (lib/isolate-cache.ts), least recently used evicted first.
 */
import { PERMISSIONS, type Permission } from "../../../shared/permissions.ts";
import type { Db } from "../db/client.ts";
import { tenantIdentity, type GroupMappingRow, type RoleWithPermissions } from "../db/identity.ts";
import { IsolateCache, MISSING, type Clock } from "../lib/isolate-cache.ts";

const MAX_TENANTS = 10_000;
const MAX_USERS = 20_000;

interface TenantAccess {
  rolesByName: Map<string, RoleWithPermissions>;
  rolesById: Map<string, RoleWithPermissions>;
  groupRoles: Map<string, string[]>;
}

export interface Claims {
  subject: string;
  roles: readonly string[];
  groups: readonly string[];
}

export interface Access {
  /** Names of every role the principal holds, sorted. */
  roles: string[];
  permissions: Permission[];
}

function tableOf(roles: RoleWithPermissions[], mappings: GroupMappingRow[]): TenantAccess {
  const rolesByName = new Map<string, RoleWithPermissions>();
  const rolesById = new Map<string, RoleWithPermissions>();
  for (const r of roles) {
    rolesById.set(r.id, r);
    // A tenant's own role never shadows a default one (the admin routes refuse the name).
    if (!rolesByName.has(r.name) || r.isDefault) rolesByName.set(r.name, r);
  }
  const groupRoles = new Map<string, string[]>();
  for (const m of mappings) groupRoles.set(m.groupId, [...(groupRoles.get(m.groupId) ?? []), m.roleId]);
  return { rolesByName, rolesById, groupRoles };
}

export class AccessCache {
  private readonly tenants: IsolateCache<string, TenantAccess>;
  private readonly users: IsolateCache<string, string[]>;

  constructor(public clock: Clock = Date.now) {
    this.tenants = new IsolateCache(MAX_TENANTS, 1, () => this.clock());
    this.users = new IsolateCache(MAX_USERS, 1, () => this.clock());
  }

  async accessOf(db: Db, tenantId: string, claims: Claims, ttlMs: number): Promise<Access> {
    const identity = tenantIdentity(db, tenantId);
    const [table, direct] = await Promise.all([
      this.tenants.get(tenantId, ttlMs, async () => {
        const { roles, mappings } = await identity.accessTable();
        return tableOf(roles, mappings);
      }),
      this.users.get(`${tenantId}\u0000${claims.subject}`, ttlMs, () =>
        identity.subjectRoleIds(claims.subject),
      ),
    ]);
    if (table === MISSING || direct === MISSING) return { roles: [], permissions: [] };
    const held = new Map<string, RoleWithPermissions>();
    for (const name of claims.roles) {
      const r = table.rolesByName.get(name);
      if (r) held.set(r.id, r);
    }
    for (const group of claims.groups) {
      for (const id of table.groupRoles.get(group) ?? []) {
        const r = table.rolesById.get(id);
        if (r) held.set(r.id, r);
      }
    }
    for (const id of direct) {
      const r = table.rolesById.get(id);
      if (r) held.set(r.id, r);
    }
    const granted = new Set<string>();
    for (const r of held.values()) for (const p of r.permissions) granted.add(p);
    return {
      roles: [...new Set([...held.values()].map((r) => r.name))].sort(),
      permissions: PERMISSIONS.filter((p) => granted.has(p)),
    };
  }

  /** The tenant's roles or group mappings changed through this isolate. */
  forgetTenant(tenantId: string): void {
    this.tenants.delete(tenantId);
  }

  /** A user's role assignments changed through this isolate. */
  forgetUser(tenantId: string, subject: string): void {
    this.users.delete(`${tenantId}\u0000${subject}`);
  }

  clear(): void {
    this.tenants.clear();
    this.users.clear();
  }
}

/** This isolate's cache. */
export const accessCache = new AccessCache();
