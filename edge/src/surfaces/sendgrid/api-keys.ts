/**
 * /v3/api_keys and /v3/scopes (docs/api/sendgrid.md#api-keys): ScaiSend's API keys API and
 * SendGrid's, answered side by side where their shapes differ and can coexist:
 *  - list: ScaiSend's `{"api_keys":[…full records]}` beside SendGrid's `{"result":[{api_key_id, name}]}`;
 *  - create, rotate, get, PUT, PATCH: ScaiSend's record plus SendGrid's `api_key_id` (and, on a get,
 *    the OAS example's `result:[{api_key_id, name, scopes}]`);
 *  - errors: ScaiSend's `{"detail": …}` beside SendGrid's `{"errors":[{message, field, help}]}`.
 * Where they cannot coexist ScaiSend's docs win: no `scopes` means no access (SendGrid: full
 * access), `environment` defaults to live, an unknown scope is a 400.
 * Every route needs `admin.api_keys`, except /v3/scopes, which any key may call for its own scopes.
 * Quirk kept from SendGrid: DELETE is a 204 and the key is then gone (404) unless
 * `include_revoked=true` asks for it; ScaiSend keeps the row, with `revoked_at`, for the listing.
 */
import { Hono, type Context, type ErrorHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { AppError, isAppError, type FieldError } from "../../../../shared/errors.ts";
import { PERMISSIONS } from "../../../../shared/permissions.ts";
import type { AppEnv } from "../../context.ts";
import type { ApiKeyRow } from "../../db/api-keys.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import {
  createKey,
  getKey,
  listKeys,
  renameKey,
  replaceKey,
  revokeKey,
  rotateKey,
  type Caller,
} from "../../services/api-keys.ts";
import { renderFastApi } from "../errors.ts";

export const MAX_BODY_BYTES = 65_536;
export const MAX_NAME_LENGTH = 255;
export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1_000;
/** POST /v3/api_keys: 10 a minute per tenant (docs/api/sendgrid.md#rate-limits). */
export const CREATE_RATE_LIMIT = 10;
/** Every other route: the default 1,000 a second per credential. */
export const API_KEYS_RATE_LIMIT = 1_000;

const fieldError = (field: string | null, message: string): FieldError => ({ field, message, help: null });
const badRequest = (...errors: FieldError[]) =>
  new AppError("invalid_request", errors.map((e) => e.message).join("; "), { fields: errors });

/** `{"detail": …}` (ScaiSend) and `{"errors": […]}` (SendGrid) in one body, whatever went wrong. */
export const renderApiKeysError: ErrorHandler<AppEnv> = async (err, c) => {
  if (!isAppError(err)) {
    // Routing problems and unknown errors: the shared renderer logs them and picks the answer.
    const res = await renderFastApi(err, c);
    const { detail } = (await res.json()) as { detail: string };
    return c.json(
      { detail, errors: [{ message: detail, field: null, help: null }] },
      res.status as ContentfulStatusCode,
    );
  }
  for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
  if (err.retryAfterSeconds !== undefined) c.header("Retry-After", String(err.retryAfterSeconds));
  const errors =
    err.fields.length > 0
      ? err.fields.map((f) => ({ message: f.message, field: f.field, help: f.help ?? null }))
      : [{ message: err.message, field: null, help: null }];
  // Validation problems stay ScaiSend's 400 for api_keys (docs/api/sendgrid.md#api-keys), not FastAPI's 422.
  return c.json({ detail: err.message, errors }, err.status as ContentfulStatusCode);
};

function callerOf(c: Context<AppEnv>): Caller {
  const p = c.get("principal");
  if (p.kind === "operator")
    throw new AppError("forbidden", "API keys belong to a tenant: use one of its keys");
  return { tenantId: p.tenantId, keyId: p.keyId, environment: p.environment, scopes: p.scopes };
}

async function readBody(c: Context<AppEnv>): Promise<Record<string, unknown> | undefined> {
  const tooLarge = () =>
    new AppError("payload_too_large", `The request body may be at most ${MAX_BODY_BYTES} bytes`);
  // Refused before it is read when the client says how large it is.
  if (Number(c.req.header("content-length") ?? 0) > MAX_BODY_BYTES) throw tooLarge();
  const raw = await c.req.arrayBuffer();
  if (raw.byteLength > MAX_BODY_BYTES) throw tooLarge();
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(raw);
  } catch {
    throw new AppError("unsupported_media_type", "Invalid UTF8 in request");
  }
  if (text.trim() === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw badRequest(fieldError(null, "The request body is not valid JSON"));
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw badRequest(fieldError(null, "The request body must be a JSON object"));
  }
  return parsed as Record<string, unknown>;
}

