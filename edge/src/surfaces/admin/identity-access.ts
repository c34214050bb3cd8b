/**
 * Who may call the identity routes of the admin API (docs/api/admin.md#credentials): a ScaiKey JWT
 * (with the route's permission, in its own tenant) or the operator token, which names the tenant
 * with `?tenant_id=` (a local id or a ScaiKey id). API keys are refused with 403: ScaiSend's admin
 * API gives keys only the domain and tracking routes.
 */
import type { Context, MiddlewareHandler } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import { ulid } from "../../../../shared/ids.ts";
import type { AppEnv, Principal } from "../../context.ts";
import { findTenant, type TenantRecord } from "../../db/identity.ts";
import { parseInput } from "../validate.ts";

export function requireJwtOrOperator(): MiddlewareHandler<AppEnv> {
  return async function jwtOrOperator(c, next) {
    if (c.get("principal").kind === "api_key") {
      throw new AppError("forbidden", "This endpoint needs a ScaiKey JWT or the operator token");
    }
    return next();
  };
}

export type AdminPrincipal = Exclude<Principal, { kind: "api_key" }>;

export const principalOf = (c: Context<AppEnv>): AdminPrincipal => c.get("principal") as AdminPrincipal;

/** The tenant a tenant-owned identity route acts in: the JWT's own, or the one the operator names. */
export async function actingTenant(c: Context<AppEnv>): Promise<string> {
  const p = principalOf(c);
  if (p.kind === "jwt") return p.tenantId;
  const named = c.req.query("tenant_id");
  if (!named) throw new AppError("invalid_request", "tenant_id is required with the operator token");
  const t = await findTenant(c.get("db"), named);
  if (!t) throw new AppError("not_found", `Tenant not found: ${named}`);
  return t.id;
}

/**
 * Whether the principal may see this tenant (docs/api/admin.md#tenants): the operator every one, a
 * partner admin every tenant of its partner, any other user only its own.
 */
export function canSeeTenant(p: AdminPrincipal, t: TenantRecord): boolean {
  if (p.kind === "operator") return true;
  if (p.tenantId === t.id) return true;
  return p.partnerAdmin && p.partnerId !== null && t.partnerId === p.partnerId;
}

export const newLocalId = (prefix: "prt" | "rol" | "usr" | "grm", now: number) => `${prefix}_${ulid(now)}`;

const PageQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(500).default(100),
    after: z.string().min(1).max(100).optional(),
  })
  .loose();

/** `?limit=` (1–500, default 100) and `?after=<last id of the previous page>`. */
export function pageOf(c: Context<AppEnv>): { limit: number; after: string | null } {
  const q = parseInput(PageQuery, c.req.query(), "query");
  return { limit: q.limit, after: q.after ?? null };
}

/** 403 unless the caller holds every one of `permissions` (the operator holds all): no escalation. */
export function requireGrantable(p: AdminPrincipal, permissions: readonly string[], what: string): void {
  if (p.kind === "operator") return;
  const missing = permissions.filter((x) => !p.scopes.includes(x));
  if (missing.length > 0) {
    throw new AppError("forbidden", `Cannot ${what} permissions you do not hold: ${missing.join(", ")}`);
  }
}

/** Whether a D1 error (drizzle wraps it, the driver's message is in `cause`) is a UNIQUE violation. */
export function isUniqueViolation(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e.message.includes("UNIQUE constraint failed")) return true;
  }
  return false;
}
