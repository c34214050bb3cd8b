/**
 * Dashboard logins (docs/dashboard.md#sign-in). One tenant's logins go through `tenantDashboardLogins`,
 * whose every query is built from the tenant it was opened for. `findLoginByEmail` is the one lookup
 * across tenants, and on purpose: at sign-in the tenant is not known until the email names the login.
 */
import { and, asc, eq } from "drizzle-orm";
import type { Db } from "./client.ts";
import { dashboardLogins, dashboardSessions, tenants } from "./schema.ts";

export type DashboardLoginRow = typeof dashboardLogins.$inferSelect;

/** Sign-in only: the login of this (lower-cased) email in whichever tenant holds it, with the tenant's status. */
export function findLoginByEmail(db: Db, email: string) {
  return db
    .select({ login: dashboardLogins, tenantStatus: tenants.status })
    .from(dashboardLogins)
    .innerJoin(tenants, eq(tenants.id, dashboardLogins.tenantId))
    .where(eq(dashboardLogins.email, email))
    .get();
}

export function tenantDashboardLogins(db: Db, tenantId: string) {
  const own = (id: string) => and(eq(dashboardLogins.tenantId, tenantId), eq(dashboardLogins.id, id));
  return {
    list(): Promise<DashboardLoginRow[]> {
      return db
        .select()
        .from(dashboardLogins)
        .where(eq(dashboardLogins.tenantId, tenantId))
        .orderBy(asc(dashboardLogins.email))
        .all();
    },

    get(id: string): Promise<DashboardLoginRow | undefined> {
      return db.select().from(dashboardLogins).where(own(id)).get();
    },

    /** False when the email is taken (in any tenant: emails are unique across the install). */
    async insert(row: Omit<DashboardLoginRow, "tenantId">): Promise<boolean> {
      const result = await db
        .insert(dashboardLogins)
        .values({ ...row, tenantId })
        .onConflictDoNothing({ target: dashboardLogins.email })
        .run();
      return result.meta.changes === 1;
    },

    async update(
      id: string,
      patch: Partial<
        Pick<DashboardLoginRow, "passwordHash" | "passwordSalt" | "passwordIterations" | "roles">
      > & {
        updatedAt: number;
      },
    ): Promise<DashboardLoginRow | undefined> {
      const [row] = await db.update(dashboardLogins).set(patch).where(own(id)).returning();
      return row;
    },

    /** Every session of one of the tenant's logins (a new password or a deletion signs it out everywhere). */
    async deleteSessions(loginId: string): Promise<void> {
      await db
        .delete(dashboardSessions)
        .where(and(eq(dashboardSessions.tenantId, tenantId), eq(dashboardSessions.loginId, loginId)))
        .run();
    },

    /** Its sessions go with it (ON DELETE CASCADE). */
    async delete(id: string): Promise<boolean> {
      const result = await db.delete(dashboardLogins).where(own(id)).run();
      return result.meta.changes === 1;
    },
  };
}
