/**
 * Applies ScaiKey records to the local mirror (docs/scaikey.md): partners, tenants, users and their
 * groups. One place for the three ways they arrive — sign-in (surfaces/sendgrid/auth.ts), the sync
 * webhook (surfaces/scaikey-webhook.ts) and `scaisend sync --full` (surfaces/admin/scaikey.ts).
 *
 * Invariants:
 *  - Idempotent: a record applies only when its ScaiKey `updated_at` is newer than the one the
 *    mirror holds (db/identity.ts), so a replay or an older record changes nothing.
 *  - A record whose parent is not mirrored yet (a tenant's partner, a user's tenant) is refused
 *    with 409, so ScaiKey retries it, rather than dropped.
 *  - A change is seen at once by this isolate (its auth caches are dropped), elsewhere within
 *    AUTH_CACHE_TTL_MS: a suspended tenant's keys and JWTs stop working within that window.
 */
import { AppError } from "../../../shared/errors.ts";
import type { Db } from "../db/client.ts";
import {
  deleteScaiKeyPartner,
  findPartner,
  findTenant,
  retireScaiKeyTenant,
  tenantIdentity,
  upsertScaiKeyPartner,
  upsertScaiKeyTenant,
  type TenantRecord as LocalTenant,
} from "../db/identity.ts";
import { accessCache } from "./access.ts";
import { catalogCache } from "./catalog-cache.ts";
import { tenantStatusCache } from "./jwt-auth.ts";
import type {
  DeletedRecord,
  MembershipRecord,
  PartnerRecord,
  TenantRecord,
  UserRecord,
} from "./scaikey-records.ts";

/** What applying a record did; "unchanged": the mirror held it, or a newer one, already. */
export type Outcome = "applied" | "unchanged";

/** D1 wraps SQLite's error (drizzle adds a layer): look along the cause chain. */
function isUniqueViolation(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e.message.includes("UNIQUE constraint failed")) return true;
  }
  return false;
}

const outcome = (applied: boolean): Outcome => (applied ? "applied" : "unchanged");

/** Tenant status is in every key's and JWT tenant's cache entry: dropped in this isolate. */
function forgetTenants(): void {
  catalogCache.forgetAllKeys();
  tenantStatusCache.clear();
}

/** The local tenant a ScaiKey tenant id names; 409 if it is not mirrored. */
export async function mirroredTenant(db: Db, scaikeyTenantId: string): Promise<LocalTenant> {
  const t = await findTenant(db, scaikeyTenantId);
  if (!t) throw new AppError("conflict", `Tenant ${scaikeyTenantId} is not mirrored yet`);
  return t;
}

export async function applyPartner(db: Db, r: PartnerRecord, now: number, seenAt = now): Promise<Outcome> {
  try {
    return outcome(
      await upsertScaiKeyPartner(
        db,
        { id: r.id, name: r.name, slug: r.slug, updatedAt: r.updated_at },
        now,
        seenAt,
      ),
    );
  } catch (err) {
    if (isUniqueViolation(err)) {
      throw new AppError(
        "conflict",
        `Partner ${r.id}: slug ${JSON.stringify(r.slug)} is taken by another partner`,
      );
    }
    throw err;
  }
}

export async function applyTenant(db: Db, r: TenantRecord, now: number, seenAt = now): Promise<Outcome> {
  let partnerId: string | null = null;
  if (r.partner_id) {
    const p = await findPartner(db, r.partner_id);
    if (!p) throw new AppError("conflict", `Partner ${r.partner_id} of tenant ${r.id} is not mirrored yet`);
    partnerId = p.id;
  }
  const applied = await upsertScaiKeyTenant(
    db,
    { id: r.id, partnerId, name: r.name, slug: r.slug ?? null, status: r.status, updatedAt: r.updated_at },
    now,
    seenAt,
  );
  if (applied) forgetTenants();
  return outcome(applied);
}

