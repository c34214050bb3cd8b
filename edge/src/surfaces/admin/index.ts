/**
 * Native admin API (/api/admin/*, docs/api/admin.md): FastAPI-style errors, `{"data": …}` bodies.
 * Tenants and their first keys are created with the operator token (ADMIN_TOKEN), which is how a
 * fresh deployment is bootstrapped (the `scaisend` CLI wraps these calls). Domain routes also take
 * an API key with `domains.read` / `domains.write`; the operator names the tenant with `tenant_id`.
 * POST/DELETE /domains/:id/dkim/ed25519 add (or rotate) and remove a domain's Ed25519 key (dual
 * signing, RFC 8463). POST /secrets/reseal (operator only) re-seals every domain's DKIM key under the current
 * SECRETS_KEY, one page per request (docs/operations.md, "Rotating SECRETS_KEY").
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import { PERMISSIONS } from "../../../../shared/permissions.ts";
import type { AppEnv } from "../../context.ts";
import type { DomainRow } from "../../db/domains.ts";
import { secretsKeyring } from "../../lib/dkim-key-box.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { authenticate, requireOperator, requireScope } from "../../middleware/auth.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import { dohTxtLookup } from "../../services/dns-check.ts";
import {
  createDomain,
  DKIM_ALGORITHMS,
  dkimAlgorithmOf,
  dnsRecordsFor,
  removeEd25519Key,
  requireDomain,
  resealDomainKeys,
  rotateEd25519Key,
  verifyDomain,
  type DomainDeps,
} from "../../services/domains.ts";
import { createApiKey, createTenant, requireTenant } from "../../services/tenants.ts";
import { renderFastApi } from "../errors.ts";
import { tenantTrackingApi } from "./tracking.ts";
import { parseInput, readJson } from "../validate.ts";

const TenantBody = z.object({ name: z.string().trim().min(1).max(255) });
const ApiKeyBody = z.object({
  name: z.string().trim().min(1).max(255),
  environment: z.enum(["live", "test"]).default("live"),
  // Scopes default to empty, meaning no access (docs/api/admin.md#api-keys).
  scopes: z.array(z.enum(PERMISSIONS)).default([]),
  expires_at: z.iso.datetime({ offset: true }).optional(),
  // "senderkit": an sk_live_/sk_test_ key for /v1 (docs/api/senderkit.md#authentication), which has no scopes.
  format: z.enum(["sendgrid", "senderkit"]).default("sendgrid"),
});
// RFC 1035 host names: labels of letters, digits and hyphens, at least two labels.
const DOMAIN_NAME = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/i;
const DMARC_POLICIES = ["none", "quarantine", "reject"] as const;
const DomainBody = z.object({
  domain: z.string().trim().regex(DOMAIN_NAME, "must be a domain name such as mail.example.com"),
  dmarc_policy: z.enum(DMARC_POLICIES).default("none"),
  dmarc_rua_email: z.email().optional(),
  dkim_algorithm: z.enum(DKIM_ALGORITHMS).default("rsa"),
  tenant_id: z.string().optional(),
});
// A page re-seals at most this many keys: AES work is cheap, and 100 keeps the D1 batch and the
// request's CPU time small whatever the plan's limits.
const RESEAL_MAX_LIMIT = 100;
const ResealBody = z.object({
  cursor: z.string().min(1).nullable().default(null),
  limit: z.number().int().min(1).max(RESEAL_MAX_LIMIT).default(RESEAL_MAX_LIMIT),
});

function domainView(d: DomainRow) {
  return {
    id: d.id,
    tenant_id: d.tenantId,
    domain: d.domain,
    verified: d.verified,
    is_active: d.isActive,
    dkim_selector: d.dkimSelector,
    dkim_algorithm: dkimAlgorithmOf(d),
    dkim_ed25519_selector: d.dkimEd25519Selector,
    // Set once verification has seen the Ed25519 record: from then on mail carries both signatures.
    dkim_ed25519_verified_at: iso(d.dkimEd25519VerifiedAt),
    dmarc_policy: d.dmarcPolicy,
    dmarc_rua_email: d.dmarcRuaEmail,
    dns_records: dnsRecordsFor(d),
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

function domainDeps(c: Context<AppEnv>): DomainDeps {
  const config = c.get("config");
  return { db: c.get("db"), secrets: secretsKeyring(config), devMode: config.DEV_MODE, now: Date.now };
}

export const adminApi = new Hono<AppEnv>()
  .use(authenticate({ allowOperator: true }))
  .post("/tenants", requireOperator(), async (c) => {
    const body = parseInput(TenantBody, await readJson(c.req.raw), "body");
    const t = await createTenant(c.get("db"), body.name, Date.now());
    return c.json({ data: { id: t.id, name: t.name, status: t.status, created_at: iso(t.createdAt) } }, 201);
  })
  .get("/tenants/:id", requireOperator(), async (c) => {
    const t = await requireTenant(c.get("db"), c.req.param("id"));
    return c.json({ data: { id: t.id, name: t.name, status: t.status, created_at: iso(t.createdAt) } });
  })
  .post("/tenants/:id/api_keys", requireOperator(), async (c) => {
    const tenant = await requireTenant(c.get("db"), c.req.param("id"));
    const body = parseInput(ApiKeyBody, await readJson(c.req.raw), "body");
    const { row, apiKey } = await createApiKey(
      c.get("db"),
      tenant.id,
      {
        name: body.name,
        environment: body.environment,
        scopes: body.scopes,
        expiresAt: body.expires_at ? Date.parse(body.expires_at) : undefined,
        format: body.format,
      },
      Date.now(),
    );
    // This isolate may hold a negative entry for the hash (services/catalog-cache.ts).
    catalogCache.forgetKey(row.keyHash);
    return c.json(
      {
        data: {
          id: row.id,
          name: row.name,
          api_key: apiKey,
          prefix: row.prefix,
          environment: row.environment,
          scopes: row.scopes,
          created_at: iso(row.createdAt),
          expires_at: iso(row.expiresAt),
        },
      },
      201,
    );
  })
  .post("/domains", requireScope("domains.write"), async (c) => {
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
    return c.json({ data: domainView(d) }, 201);
  })
  .get("/domains/:id", requireScope("domains.read"), async (c) => {
    const d = await requireDomain(c.get("db"), actingTenant(c, c.req.query("tenant_id")), c.req.param("id"));
    return c.json({ data: domainView(d) });
  })
  .post("/domains/:id/dkim/ed25519", requireScope("domains.write"), async (c) => {
    const d = await rotateEd25519Key(
      domainDeps(c),
      actingTenant(c, c.req.query("tenant_id")),
      c.req.param("id"),
    );
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.json({ data: domainView(d) });
  })
  .delete("/domains/:id/dkim/ed25519", requireScope("domains.write"), async (c) => {
    const d = await removeEd25519Key(
      domainDeps(c),
      actingTenant(c, c.req.query("tenant_id")),
      c.req.param("id"),
    );
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.json({ data: domainView(d) });
  })
  .post("/domains/:id/verify", requireScope("domains.write"), async (c) => {
    const config = c.get("config");
    const outcome = await verifyDomain(
      domainDeps(c),
      dohTxtLookup(config.DNS_RESOLVER_URL, undefined, config.DNS_TIMEOUT_MS),
      actingTenant(c, c.req.query("tenant_id")),
      c.req.param("id"),
    );
    // Verified or not, the send path of this isolate sees the outcome at once (services/catalog-cache.ts).
    catalogCache.forgetDomain(outcome.domain.tenantId, outcome.domain.domain);
    return c.json({
      data: {
        id: outcome.domain.id,
        domain: outcome.domain.domain,
        verified: outcome.verified,
        checks: outcome.checks,
        errors: outcome.errors,
      },
    });
  })
  .post("/secrets/reseal", requireOperator(), async (c) => {
    const body = parseInput(ResealBody, await readJson(c.req.raw), "body");
    const page = await resealDomainKeys(
      c.get("db"),
      secretsKeyring(c.get("config")),
      body.cursor,
      body.limit,
    );
    // Sealed keys changed across tenants; the old ones still open (SECRETS_KEY_PREVIOUS), so other
    // isolates' copies are harmless for their TTL, and this one reads the new ones at once.
    if (page.resealed > 0) catalogCache.forgetAllDomains();
    return c.json({
      data: {
        key_id: page.keyId,
        examined: page.examined,
        resealed: page.resealed,
        already_current: page.alreadyCurrent,
        failed: page.failed.map((f) => ({
          domain_id: f.domainId,
          tenant_id: f.tenantId,
          domain: f.domain,
          key: f.key,
          error: f.error,
        })),
        next_cursor: page.nextCursor,
      },
    });
  });

// Tracking defaults (docs/api/tracking.md#tenant-defaults): the operator, or a key with admin.settings.
adminApi.route("/tenants/:id/tracking", tenantTrackingApi);
adminApi.onError(renderFastApi);
