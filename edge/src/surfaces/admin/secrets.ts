/**
 * POST /api/admin/secrets/reseal (operator only, docs/api/admin.md#re-sealing-secrets): one page of a
 * SECRETS_KEY rotation's re-seal over every sealed secret (services/secrets-reseal.ts).
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../../context.ts";
import { secretsKeyring } from "../../lib/dkim-key-box.ts";
import { requireOperator } from "../../middleware/auth.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import { resealSecretsPage } from "../../services/secrets-reseal.ts";
import { parseInput, readJson } from "../validate.ts";

// A page re-seals at most this many domains' keys (or tenants' webhook secrets): AES work is
// cheap, and 100 keeps the D1 batch, the Durable Object calls and the request's CPU time small.
const RESEAL_MAX_LIMIT = 100;
const ResealBody = z.object({
  cursor: z.string().min(1).nullable().default(null),
  limit: z.number().int().min(1).max(RESEAL_MAX_LIMIT).default(RESEAL_MAX_LIMIT),
});

export const secretsApi = new Hono<AppEnv>().post("/reseal", requireOperator(), async (c) => {
  const body = parseInput(ResealBody, await readJson(c.req.raw), "body");
  const page = await resealSecretsPage(
    { db: c.get("db"), secrets: secretsKeyring(c.get("config")), env: c.env },
    body.cursor,
    body.limit,
  );
  // Sealed keys changed across tenants; the old ones still open (SECRETS_KEY_PREVIOUS), so other
  // isolates' copies are harmless for their TTL, and this one reads the new ones at once.
  if (page.phase === "domains" && page.resealed > 0) catalogCache.forgetAllDomains();
  return c.json({
    data: {
      phase: page.phase,
      key_id: page.keyId,
      examined: page.examined,
      resealed: page.resealed,
      already_current: page.alreadyCurrent,
      failed: page.failed.map((f) =>
        "domainId" in f
          ? { domain_id: f.domainId, tenant_id: f.tenantId, domain: f.domain, key: f.key, error: f.error }
          : { tenant_id: f.tenantId, kind: f.kind, id: f.id, error: f.error },
      ),
      next_cursor: page.nextCursor,
    },
  });
});