export async function applyUser(db: Db, r: UserRecord, now: number, seenAt = now): Promise<Outcome> {
  const tenant = await mirroredTenant(db, r.tenant_id);
  const applied = await tenantIdentity(db, tenant.id).upsertScaiKeyUser(
    {
      id: r.id,
      email: r.email ?? null,
      firstName: r.given_name ?? null,
      lastName: r.family_name ?? null,
      displayName: r.name ?? null,
      groups: r.groups,
      updatedAt: r.updated_at,
    },
    now,
    seenAt,
  );
  if (applied) accessCache.forgetUser(tenant.id, r.id);
  return outcome(applied);
}

export async function deletePartner(db: Db, r: DeletedRecord): Promise<Outcome> {
  const applied = await deleteScaiKeyPartner(db, r.id, r.updated_at);
  if (applied) forgetTenants();
  return outcome(applied);
}

/** A deleted tenant is suspended, its data kept (docs/scaikey.md#deletions). */
export async function deleteTenant(db: Db, r: DeletedRecord, now: number): Promise<Outcome> {
  const applied = await retireScaiKeyTenant(db, r.id, r.updated_at, now);
  if (applied) forgetTenants();
  return outcome(applied);
}

export async function deleteUser(db: Db, r: DeletedRecord): Promise<Outcome> {
  if (!r.tenant_id) throw new AppError("invalid_request", "A deleted user needs its tenant_id");
  const tenant = await findTenant(db, r.tenant_id);
  // A user of a tenant that is not (or no longer) mirrored is not mirrored either.
  if (!tenant) return "unchanged";
  const applied = await tenantIdentity(db, tenant.id).deleteScaiKeyUser(r.id, r.updated_at);
  if (applied) accessCache.forgetUser(tenant.id, r.id);
  return outcome(applied);
}

/** Adds or removes one group of a user; adding is 409 if the user is not mirrored yet. */
export async function applyMembership(db: Db, r: MembershipRecord, member: boolean): Promise<Outcome> {
  const tenant = await findTenant(db, r.tenant_id);
  const before = tenant && (await tenantIdentity(db, tenant.id).userBySubject(r.user_id));
  // Leaving a group the mirror does not have the user in is already done.
  if (!before && !member) return "unchanged";
  if (!tenant) throw new AppError("conflict", `Tenant ${r.tenant_id} is not mirrored yet`);
  if (!before)
    throw new AppError("conflict", `User ${r.user_id} of tenant ${r.tenant_id} is not mirrored yet`);
  const identity = tenantIdentity(db, tenant.id);
  const had = (await identity.userGroupIds(before.id)).includes(r.group_id);
  if (had === member) return "unchanged";
  await identity.setUserGroup(r.user_id, r.group_id, member);
  accessCache.forgetUser(tenant.id, r.user_id);
  return "applied";
}

/**
 * A user who signed in through /v3/auth (docs/scaikey.md#sign-in): the mirror row for (tenant, sub)
 * from the ID token's profile claims, and its groups from the `groups` claim when there is one.
 * The tenant must be mirrored and active, as for any ScaiKey JWT (401 / 403).
 */
export async function applySignIn(
  db: Db,
  user: {
    id: string;
    tenant_id: string | null;
    email: string | null;
    first_name: string | null;
    last_name: string | null;
    display_name: string | null;
  },
  claims: { groups: string[] | undefined; updatedAt: number | undefined },
  now: number,
): Promise<LocalTenant> {
  if (!user.tenant_id) throw new AppError("unauthorized", "ScaiKey's ID token names no tenant_id");
  const tenant = await findTenant(db, user.tenant_id);
  if (!tenant) throw new AppError("unauthorized", `Unknown tenant: ${user.tenant_id}`);
  if (tenant.status !== "active") throw new AppError("forbidden", "Tenant suspended");
  const applied = await tenantIdentity(db, tenant.id).upsertScaiKeyUser(
    {
      id: user.id,
      email: user.email,
      firstName: user.first_name,
      lastName: user.last_name,
      displayName: user.display_name,
      groups: claims.groups,
      // Without OIDC's updated_at the token is the newest view of the user there is.
      updatedAt: claims.updatedAt ?? now,
    },
    now,
  );
  if (applied) accessCache.forgetUser(tenant.id, user.id);
  return tenant;
}
