/**
 * Partners and tenants in the admin API (docs/api/admin.md#partners, #tenants), `{"data": …}` bodies.
 *
 * Visibility (docs/api/admin.md#tenants): the operator sees every partner and tenant; a JWT user
 * sees its own tenant and that tenant's partner; a partner admin (`partner_admin` in the JWT's
 * `roles`) also every tenant of its partner. Anything else answers 404, as an id that does not exist.
 * Ids are local ids or ScaiKey ids (`prt_…`, `tnt_…`).
 *
 * A tenant's `status` (active | suspended) is changed by the operator or its partner's admin. The
 * isolate that makes the change refuses the tenant's keys and JWTs at once (its caches are dropped);
 * every other isolate within AUTH_CACHE_TTL_MS (services/catalog-cache.ts, services/jwt-auth.ts).
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import {
  deletePartnerIfEmpty,
  findPartner,
  findTenant,
  insertPartner,
  listPartners,
  listTenants,
  updatePartner,
  updateTenant,
  type PartnerRow,
  type TenantRecord,
} from "../../db/identity.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { requireOperator } from "../../middleware/auth.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import { tenantStatusCache } from "../../services/jwt-auth.ts";
import { routePermission } from "../route-permissions.ts";
import { parseInput, readJson } from "../validate.ts";
import {
  canSeeTenant,
  isUniqueViolation,
  newLocalId,
  pageOf,
  principalOf,
  requireJwtOrOperator,
} from "./identity-access.ts";

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const slug = z.string().regex(SLUG, "must be lower-case letters, digits and hyphens (1–64)");
const scaikeyId = z.string().trim().min(1).max(100);

const PartnerCreate = z.strictObject({
  name: z.string().trim().min(1).max(255),
  slug,
  scaikey_id: scaikeyId.nullable().optional(),
});
const PartnerPatch = PartnerCreate.partial();

const TenantPatch = z.strictObject({
  name: z.string().trim().min(1).max(255).optional(),
  settings: z.record(z.string(), z.unknown()).optional(),
  status: z.enum(["active", "suspended"]).optional(),
  slug: slug.nullable().optional(),
  scaikey_id: scaikeyId.nullable().optional(),
  partner_id: z.string().min(1).nullable().optional(),
});

export function partnerView(p: PartnerRow) {
  return {
    id: p.id,
    scaikey_id: p.scaikeyId,
    name: p.name,
    slug: p.slug,
    created_at: iso(p.createdAt),
    updated_at: iso(p.updatedAt),
  };
}

export function tenantView(t: TenantRecord) {
  return {
    id: t.id,
    scaikey_id: t.scaikeyId,
    name: t.name,
    slug: t.slug,
    partner_id: t.partnerId,
    status: t.status,
    settings: t.settings ?? {},
    created_at: iso(t.createdAt),
    updated_at: iso(t.updatedAt),
  };
}

const partnerNotFound = (id: string) => new AppError("not_found", `Partner not found: ${id}`);
const tenantNotFound = (id: string) => new AppError("not_found", `Tenant not found: ${id}`);

/** The partner, if the principal may see it (its tenant's partner), else 404. */
async function visiblePartner(c: Context<AppEnv>, id: string): Promise<PartnerRow> {
  const p = principalOf(c);
  const row = await findPartner(c.get("db"), id);
  if (!row || (p.kind !== "operator" && p.partnerId !== row.id)) throw partnerNotFound(id);
  return row;
}

async function visibleTenant(c: Context<AppEnv>, id: string): Promise<TenantRecord> {
  const row = await findTenant(c.get("db"), id);
  if (!row || !canSeeTenant(principalOf(c), row)) throw tenantNotFound(id);
  return row;
}

/** A UNIQUE constraint failure from D1 → 409 naming the field. */
async function unique<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (isUniqueViolation(err)) {
      throw new AppError("conflict", `${what} is already taken`);
    }
    throw err;
  }
}

