/**
 * Dashboard sessions and the sign-in throttle's counters (docs/dashboard.md#sessions). Sessions are
 * found by the SHA-256 of the cookie's id, which names one tenant's session: the session row, not the
 * request, says which tenant it acts in. The failure counters hold no tenant data (a hash of address
 * and email).
 */
import { eq, lt, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { dashboardLoginFailures, dashboardLogins, dashboardSessions, tenants } from "./schema.ts";

export type DashboardSessionRow = typeof dashboardSessions.$inferSelect;

export function insertSession(db: Db, row: DashboardSessionRow) {
  return db.insert(dashboardSessions).values(row).run();
}

/** The session, its login and its tenant's status; undefined when the id is unknown or the login gone. */
export function findSession(db: Db, idHash: string) {
  return db
    .select({ session: dashboardSessions, login: dashboardLogins, tenantStatus: tenants.status })
    .from(dashboardSessions)
    .innerJoin(dashboardLogins, eq(dashboardLogins.id, dashboardSessions.loginId))
    .innerJoin(tenants, eq(tenants.id, dashboardSessions.tenantId))
    .where(eq(dashboardSessions.idHash, idHash))
    .get();
}

export function touchSession(db: Db, idHash: string, now: number) {
  return db
    .update(dashboardSessions)
    .set({ lastSeenAt: now })
    .where(eq(dashboardSessions.idHash, idHash))
    .run();
}

export function deleteSession(db: Db, idHash: string) {
  return db.delete(dashboardSessions).where(eq(dashboardSessions.idHash, idHash)).run();
}

/** Sessions idle since before `idleBefore` or created before `createdBefore` (the cron sweep). */
export function deleteExpiredSessions(db: Db, idleBefore: number, createdBefore: number) {
  return db
    .delete(dashboardSessions)
    .where(
      sql`${dashboardSessions.lastSeenAt} < ${idleBefore} OR ${dashboardSessions.createdAt} < ${createdBefore}`,
    )
    .run();
}

export function failuresOf(db: Db, key: string) {
  return db.select().from(dashboardLoginFailures).where(eq(dashboardLoginFailures.key, key)).get();
}

/** One more failure in the window that began at `windowStart` or later; a window older than that starts again. */
export function recordFailure(db: Db, key: string, now: number, windowStart: number) {
  return db
    .insert(dashboardLoginFailures)
    .values({ key, failures: 1, firstFailureAt: now })
    .onConflictDoUpdate({
      target: dashboardLoginFailures.key,
      set: {
        failures: sql`CASE WHEN ${dashboardLoginFailures.firstFailureAt} < ${windowStart} THEN 1 ELSE ${dashboardLoginFailures.failures} + 1 END`,
        firstFailureAt: sql`CASE WHEN ${dashboardLoginFailures.firstFailureAt} < ${windowStart} THEN ${now} ELSE ${dashboardLoginFailures.firstFailureAt} END`,
      },
    })
    .run();
}

export function clearFailures(db: Db, key: string) {
  return db.delete(dashboardLoginFailures).where(eq(dashboardLoginFailures.key, key)).run();
}

export function deleteOldFailures(db: Db, before: number) {
  return db.delete(dashboardLoginFailures).where(lt(dashboardLoginFailures.firstFailureAt, before)).run();
}
