/**
 * Dashboard sign-in and sessions (docs/dashboard.md#sessions):
 *  - a session is a random 256-bit id in an HttpOnly cookie; D1 keeps only its SHA-256, so the table
 *    alone opens no session. It ends after IDLE_MS without a request, ABSOLUTE_MS after sign-in, or at
 *    logout, whichever comes first;
 *  - each session has its own CSRF token, which every form carries and every unsafe request is
 *    checked against in constant time (surfaces/dashboard/session.ts);
 *  - what a session may do is what its login's roles grant, resolved through the same RBAC as the
 *    API's ScaiKey JWTs (services/access.ts), so a role change reaches sessions within AUTH_CACHE_TTL_MS;
 *  - sign-in is throttled per (client address, email): MAX_FAILURES failures within FAILURE_WINDOW_MS
 *    refuse that pair, even with the right password, until the window has passed. An unknown email
 *    costs a PBKDF2 derivation too, so timing does not tell which emails have a login.
 */
import { randomHex } from "../../../shared/ids.ts";
import type { Permission } from "../../../shared/permissions.ts";
import type { Db } from "../db/client.ts";
import { findLoginByEmail } from "../db/dashboard-logins.ts";
import {
  clearFailures,
  deleteExpiredSessions,
  deleteOldFailures,
  deleteSession,
  failuresOf,
  findSession,
  insertSession,
  recordFailure,
  touchSession,
} from "../db/dashboard-sessions.ts";
import { sha256Hex } from "../lib/crypto.ts";
import { accessCache } from "./access.ts";
import { verifyPassword } from "./dashboard-passwords.ts";

export const IDLE_MS = 30 * 60_000;
export const ABSOLUTE_MS = 12 * 3_600_000;
/** last_seen_at is written at most this often, not on every page. */
const TOUCH_EVERY_MS = 60_000;
export const MAX_FAILURES = 5;
export const FAILURE_WINDOW_MS = 15 * 60_000;

export interface DashboardSession {
  idHash: string;
  tenantId: string;
  loginId: string;
  email: string;
  roles: string[];
  permissions: Permission[];
  csrfToken: string;
}

export type SignIn =
  | { outcome: "ok"; sessionId: string }
  | { outcome: "invalid" }
  | { outcome: "throttled"; retryAfterSeconds: number };

/** A salt and hash no login has: what an unknown email is checked against. */
const DECOY = {
  hash: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
  salt: "AAAAAAAAAAAAAAAAAAAAAA==",
  iterations: 100_000,
};

const failureKey = (clientIp: string, email: string) => sha256Hex(`${clientIp}\u0000${email}`);

export async function signIn(
  db: Db,
  input: { email: string; password: string; clientIp: string },
  now: number,
): Promise<SignIn> {
  const email = input.email.trim().toLowerCase();
  const key = await failureKey(input.clientIp, email);
  const past = await failuresOf(db, key);
  if (past && past.failures >= MAX_FAILURES && past.firstFailureAt >= now - FAILURE_WINDOW_MS) {
    return {
      outcome: "throttled",
      retryAfterSeconds: Math.ceil((past.firstFailureAt + FAILURE_WINDOW_MS - now) / 1000),
    };
  }
  const found = await findLoginByEmail(db, email);
  const ok = await verifyPassword(
    input.password,
    found
      ? {
          hash: found.login.passwordHash,
          salt: found.login.passwordSalt,
          iterations: found.login.passwordIterations,
        }
      : DECOY,
  );
  if (!found || !ok || found.tenantStatus !== "active") {
    await recordFailure(db, key, now, now - FAILURE_WINDOW_MS);
    return { outcome: "invalid" };
  }
  await clearFailures(db, key);
  // Housekeeping on the way: ended sessions and stale counters go (a sign-in is rare; the tables small).
  await deleteExpiredSessions(db, now - IDLE_MS, now - ABSOLUTE_MS);
  await deleteOldFailures(db, now - FAILURE_WINDOW_MS);
  const sessionId = randomHex(32);
  await insertSession(db, {
    idHash: await sha256Hex(sessionId),
    tenantId: found.login.tenantId,
    loginId: found.login.id,
    csrfToken: randomHex(32),
    createdAt: now,
    lastSeenAt: now,
  });
  return { outcome: "ok", sessionId };
}

/** The live session the cookie names, or null (unknown, idle too long, too old, login or tenant gone). */
export async function sessionOf(
  db: Db,
  sessionId: string,
  now: number,
  authCacheTtlMs: number,
): Promise<DashboardSession | null> {
  if (!/^[0-9a-f]{64}$/.test(sessionId)) return null;
  const idHash = await sha256Hex(sessionId);
  const found = await findSession(db, idHash);
  if (!found) return null;
  const { session, login } = found;
  if (session.lastSeenAt < now - IDLE_MS || session.createdAt < now - ABSOLUTE_MS) {
    await deleteSession(db, idHash);
    return null;
  }
  if (found.tenantStatus !== "active") return null;
  if (now - session.lastSeenAt >= TOUCH_EVERY_MS) await touchSession(db, idHash, now);
  const access = await accessCache.accessOf(
    db,
    session.tenantId,
    { subject: `login:${login.id}`, roles: login.roles, groups: [] },
    authCacheTtlMs,
  );
  return {
    idHash,
    tenantId: session.tenantId,
    loginId: login.id,
    email: login.email,
    roles: access.roles,
    permissions: access.permissions,
    csrfToken: session.csrfToken,
  };
}

export async function signOut(db: Db, session: DashboardSession): Promise<void> {
  await deleteSession(db, session.idHash);
}
