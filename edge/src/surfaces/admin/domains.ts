/**
 * Sender domain routes of the admin API (docs/api/admin.md#sender-domains), mounted at
 * /api/admin/domains. An API key with `domains.read` / `domains.write` acts for its own tenant; the
 * operator names the tenant with `tenant_id` (body on create, query elsewhere). Every query is
 * bound to that tenant, so another tenant's domain answers 404 like a missing one.
 *
 *   POST   /                        create (DKIM key pair made here, private half sealed)
 *   GET    /                        list, paged (`limit`, `cursor`)
 *   GET    /:id                     one domain, with the dns_records to publish
 *   PATCH  /:id                     is_active, dmarc_policy, dmarc_rua_email
 *   DELETE /:id                     delete (its keys with it)
 *   POST   /:id/verify              check the records over DNS-over-HTTPS
 *   POST   /:id/rotate-dkim         start a key rotation, RSA or {"algorithm":"ed25519"} (services/dkim-rotation.ts)
 *   POST   /:id/dkim/ed25519        add or rotate the Ed25519 key (dual signing, RFC 8463)
 *   DELETE /:id/dkim/ed25519        remove it
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { type DomainRow, tenantDomains } from "../../db/domains.ts";
import { secretsKeyring } from "../../lib/dkim-key-box.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { routePermission } from "../route-permissions.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import { ROTATION_ALGORITHMS, startDkimRotation } from "../../services/dkim-rotation.ts";
import { dohMxQuery, dohTxtQuery } from "../../services/dns-check.ts";
import {
  createDomain,
  deleteDomain,
  DKIM_ALGORITHMS,
  dkimAlgorithmOf,
  dnsRecordsFor,
  type DomainSettings,
  removeEd25519Key,
  requireDomain,
  rotateEd25519Key,
  updateDomainSettings,
  verifyDomain,
  type DomainDeps,
} from "../../services/domains.ts";
import { requireTenant } from "../../services/tenants.ts";
import { parseInput, readJson } from "../validate.ts";

// RFC 1035 host names: labels of letters, digits and hyphens, at least two labels.
const DOMAIN_NAME = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/i;
export const DMARC_POLICIES = ["none", "quarantine", "reject"] as const;
export const DomainBody = z.object({
  domain: z.string().trim().regex(DOMAIN_NAME, "must be a domain name such as mail.example.com"),
  dmarc_policy: z.enum(DMARC_POLICIES).default("none"),
  dmarc_rua_email: z.email().optional(),
  dkim_algorithm: z.enum(DKIM_ALGORITHMS).default("rsa"),
  tenant_id: z.string().optional(),
});
const PATCH_FIELDS = ["is_active", "dmarc_policy", "dmarc_rua_email"] as const;
const PatchBody = z.object({
  is_active: z.boolean().optional(),
  dmarc_policy: z.enum(DMARC_POLICIES).optional(),
  dmarc_rua_email: z.email().nullable().optional(),
});
const LIST_MAX_LIMIT = 100;
const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(LIST_MAX_LIMIT).default(50),
  cursor: z.string().min(1).optional(),
  tenant_id: z.string().optional(),
});

const RotateBody = z.object({ algorithm: z.enum(ROTATION_ALGORITHMS).default("rsa") });

export function domainView(d: DomainRow, now: number = Date.now(), bounceMxHost?: string | undefined) {
  return {
    id: d.id,
    tenant_id: d.tenantId,
    domain: d.domain,
    verified: d.verified,
    is_active: d.isActive,
    dkim_selector: d.dkimSelector,
    dkim_algorithm: dkimAlgorithmOf(d),
    // A rotation in progress: the new key's selector, published beside the active one until a
    // verification finds it and it takes over (docs/api/admin.md#rotating-the-dkim-key).
    dkim_pending_selector: d.dkimNextSelector,
    dkim_rotation_started_at: iso(d.dkimNextCreatedAt),
    dkim_ed25519_selector: d.dkimEd25519Selector,
    // Set once verification has seen the Ed25519 record: from then on mail carries both signatures.
    dkim_ed25519_verified_at: iso(d.dkimEd25519VerifiedAt),
    dmarc_policy: d.dmarcPolicy,
    dmarc_rua_email: d.dmarcRuaEmail,
    dns_records: dnsRecordsFor(d, now, bounceMxHost),
    last_checked_at: iso(d.lastCheckedAt),
    verified_at: iso(d.verifiedAt),
    errors: d.lastErrors ?? [],
    created_at: iso(d.createdAt),
  };
}

/** The tenant a domain route acts for: the key's own, or the one the operator names. */
function actingTenant(c: Context<AppEnv>, explicit: string | undefined): string {
  const p = c.get("principal");
  if (p.kind !== "operator") return p.tenantId;
  if (!explicit) throw new AppError("invalid_request", "tenant_id is required with the operator token");
  return explicit;
}

