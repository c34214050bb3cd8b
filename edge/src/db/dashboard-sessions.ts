/**
 * Dashboard sessions and the sign-in throttle's counters (docs/dashboard.md#sessions). Sessions are
 * found by the SHA-256 of the cookie's id, which names one tenant's session: the session row, not the
 * request, says which tenant it acts in. The failure counters hold no tenant data (a hash of address
 * and email).
 */
import { eq, inArray, lt, or, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { dashboardLoginFailures, dashboardLogins, dashboardSessions, tenants, users } from "./schema.ts";

export type DashboardSessionRow = typeof dashboardSessions.$inferSelect;

export function insertSession(db: Db, row: typeof dashboardSessions.$inferInsert) {
  return db.insert(dashboardSessions).values(row).run();
}

/**
 * The session, its owner (an operator-created login or a mirrored ScaiKey user: one is null) and its
 * tenant's status; undefined when the id is unknown. An owner that is gone took its sessions with it
 * (ON DELETE CASCADE).
 */
export function findSession(db: Db, idHash: string) {
  return db
    .select({
      session: dashboardSessions,
      login: dashboardLogins,
      user: users,
      tenantStatus: tenants.status,
    })
    .from(dashboardSessions)
    .leftJoin(dashboardLogins, eq(dashboardLogins.id, dashboardSessions.loginId))
    .leftJoin(users, eq(users.id, dashboardSessions.userId))
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

/**
 * Up to `limit` sessions idle since before `idleBefore` or created before `createdBefore` (ended
 * either way); how many went. Bounded, so one statement never holds D1 for long (the cron sweep
 * repeats it, services/dashboard-sessions.ts).
 */
export async function deleteExpiredSessions(
  db: Db,
  idleBefore: number,
  createdBefore: number,
  limit: number,
): Promise<number> {
  const res = await db
    .delete(dashboardSessions)
    .where(
      inArray(
        dashboardSessions.idHash,
        db
          .select({ idHash: dashboardSessions.idHash })
          .from(dashboardSessions)
          .where(
            or(lt(dashboardSessions.lastSeenAt, idleBefore), lt(dashboardSessions.createdAt, createdBefore)),
          )
          .limit(limit),
      ),
    )
    .run();
  return res.meta.changes ?? 0;
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
