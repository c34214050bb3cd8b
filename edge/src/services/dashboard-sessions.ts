/**
 * Dashboard sign-in and sessions (docs/dashboard.md#sessions):
 *  - a session is a random 256-bit id in an HttpOnly cookie; D1 keeps only its SHA-256, so the table
 *    alone opens no session. It ends after IDLE_MS without a request, ABSOLUTE_MS after sign-in, or at
 *    logout, whichever comes first;
 *  - each session has its own CSRF token, which every form carries and every unsafe request is
 *    checked against in constant time (surfaces/dashboard/session.ts);
 *  - what a session may do is what its login's roles grant, resolved through the same RBAC as the
 *    API's ScaiKey JWTs (services/access.ts), so a role change reaches sessions within AUTH_CACHE_TTL_MS;
 *  - a user ScaiKey signed in (OIDC) gets a session too; its roles are those its mirrored ScaiKey
 *    groups map to, through the same cache as its JWTs (a sync-webhook change is seen at once in
 *    the isolate that applied it, elsewhere within AUTH_CACHE_TTL_MS);
 *  - the cron sweep (sweepEndedSessions) deletes ended sessions in bounded batches;
 *  - sign-in is throttled per (client address, email): MAX_FAILURES failures within FAILURE_WINDOW_MS
 *    refuse that pair, even with the right password, until the window has passed. An unknown email
 *    costs a PBKDF2 derivation too, so timing does not tell which emails have a login.
 */
import { AppError } from "../../../shared/errors.ts";
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
import { tenantIdentity } from "../db/identity.ts";
import { sha256Hex } from "../lib/crypto.ts";
import { accessCache } from "./access.ts";
import { verifyPassword } from "./dashboard-passwords.ts";
import type { LoginClaims, LoginUser } from "./oidc.ts";
import { applySignIn } from "./scaikey-mirror.ts";

export const IDLE_MS = 30 * 60_000;
export const ABSOLUTE_MS = 12 * 3_600_000;
/** last_seen_at is written at most this often, not on every page. */
const TOUCH_EVERY_MS = 60_000;
export const MAX_FAILURES = 5;
export const FAILURE_WINDOW_MS = 15 * 60_000;

export interface DashboardSession {
  idHash: string;
  tenantId: string;
  /** Who acts: `login:<id>` for an operator-created login, the ScaiKey user id (a JWT's `sub`) for a user. */
  subject: string;
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
  return {
    outcome: "ok",
    sessionId: await startSession(db, { tenantId: found.login.tenantId, loginId: found.login.id }, now),
  };
}

/** A new session for a login or a mirrored user; its random id, which only the cookie holds. */
async function startSession(
  db: Db,
  owner: { tenantId: string; loginId: string } | { tenantId: string; userId: string },
  now: number,
): Promise<string> {
  const sessionId = randomHex(32);
  await insertSession(db, {
    idHash: await sha256Hex(sessionId),
    ...owner,
    csrfToken: randomHex(32),
    createdAt: now,
    lastSeenAt: now,
  });
  return sessionId;
}

/**
 * A user ScaiKey signed in (services/oidc.ts verified the ID token): the user is written to the
 * tenant's mirror with the token's groups, as /v3/auth's callback does (services/scaikey-mirror.ts),
 * and gets a session of its own. The tenant is the token's `tenant_id`: unknown → 401, suspended → 403.
 */
export async function signInWithScaiKey(
  db: Db,
  user: LoginUser,
  claims: LoginClaims,
  now: number,
): Promise<string> {
  const tenant = await applySignIn(db, user, claims, now);
  const row = await tenantIdentity(db, tenant.id).userBySubject(user.id);
  if (!row) throw new AppError("unauthorized", "ScaiKey's user is not in the mirror");
  return startSession(db, { tenantId: tenant.id, userId: row.id }, now);
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
  const { session, login, user } = found;
  if (session.lastSeenAt < now - IDLE_MS || session.createdAt < now - ABSOLUTE_MS) {
    await deleteSession(db, idHash);
    return null;
  }
  if (found.tenantStatus !== "active") return null;
  if (!login && !user) return null;
  if (now - session.lastSeenAt >= TOUCH_EVERY_MS) await touchSession(db, idHash, now);
  // A login holds the roles the operator gave it; a ScaiKey user the roles its subject holds in the
  // tenant, which are those its mirrored groups map to and any assigned to it directly
  // (db/identity.ts userRoleIds), resolved and cached exactly as for its JWTs.
  const claims = login
    ? { subject: `login:${login.id}`, roles: login.roles, groups: [] }
    : { subject: user!.scaikeyId, roles: [], groups: [] };
  const access = await accessCache.accessOf(db, session.tenantId, claims, authCacheTtlMs);
  return {
    idHash,
    tenantId: session.tenantId,
    subject: claims.subject,
    email: login ? login.email : (user!.email ?? user!.displayName ?? user!.scaikeyId),
    roles: access.roles,
    permissions: access.permissions,
    csrfToken: session.csrfToken,
  };
}

/** Ended sessions and stale sign-in counters go, SWEEP_BATCH rows a statement, at most SWEEP_MAX_BATCHES times a run. */
export const SWEEP_BATCH = 500;
export const SWEEP_MAX_BATCHES = 20;

export async function sweepEndedSessions(
  db: Db,
  now: number,
  batch = SWEEP_BATCH,
  maxBatches = SWEEP_MAX_BATCHES,
): Promise<{ sessions: number; more: boolean }> {
  let sessions = 0;
  for (let i = 0; i < maxBatches; i++) {
    const n = await deleteExpiredSessions(db, now - IDLE_MS, now - ABSOLUTE_MS, batch);
    sessions += n;
    if (n < batch) {
      await deleteOldFailures(db, now - FAILURE_WINDOW_MS);
      return { sessions, more: false };
    }
  }
  return { sessions, more: true };
}

export async function signOut(db: Db, session: DashboardSession): Promise<void> {
  await deleteSession(db, session.idHash);
}