const queryTenant = (c: Context<AppEnv>) => actingTenant(c, c.req.query("tenant_id"));

function domainDeps(c: Context<AppEnv>): DomainDeps {
  const config = c.get("config");
  return {
    db: c.get("db"),
    secrets: secretsKeyring(config),
    devMode: config.DEV_MODE,
    now: Date.now,
    rotationOverlapMs: config.DKIM_ROTATION_OVERLAP_S * 1000,
    bounceMxHost: config.BOUNCE_MX_HOST,
    mxLookup: dohMxQuery(config.DNS_RESOLVER_URL, undefined, config.DNS_TIMEOUT_MS),
  };
}

/** The domain as the API shows it, with the records this deployment asks for. */
const view = (c: Context<AppEnv>, d: DomainRow, now?: number) =>
  domainView(d, now, c.get("config").BOUNCE_MX_HOST);

/** A JSON object body, with any field outside `allowed` refused (400) rather than ignored. */
function refuseUnknownFields(
  raw: unknown,
  allowed: readonly string[],
  accepted = `a domain's ${allowed.join(", ")} can be changed`,
): void {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return;
  const unknown = Object.keys(raw).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new AppError(
      "invalid_request",
      `Unsupported field${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => JSON.stringify(k)).join(", ")}: ` +
        accepted,
    );
  }
}

/**
 * A PATCH body as the admin API takes it (any of is_active, dmarc_policy, dmarc_rua_email; `null`
 * drops rua=) → the row's changes, or the 400 naming the field; the dashboard's DMARC form calls
 * this too.
 */
export function domainPatchOf(raw: unknown): DomainSettings {
  refuseUnknownFields(raw, PATCH_FIELDS);
  const policy = (raw as { dmarc_policy?: unknown } | null)?.dmarc_policy;
  if (policy !== undefined && !DMARC_POLICIES.includes(policy as never)) {
    throw new AppError(
      "invalid_request",
      `Invalid dmarc_policy ${JSON.stringify(policy)}: use none, quarantine or reject`,
    );
  }
  const body = parseInput(PatchBody, raw, "body");
  return {
    ...(body.is_active !== undefined ? { isActive: body.is_active } : {}),
    ...(body.dmarc_policy !== undefined ? { dmarcPolicy: body.dmarc_policy } : {}),
    ...(body.dmarc_rua_email !== undefined ? { dmarcRuaEmail: body.dmarc_rua_email } : {}),
  };
}

