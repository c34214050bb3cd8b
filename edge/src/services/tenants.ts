/** Tenants and API keys (docs/api/admin.md#api-keys): keys are shown once and stored only as SHA-256 hashes. */
import { AppError } from "../../../shared/errors.ts";
import { newId, randomHex } from "../../../shared/ids.ts";
import { PERMISSIONS } from "../../../shared/permissions.ts";
import type { Db } from "../db/client.ts";
import { tenantApiKeys, type ApiKeyRow } from "../db/api-keys.ts";
import { getTenant, insertTenant, type TenantRow } from "../db/tenants.ts";
import { sha256Hex } from "../lib/crypto.ts";

export async function createTenant(db: Db, name: string, now: number): Promise<TenantRow> {
  return insertTenant(db, { id: newId("tnt", now), name, status: "active", createdAt: now });
}

export async function requireTenant(db: Db, id: string): Promise<TenantRow> {
  const t = await getTenant(db, id);
  if (!t) throw new AppError("not_found", `Tenant not found: ${id}`);
  return t;
}

export interface NewApiKeyInput {
  name: string;
  environment: "live" | "test";
  scopes: string[];
  expiresAt?: number | undefined;
  /** "senderkit": `sk_<env>_…`, a SenderKit key for /v1 only, without scopes (docs/api/senderkit.md#authentication). */
  format?: "sendgrid" | "senderkit";
}

export async function createApiKey(
  db: Db,
  tenantId: string,
  input: NewApiKeyInput,
  now: number,
): Promise<{ row: ApiKeyRow; apiKey: string }> {
  const unknown = input.scopes.filter((s) => !(PERMISSIONS as readonly string[]).includes(s));
  if (unknown.length > 0) throw new AppError("invalid_request", `Unknown scope: ${unknown.join(", ")}`);
  if (input.format === "senderkit" && input.scopes.length > 0) {
    throw new AppError("invalid_request", "A SenderKit key has no scopes: it may use every /v1 operation");
  }
  const apiKey = `${input.format === "senderkit" ? "sk" : "sg"}_${input.environment}_${randomHex(16)}`;
  const row = await tenantApiKeys(db, tenantId).insert({
    id: newId("key", now),
    name: input.name,
    prefix: apiKey.slice(0, 16),
    keyHash: await sha256Hex(apiKey),
    environment: input.environment,
    scopes: [...new Set(input.scopes)],
    createdAt: now,
    expiresAt: input.expiresAt ?? null,
  });
  return { row, apiKey };
}