export const partnersApi = new Hono<AppEnv>()
  .use(requireJwtOrOperator())
  .get("/", routePermission(), async (c) => {
    const p = principalOf(c);
    const rows = await listPartners(c.get("db"), p.kind === "operator" ? undefined : p.partnerId);
    return c.json({ data: rows.map(partnerView) });
  })
  .get("/:id", routePermission(), async (c) =>
    c.json({ data: partnerView(await visiblePartner(c, c.req.param("id"))) }),
  )
  .post("/", requireOperator(), async (c) => {
    const body = parseInput(PartnerCreate, await readJson(c.req.raw), "body");
    const now = Date.now();
    const row = await unique("slug or scaikey_id", () =>
      insertPartner(c.get("db"), {
        id: newLocalId("prt", now),
        scaikeyId: body.scaikey_id ?? null,
        name: body.name,
        slug: body.slug,
        createdAt: now,
        updatedAt: now,
      }),
    );
    return c.json({ data: partnerView(row) }, 201);
  })
  .patch("/:id", requireOperator(), async (c) => {
    const found = await visiblePartner(c, c.req.param("id"));
    const body = parseInput(PartnerPatch, await readJson(c.req.raw), "body");
    const row = await unique("slug or scaikey_id", () =>
      updatePartner(c.get("db"), found.id, {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.slug !== undefined ? { slug: body.slug } : {}),
        ...(body.scaikey_id !== undefined ? { scaikeyId: body.scaikey_id } : {}),
        updatedAt: Date.now(),
      }),
    );
    return c.json({ data: partnerView(row!) });
  })
  .delete("/:id", requireOperator(), async (c) => {
    const found = await visiblePartner(c, c.req.param("id"));
    if (!(await deletePartnerIfEmpty(c.get("db"), found.id))) {
      throw new AppError("conflict", "The partner still has tenants; move or remove them first");
    }
    return c.body(null, 204);
  });

// Guarded per route, not with use(): a use() here would also sit in front of every other route
// mounted under /tenants/{id}/… (tracking, rate limits, …), which take API keys.
const jwtOrOperator = requireJwtOrOperator();

export const tenantsApi = new Hono<AppEnv>()
  .get("/", jwtOrOperator, routePermission(), async (c) => {
    const p = principalOf(c);
    const page = pageOf(c);
    const named = c.req.query("partner_id");
    let partnerId: string | undefined;
    if (named !== undefined) {
      const partner = await findPartner(c.get("db"), named);
      // Another partner's id lists nothing, as one that does not exist.
      if (!partner || (p.kind !== "operator" && p.partnerId !== partner.id)) return c.json({ data: [] });
      partnerId = partner.id;
    }
    const db = c.get("db");
    let rows: TenantRecord[];
    if (p.kind === "operator") rows = await listTenants(db, { partnerId }, page);
    else if (p.partnerAdmin && p.partnerId !== null)
      rows = await listTenants(db, { partnerId: p.partnerId }, page);
    else
      rows =
        partnerId === undefined || partnerId === p.partnerId
          ? await listTenants(db, { onlyId: p.tenantId }, page)
          : [];
    return c.json({ data: rows.map(tenantView) });
  })
  .get("/:id", jwtOrOperator, routePermission(), async (c) =>
    c.json({ data: tenantView(await visibleTenant(c, c.req.param("id"))) }),
  )
  .patch("/:id", jwtOrOperator, routePermission(), async (c) => {
    const p = principalOf(c);
    const found = await visibleTenant(c, c.req.param("id"));
    const body = parseInput(TenantPatch, await readJson(c.req.raw), "body");
    const administers = p.kind === "operator" || (p.kind === "jwt" && p.partnerAdmin);
    if (body.status !== undefined && !administers) {
      throw new AppError(
        "forbidden",
        "Only the operator or the partner's admin may change a tenant's status",
      );
    }
    const operatorOnly = (["slug", "scaikey_id", "partner_id"] as const).filter((k) => body[k] !== undefined);
    if (operatorOnly.length > 0 && p.kind !== "operator") {
      throw new AppError("forbidden", `Only the operator may change ${operatorOnly.join(", ")}`);
    }
    let partnerId: string | null | undefined;
    if (body.partner_id !== undefined && body.partner_id !== null) {
      const partner = await findPartner(c.get("db"), body.partner_id);
      if (!partner) throw partnerNotFound(body.partner_id);
      partnerId = partner.id;
    } else if (body.partner_id === null) partnerId = null;
    const row = await unique("scaikey_id", () =>
      updateTenant(c.get("db"), found.id, {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.settings !== undefined ? { settings: body.settings } : {}),
        ...(body.status !== undefined ? { status: body.status } : {}),
        ...(body.slug !== undefined ? { slug: body.slug } : {}),
        ...(body.scaikey_id !== undefined ? { scaikeyId: body.scaikey_id } : {}),
        ...(partnerId !== undefined ? { partnerId } : {}),
        updatedAt: Date.now(),
      }),
    );
    if (body.status !== undefined || body.scaikey_id !== undefined || partnerId !== undefined) {
      // A tenant's status is part of each of its keys' cache entries, and of every JWT tenant entry
      // (keyed by the claim, which may be the ScaiKey id): both are dropped in this isolate.
      catalogCache.forgetAllKeys();
      tenantStatusCache.clear();
    }
    return c.json({ data: tenantView(row!) });
  });
