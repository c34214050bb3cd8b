/**
 * API keys managed by API keys (/v3/api_keys, docs/api/sendgrid.md#api-keys): create, list, read,
 * replace scopes, rename, rotate, revoke — always within the calling key's tenant.
 *
 * Invariants:
 *  - The secret exists only in the answer to a create or a rotate; D1 holds its SHA-256 and its
 *    first 16 characters (the prefix), never the key.
 *  - No escalation: a key can only hand out what it holds. The scopes of a created key, and the
 *    new scopes of a PUT, are a subset of the caller's; a test key cannot create a live key; a key
 *    can only rotate (and so obtain a working secret for) a key whose scopes and environment it
 *    could have created itself. Renaming and revoking are not grants and need only admin.api_keys.
 *  - A change is seen at once by the isolate that made it: the key's entry in the isolate cache is
 *    dropped (services/catalog-cache.ts forgetKey), so a revoked, rotated or narrowed key is refused
 *    on the next request here, and everywhere else within AUTH_CACHE_TTL_MS.
 *  - A tenant holds at most MAX_ACTIVE_KEYS keys that are not revoked (SendGrid's limit of 100;
 *    the 101st is a 403), enforced in the insert statement itself.
 */
import { AppError } from "../../../shared/errors.ts";
import { newId, randomHex } from "../../../shared/ids.ts";
import type { Db } from "../db/client.ts";
import { tenantApiKeys, type ApiKeyRow } from "../db/api-keys.ts";
import { sha256Hex } from "../lib/crypto.ts";
import { catalogCache } from "./catalog-cache.ts";

export const MAX_ACTIVE_KEYS = 100;
/** Characters of the key kept as its visible prefix: `sg_live_` + 8 hex. */
export const PREFIX_LENGTH = 16;

/** The API key making the request (from the auth middleware's principal). */
export interface Caller {
  tenantId: string;
  keyId: string;
  environment: "live" | "test";
  scopes: readonly string[];
}

export interface NewKey {
  name: string;
  environment: "live" | "test";
  scopes: string[];
  expiresAt: number | null;
}

export const keyNotFound = () => new AppError("not_found", "API key not found");

/** 403 unless `caller` holds every one of `scopes` (and, for a live key, is live itself). */
function requireGrantable(
  caller: Caller,
  scopes: readonly string[],
  environment: "live" | "test" | null,
  action: string,
): void {
  const missing = scopes.filter((s) => !caller.scopes.includes(s));
  if (missing.length > 0) {
    throw new AppError(
      "forbidden",
      `Cannot ${action} scopes this API key does not hold: ${missing.join(", ")}`,
    );
  }
  if (environment === "live" && caller.environment !== "live") {
    throw new AppError("forbidden", `A test API key cannot ${action} a live key`);
  }
}

/** `sg`: a SendGrid-surface key; `sk`: a SenderKit key (docs/api/senderkit.md#authentication), which keeps its format when rotated. */
async function newSecret(environment: "live" | "test", format: "sg" | "sk" = "sg") {
  const apiKey = `${format}_${environment}_${randomHex(16)}`;
  return { apiKey, prefix: apiKey.slice(0, PREFIX_LENGTH), keyHash: await sha256Hex(apiKey) };
}

export async function createKey(
  db: Db,
  caller: Caller,
  input: NewKey,
  now: number,
): Promise<{ row: ApiKeyRow; apiKey: string }> {
  requireGrantable(caller, input.scopes, input.environment, "grant");
  const { apiKey, prefix, keyHash } = await newSecret(input.environment);
  const row: ApiKeyRow = {
    id: newId("key", now),
    tenantId: caller.tenantId,
    name: input.name,
    prefix,
    keyHash,
    environment: input.environment,
    scopes: [...new Set(input.scopes)],
    createdAt: now,
    lastUsedAt: null,
    expiresAt: input.expiresAt,
    revokedAt: null,
  };
  if (!(await tenantApiKeys(db, caller.tenantId).insertCapped(row, MAX_ACTIVE_KEYS))) {
    throw new AppError(
      "forbidden",
      `A tenant may hold at most ${MAX_ACTIVE_KEYS} API keys that are not revoked; revoke one first`,
    );
  }
  // This isolate may hold a negative entry for the new hash.
  catalogCache.forgetKey(keyHash);
  return { row, apiKey };
}

export function listKeys(db: Db, tenantId: string, opts: { includeRevoked: boolean; limit: number }) {
  return tenantApiKeys(db, tenantId).list(opts);
}

export async function getKey(db: Db, tenantId: string, id: string, includeRevoked: boolean) {
  const row = await tenantApiKeys(db, tenantId).get(id);
  if (!row || (row.revokedAt !== null && !includeRevoked)) throw keyNotFound();
  return row;
}

/** SendGrid's PUT: a new name and a new scope set, replacing the old one. */
export async function replaceKey(
  db: Db,
  caller: Caller,
  id: string,
  input: { name: string; scopes: string[] },
): Promise<ApiKeyRow> {
  requireGrantable(caller, input.scopes, null, "grant");
  const row = await tenantApiKeys(db, caller.tenantId).update(id, {
    name: input.name,
    scopes: [...new Set(input.scopes)],
  });
  if (!row) throw keyNotFound();
  catalogCache.forgetKey(row.keyHash);
  return row;
}

/** SendGrid's PATCH: the name only. */
export async function renameKey(db: Db, tenantId: string, id: string, name: string): Promise<ApiKeyRow> {
  const row = await tenantApiKeys(db, tenantId).update(id, { name });
  if (!row) throw keyNotFound();
  return row;
}

export async function revokeKey(db: Db, tenantId: string, id: string, now: number): Promise<void> {
  const row = await tenantApiKeys(db, tenantId).update(id, { revokedAt: now });
  if (!row) throw keyNotFound();
  catalogCache.forgetKey(row.keyHash);
}

/**
 * A new secret for the same key (same id, name, scopes, environment and expiry); the old secret
 * stops working at once in this isolate and within AUTH_CACHE_TTL_MS elsewhere.
 */
export async function rotateKey(
  db: Db,
  caller: Caller,
  id: string,
): Promise<{ row: ApiKeyRow; apiKey: string }> {
  const keys = tenantApiKeys(db, caller.tenantId);
  const current = await keys.get(id);
  if (!current || current.revokedAt !== null) throw keyNotFound();
  requireGrantable(caller, current.scopes, current.environment, "rotate");
  const { apiKey, prefix, keyHash } = await newSecret(
    current.environment,
    current.prefix.startsWith("sk_") ? "sk" : "sg",
  );
  const row = await keys.update(id, { prefix, keyHash, lastUsedAt: null }, current);
  if (!row) throw new AppError("conflict", "The API key changed while it was being rotated; try again");
  catalogCache.forgetKey(current.keyHash);
  catalogCache.forgetKey(keyHash);
  return { row, apiKey };
}
