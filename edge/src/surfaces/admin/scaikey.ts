/**
 * `/api/admin/scaikey` (operator only; docs/api/admin.md#scaikey, docs/scaikey.md): what
 * `scaisend register` stores and `scaisend sync --full` sends.
 *  - `GET /`            the registration, without its secrets, and `server_time` (a sync run's start)
 *  - `PUT /`            stores the fields given; `client_secret` and `webhook_secret` are sealed
 *  - `POST /sync`       one page (≤ 500) of ScaiKey records of one kind, applied as the webhook
 *                       applies them (services/scaikey-mirror.ts) and marked seen by the run; users
 *                       are tenant-scoped: every record's `tenant_id` is the page's
 *  - `POST /sync/prune` the end of a run: what it did not see is removed (users), suspended
 *                       (tenants) or detached and deleted (partners)
 * Every record is validated before any is applied (400 naming its index); a record the mirror
 * cannot take (409: its parent is not mirrored, a slug is taken) is listed in `failed`.
 */
import { Hono } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { findTenant, pruneScaiKeyPartners, pruneScaiKeyTenants, tenantIdentity } from "../../db/identity.ts";
import { secretsKeyring } from "../../lib/dkim-key-box.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { requireOperator } from "../../middleware/auth.ts";
import { accessCache } from "../../services/access.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import { tenantStatusCache } from "../../services/jwt-auth.ts";
import { applyPartner, applyTenant, applyUser, type Outcome } from "../../services/scaikey-mirror.ts";
import { describeIssues, PartnerRecord, TenantRecord, UserRecord } from "../../services/scaikey-records.ts";
import { registration, saveRegistration } from "../../services/scaikey-registration.ts";
import { parseInput, readJson } from "../validate.ts";

export const SYNC_PAGE_MAX = 500;

const secret = z.string().min(16).max(512);
const RegistrationBody = z.strictObject({
  issuer: z.url().max(2048),
  client_id: z.string().min(1).max(255).optional(),
  client_secret: secret.optional(),
  redirect_uri: z.url().max(2048).optional(),
  webhook_id: z.string().min(1).max(255).optional(),
  webhook_url: z.url().max(2048).optional(),
  webhook_secret: secret.optional(),
});
const Kind = z.enum(["partners", "tenants", "users"]);
const run = z.number().int().min(0);
const SyncBody = z.strictObject({
  run,
  kind: Kind,
  tenant_id: z.string().min(1).max(100).optional(),
  records: z.array(z.unknown()).max(SYNC_PAGE_MAX),
});
const PruneBody = z.strictObject({ run, kind: Kind, tenant_id: z.string().min(1).max(100).optional() });

const SCHEMAS = { partners: PartnerRecord, tenants: TenantRecord, users: UserRecord } as const;

export const scaikeyAdminApi = new Hono<AppEnv>()
  .use(requireOperator())
  .get("/", async (c) => {
    const r = await registration(c.get("db"));
    return c.json({
      data: {
        issuer: r?.issuer ?? null,
        client_id: r?.clientId ?? null,
        has_client_secret: Boolean(r?.clientSecret),
        redirect_uri: r?.redirectUri ?? null,
        webhook_id: r?.webhookId ?? null,
        webhook_url: r?.webhookUrl ?? null,
        has_webhook_secret: Boolean(r?.webhookSecret),
        updated_at: iso(r?.updatedAt ?? null),
        server_time: Date.now(),
      },
    });
  })
  .put("/", async (c) => {
    const b = parseInput(RegistrationBody, await readJson(c.req.raw), "body");
    const r = await saveRegistration(
      c.get("db"),
      secretsKeyring(c.get("config")),
      {
        issuer: b.issuer,
        clientId: b.client_id,
        clientSecret: b.client_secret,
        redirectUri: b.redirect_uri,
        webhookId: b.webhook_id,
        webhookUrl: b.webhook_url,
        webhookSecret: b.webhook_secret,
      },
      Date.now(),
    );
    return c.json({
      data: {
        issuer: r.issuer,
        client_id: r.clientId,
        has_client_secret: Boolean(r.clientSecret),
        redirect_uri: r.redirectUri,
        webhook_id: r.webhookId,
        webhook_url: r.webhookUrl,
        has_webhook_secret: Boolean(r.webhookSecret),
        updated_at: iso(r.updatedAt),
      },
    });
  })
  .post("/sync", async (c) => {
    const b = parseInput(SyncBody, await readJson(c.req.raw), "body");
    if (b.kind === "users" && b.tenant_id === undefined) {
      throw new AppError(
        "invalid_request",
        "A page of users needs tenant_id (the ScaiKey tenant they belong to)",
      );
    }
    if (b.kind !== "users" && b.tenant_id !== undefined) {
      throw new AppError("invalid_request", `tenant_id is only for users, not ${b.kind}`);
    }
    const schema = SCHEMAS[b.kind];
    const records = b.records.map((raw, i) => {
      const r = schema.safeParse(raw);
      if (!r.success)
        throw new AppError("invalid_request", `Invalid record: ${describeIssues(r.error, `records.${i}`)}`);
      return r.data;
    });
    if (b.kind === "users") {
      const other = (records as UserRecord[]).findIndex((u) => u.tenant_id !== b.tenant_id);
      if (other >= 0)
        throw new AppError("invalid_request", `records.${other}.tenant_id is not the page's tenant_id`);
    }
    const db = c.get("db");
    const now = Date.now();
    const counts = { applied: 0, unchanged: 0 };
    const failed: { id: string; error: string }[] = [];
    for (const r of records) {
      try {
        const outcome: Outcome =
          b.kind === "partners"
            ? await applyPartner(db, r as PartnerRecord, now, b.run)
            : b.kind === "tenants"
              ? await applyTenant(db, r as TenantRecord, now, b.run)
              : await applyUser(db, r as UserRecord, now, b.run);
        counts[outcome]++;
      } catch (err) {
        if (!(err instanceof AppError) || err.code !== "conflict") throw err;
        failed.push({ id: r.id, error: err.message });
      }
    }
    return c.json({ data: { ...counts, failed } });
  })
  .post("/sync/prune", async (c) => {
    const b = parseInput(PruneBody, await readJson(c.req.raw), "body");
    if ((b.kind === "users") !== (b.tenant_id !== undefined)) {
      throw new AppError("invalid_request", "tenant_id is required for users, and only for users");
    }
    const db = c.get("db");
    let removed: string[];
    if (b.kind === "partners") removed = await pruneScaiKeyPartners(db, b.run);
    else if (b.kind === "tenants") removed = await pruneScaiKeyTenants(db, b.run, Date.now());
    else {
      const tenant = await findTenant(db, b.tenant_id!);
      if (!tenant) throw new AppError("not_found", `Tenant not found: ${b.tenant_id}`);
      removed = await tenantIdentity(db, tenant.id).pruneScaiKeyUsers(b.run);
      for (const sub of removed) accessCache.forgetUser(tenant.id, sub);
    }
    if (b.kind !== "users" && removed.length > 0) {
      catalogCache.forgetAllKeys();
      tenantStatusCache.clear();
    }
    return c.json({ data: { removed } });
  });