export const domainsApi = new Hono<AppEnv>()
  .post("/", routePermission(), async (c) => {
    const raw = await readJson(c.req.raw);
    const policy = (raw as { dmarc_policy?: unknown } | null)?.dmarc_policy;
    if (policy !== undefined && !DMARC_POLICIES.includes(policy as never)) {
      // ScaiSend's published error list puts an invalid DMARC policy among the 400s, not the 422s.
      throw new AppError(
        "invalid_request",
        `Invalid dmarc_policy ${JSON.stringify(policy)}: use none, quarantine or reject`,
      );
    }
    if ((raw as { dkim_algorithm?: unknown } | null)?.dkim_algorithm === "ed25519") {
      // Refused rather than built: a receiver that does not implement RFC 8463 sees an
      // ed25519-only message as unsigned, and DMARC then fails there.
      throw new AppError(
        "invalid_request",
        'dkim_algorithm "ed25519" alone is not offered: use "dual" (rsa-sha256 and ed25519-sha256), ' +
          "so receivers without RFC 8463 support still see a valid signature",
      );
    }
    const body = parseInput(DomainBody, raw, "body");
    const tenantId = actingTenant(c, body.tenant_id);
    await requireTenant(c.get("db"), tenantId);
    const d = await createDomain(domainDeps(c), tenantId, {
      domain: body.domain,
      dmarcPolicy: body.dmarc_policy,
      dmarcRuaEmail: body.dmarc_rua_email,
      dkimAlgorithm: body.dkim_algorithm,
    });
    catalogCache.forgetDomain(tenantId, d.domain);
    return c.json({ data: view(c, d) }, 201);
  })
  .get("/", routePermission(), async (c) => {
    const q = parseInput(ListQuery, c.req.query(), "query");
    const tenantId = actingTenant(c, q.tenant_id);
    const { rows, total } = await tenantDomains(c.get("db"), tenantId).listDomains(q.cursor ?? null, q.limit);
    const now = Date.now();
    return c.json({
      data: rows.map((d) => view(c, d, now)),
      total,
      // The last id of a full page; null after the last page.
      next_cursor: rows.length === q.limit ? rows[rows.length - 1]!.id : null,
    });
  })
  .get("/:id", routePermission(), async (c) => {
    const d = await requireDomain(c.get("db"), queryTenant(c), c.req.param("id"));
    return c.json({ data: view(c, d) });
  })
  .patch("/:id", routePermission(), async (c) => {
    const tenantId = queryTenant(c);
    const patch = domainPatchOf(await readJson(c.req.raw));
    const updated = await updateDomainSettings(c.get("db"), tenantId, c.req.param("id"), patch);
    // is_active decides whether live mail may use it: this isolate sees the change at once.
    catalogCache.forgetDomain(tenantId, updated.domain);
    return c.json({ data: view(c, updated) });
  })
  .delete("/:id", routePermission(), async (c) => {
    const tenantId = queryTenant(c);
    const d = await deleteDomain(c.get("db"), tenantId, c.req.param("id"));
    catalogCache.forgetDomain(tenantId, d.domain);
    return c.body(null, 204);
  })
  .post("/:id/verify", routePermission(), async (c) => {
    const config = c.get("config");
    const outcome = await verifyDomain(
      domainDeps(c),
      dohTxtQuery(config.DNS_RESOLVER_URL, undefined, config.DNS_TIMEOUT_MS),
      queryTenant(c),
      c.req.param("id"),
    );
    // Verified or not, the send path of this isolate sees the outcome at once (services/catalog-cache.ts).
    catalogCache.forgetDomain(outcome.domain.tenantId, outcome.domain.domain);
    return c.json({
      data: {
        id: outcome.domain.id,
        domain: outcome.domain.domain,
        verified: outcome.verified,
        is_active: outcome.domain.isActive,
        dkim_selector: outcome.domain.dkimSelector,
        // True when this verification found a rotation's new key and signing switched to it.
        dkim_switched: outcome.switchedKey,
        checks: outcome.checks,
        errors: outcome.errors,
      },
    });
  })
  .post("/:id/rotate-dkim", routePermission(), async (c) => {
    // Only `algorithm` (an empty body is fine): anything else is refused rather than ignored.
    const raw = await readJson(c.req.raw);
    refuseUnknownFields(raw, ["algorithm"], "rotate-dkim takes only algorithm");
    const algorithm = (raw as { algorithm?: unknown } | null)?.algorithm;
    if (algorithm !== undefined && !ROTATION_ALGORITHMS.includes(algorithm as never)) {
      throw new AppError(
        "invalid_request",
        `Invalid algorithm ${JSON.stringify(algorithm)}: use rsa (the default) or ed25519`,
      );
    }
    const body = parseInput(RotateBody, raw, "body");
    const deps = domainDeps(c);
    const d = await startDkimRotation(
      deps,
      await requireDomain(deps.db, queryTenant(c), c.req.param("id")),
      body.algorithm,
    );
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.json({ data: view(c, d) });
  })
  .post("/:id/dkim/ed25519", routePermission(), async (c) => {
    const d = await rotateEd25519Key(domainDeps(c), queryTenant(c), c.req.param("id"));
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.json({ data: view(c, d) });
  })
  .delete("/:id/dkim/ed25519", routePermission(), async (c) => {
    const d = await removeEd25519Key(domainDeps(c), queryTenant(c), c.req.param("id"));
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.json({ data: view(c, d) });
  });