/** Fields outside `allowed` would be ignored, so they are refused. */
function refuseOthers(body: Record<string, unknown>, allowed: readonly string[], hint = ""): FieldError[] {
  return Object.keys(body)
    .filter((k) => !allowed.includes(k))
    .map((k) => fieldError(k, `${k} is not a field of this request${hint}`));
}

function nameOf(value: unknown, errors: FieldError[]): string {
  if (value === undefined || value === null) {
    errors.push(fieldError("name", "name is required"));
    return "";
  }
  if (typeof value !== "string") {
    errors.push(fieldError("name", "name must be a string"));
    return "";
  }
  const name = value.trim();
  if (name.length < 1 || name.length > MAX_NAME_LENGTH) {
    errors.push(fieldError("name", `name must be 1 to ${MAX_NAME_LENGTH} characters`));
  } else if (/\p{Cc}/u.test(name)) {
    errors.push(fieldError("name", "name must not contain control characters"));
  }
  return name;
}

/** Missing means none: ScaiSend's default, "no scopes means no access" (SendGrid's is full access). */
function scopesOf(value: unknown, errors: FieldError[]): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((s) => typeof s !== "string")) {
    errors.push(fieldError("scopes", "scopes must be an array of permission names"));
    return [];
  }
  const unknown = (value as string[]).filter((s) => !(PERMISSIONS as readonly string[]).includes(s));
  if (unknown.length > 0) {
    errors.push(
      fieldError(
        "scopes",
        `Unknown scope: ${unknown
          .slice(0, 10)
          .map((s) => s.slice(0, 100))
          .join(", ")}`,
      ),
    );
    return [];
  }
  return [...new Set(value as string[])];
}

function parseCreate(body: Record<string, unknown> | undefined, now: number) {
  const b = body ?? {};
  const errors = refuseOthers(b, ["name", "scopes", "environment", "expires_at"]);
  const name = nameOf(b.name, errors);
  const scopes = scopesOf(b.scopes, errors);
  let environment: "live" | "test" = "live";
  if (b.environment !== undefined) {
    if (b.environment === "live" || b.environment === "test") environment = b.environment;
    else errors.push(fieldError("environment", "environment must be live or test"));
  }
  let expiresAt: number | null = null;
  if (b.expires_at !== undefined && b.expires_at !== null) {
    // ISO-8601 date-time with an offset (Z or ±hh:mm), as every ScaiSend timestamp.
    const ok =
      typeof b.expires_at === "string" &&
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(b.expires_at);
    const ms = ok ? Date.parse(b.expires_at as string) : NaN;
    if (Number.isNaN(ms)) {
      errors.push(fieldError("expires_at", "expires_at must be an ISO-8601 date-time with an offset"));
    } else if (ms <= now) {
      errors.push(fieldError("expires_at", "expires_at must be in the future"));
    } else expiresAt = ms;
  }
  if (errors.length > 0) throw badRequest(...errors);
  return { name, scopes, environment, expiresAt };
}

function parseReplace(body: Record<string, unknown> | undefined) {
  const b = body ?? {};
  const errors = refuseOthers(b, ["name", "scopes"], " (PUT replaces name and scopes)");
  const name = nameOf(b.name, errors);
  const scopes = scopesOf(b.scopes, errors);
  if (errors.length > 0) throw badRequest(...errors);
  return { name, scopes };
}

function parseRename(body: Record<string, unknown> | undefined) {
  const b = body ?? {};
  const errors = refuseOthers(b, ["name"], " (PATCH renames; PUT replaces the scopes)");
  const name = nameOf(b.name, errors);
  if (errors.length > 0) throw badRequest(...errors);
  return name;
}

async function refuseBody(c: Context<AppEnv>): Promise<void> {
  const body = await readBody(c);
  if (body && Object.keys(body).length > 0) {
    throw badRequest(...refuseOthers(body, []));
  }
}

