/**
 * Operator-managed dashboard logins (docs/api/admin.md#dashboard-logins): created, listed, changed and
 * deleted through /api/admin/tenants/{id}/logins and `scaisend logins`. A login's roles must be roles
 * the tenant has (a default role or one of its own); a new password or a deletion signs the login out
 * everywhere.
 */
import { AppError } from "../../../shared/errors.ts";
import { ulid } from "../../../shared/ids.ts";
import type { Db } from "../db/client.ts";
import { tenantDashboardLogins, type DashboardLoginRow } from "../db/dashboard-logins.ts";
import { tenantIdentity } from "../db/identity.ts";
import { hashPassword, passwordProblem } from "./dashboard-passwords.ts";

const notFound = (id: string) => new AppError("not_found", `Login not found: ${id}`);

async function checkRoles(db: Db, tenantId: string, roles: string[]): Promise<void> {
  const { roles: known } = await tenantIdentity(db, tenantId).accessTable();
  const names = new Set(known.map((r) => r.name));
  const unknown = roles.filter((r) => !names.has(r));
  if (unknown.length > 0) throw new AppError("invalid_request", `Unknown role: ${unknown.join(", ")}`);
}

function checkPassword(password: string): void {
  const problem = passwordProblem(password);
  if (problem) throw new AppError("invalid_request", problem);
}

export async function createLogin(
  db: Db,
  tenantId: string,
  input: { email: string; password: string; roles: string[] },
  now: number,
): Promise<DashboardLoginRow> {
  checkPassword(input.password);
  const roles = [...new Set(input.roles)];
  await checkRoles(db, tenantId, roles);
  const pw = await hashPassword(input.password);
  const row = {
    id: `lgn_${ulid(now)}`,
    email: input.email.trim().toLowerCase(),
    passwordHash: pw.hash,
    passwordSalt: pw.salt,
    passwordIterations: pw.iterations,
    roles,
    createdAt: now,
    updatedAt: now,
  };
  if (!(await tenantDashboardLogins(db, tenantId).insert(row))) {
    throw new AppError("conflict", `A login with this email exists: ${row.email}`);
  }
  return { ...row, tenantId };
}

export function listLogins(db: Db, tenantId: string): Promise<DashboardLoginRow[]> {
  return tenantDashboardLogins(db, tenantId).list();
}

export async function updateLogin(
  db: Db,
  tenantId: string,
  id: string,
  input: { password?: string | undefined; roles?: string[] | undefined },
  now: number,
): Promise<DashboardLoginRow> {
  const logins = tenantDashboardLogins(db, tenantId);
  if (!(await logins.get(id))) throw notFound(id);
  const patch: Parameters<typeof logins.update>[1] = { updatedAt: now };
  if (input.roles !== undefined) {
    patch.roles = [...new Set(input.roles)];
    await checkRoles(db, tenantId, patch.roles);
  }
  if (input.password !== undefined) {
    checkPassword(input.password);
    const pw = await hashPassword(input.password);
    Object.assign(patch, { passwordHash: pw.hash, passwordSalt: pw.salt, passwordIterations: pw.iterations });
  }
  const row = await logins.update(id, patch);
  if (!row) throw notFound(id);
  if (input.password !== undefined) await logins.deleteSessions(id);
  return row;
}

export async function deleteLogin(db: Db, tenantId: string, id: string): Promise<void> {
  const logins = tenantDashboardLogins(db, tenantId);
  await logins.deleteSessions(id);
  if (!(await logins.delete(id))) throw notFound(id);
}