function queryOf(c: Context<AppEnv>, allowed: readonly string[]) {
  const q = c.req.queries();
  const errors: FieldError[] = [];
  for (const [k, v] of Object.entries(q)) {
    if (!allowed.includes(k))
      errors.push(fieldError(`query.${k}`, `${k} is not a parameter of this request`));
    else if (v.length > 1) errors.push(fieldError(`query.${k}`, `${k} may be given once`));
  }
  const one = (k: string) => q[k]?.[0];
  let includeRevoked = false;
  const inc = one("include_revoked");
  if (inc !== undefined) {
    if (inc === "true" || inc === "false") includeRevoked = inc === "true";
    else errors.push(fieldError("query.include_revoked", "include_revoked must be true or false"));
  }
  let limit = DEFAULT_LIST_LIMIT;
  const lim = one("limit");
  if (lim !== undefined) {
    if (/^\d{1,6}$/.test(lim) && Number(lim) >= 1 && Number(lim) <= MAX_LIST_LIMIT) limit = Number(lim);
    else errors.push(fieldError("query.limit", `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`));
  }
  if (errors.length > 0) throw badRequest(...errors);
  return { includeRevoked, limit };
}

/** ScaiSend's record of a key (never the secret). */
function record(row: ApiKeyRow) {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    environment: row.environment,
    scopes: row.scopes,
    created_at: iso(row.createdAt),
    last_used_at: iso(row.lastUsedAt),
    expires_at: iso(row.expiresAt),
    revoked_at: iso(row.revokedAt),
  };
}

/** ScaiSend's record with SendGrid's `api_key_id` beside it. */
const both = (row: ApiKeyRow) => ({ api_key_id: row.id, ...record(row) });

const adminScope = routePermission();
const perCredential = rateLimit(RATE_LIMITS.apiKeys);
const createLimit = rateLimit(RATE_LIMITS.apiKeysCreate);

export const apiKeysApi = new Hono<AppEnv>()
  .use(authenticate())
  .post("/", adminScope, createLimit, async (c) => {
    const caller = callerOf(c);
    const now = Date.now();
    const input = parseCreate(await readBody(c), now);
    const { row, apiKey } = await createKey(c.get("db"), caller, input, now);
    return c.json({ ...both(row), api_key: apiKey }, 201);
  })
  .get("/", adminScope, perCredential, async (c) => {
    const caller = callerOf(c);
    const rows = await listKeys(c.get("db"), caller.tenantId, queryOf(c, ["include_revoked", "limit"]));
    return c.json({
      api_keys: rows.map(record),
      result: rows.map((r) => ({ api_key_id: r.id, name: r.name })),
    });
  })
  .get("/:id", adminScope, perCredential, async (c) => {
    const caller = callerOf(c);
    const { includeRevoked } = queryOf(c, ["include_revoked"]);
    const row = await getKey(c.get("db"), caller.tenantId, c.req.param("id"), includeRevoked);
    return c.json({ ...both(row), result: [{ api_key_id: row.id, name: row.name, scopes: row.scopes }] });
  })
  .put("/:id", adminScope, perCredential, async (c) => {
    const caller = callerOf(c);
    queryOf(c, []);
    const input = parseReplace(await readBody(c));
    return c.json(both(await replaceKey(c.get("db"), caller, c.req.param("id"), input)));
  })
  .patch("/:id", adminScope, perCredential, async (c) => {
    const caller = callerOf(c);
    queryOf(c, []);
    const name = parseRename(await readBody(c));
    return c.json(both(await renameKey(c.get("db"), caller.tenantId, c.req.param("id"), name)));
  })
  .delete("/:id", adminScope, perCredential, async (c) => {
    const caller = callerOf(c);
    queryOf(c, []);
    await refuseBody(c);
    await revokeKey(c.get("db"), caller.tenantId, c.req.param("id"), Date.now());
    return c.body(null, 204);
  })
  .post("/:id/rotate", adminScope, perCredential, async (c) => {
    const caller = callerOf(c);
    queryOf(c, []);
    await refuseBody(c);
    const { row, apiKey } = await rotateKey(c.get("db"), caller, c.req.param("id"));
    return c.json({ ...both(row), api_key: apiKey });
  })
  .onError(renderApiKeysError);

/** SendGrid's GET /v3/scopes: the calling key's own scopes; no particular scope needed. */
export const scopesApi = new Hono<AppEnv>()
  .use(authenticate())
  .get("/", perCredential, (c) => {
    const caller = callerOf(c);
    queryOf(c, []);
    return c.json({ scopes: [...caller.scopes] });
  })
  .onError(renderApiKeysError);
