/**
 * Webhook configuration (docs/api/webhooks.md), two surfaces over one per-tenant WebhookQueue:
 *  - `/v3/user/webhooks`: ScaiSend endpoints (several URLs, each with its event types and its own
 *    `whsec_…` secret), FastAPI `{detail}` errors like every ScaiSend read/write surface;
 *  - `/v3/user/webhooks/event/*`: SendGrid's Event Webhook settings (one URL, a boolean per event),
 *    its Signed Event Webhook key and test POST, in SendGrid's `{"errors":[…]}` shape.
 * Reads need `webhooks.read`, changes `webhooks.write` (shared/permissions.ts). The tenant is the
 * credential's: its object is the only one a request can reach.
 */
import { Hono, type Context } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { SETTINGS_ID, type Outcome } from "../../objects/webhook-queue.ts";
import { EVENT_TYPES, SENDGRID_FLAGS } from "../../services/webhook-events.ts";
import { parseOAuthInput, type OAuthClient } from "../../services/webhook-oauth.ts";
import { renderFastApi, renderSendGrid } from "../errors.ts";

const MAX_BODY_BYTES = 64 * 1024;
export const MAX_URL_LENGTH = 2048;

type Dialect = "scaisend" | "sendgrid";

function badRequest(dialect: Dialect, field: string | null, message: string): AppError {
  return dialect === "sendgrid"
    ? new AppError("invalid_request", message, { fields: [{ field, message, help: null }] })
    : new AppError("invalid_request", field ? `${field}: ${message}` : message);
}

async function readJson(c: Context<AppEnv>, dialect: Dialect): Promise<Record<string, unknown>> {
  const raw = await c.req.arrayBuffer();
  if (raw.byteLength > MAX_BODY_BYTES)
    throw badRequest(dialect, null, `the body may be at most ${MAX_BODY_BYTES} bytes`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(raw);
  } catch {
    throw badRequest(dialect, null, "the body is not valid UTF-8");
  }
  // @sendgrid/client sends an empty body with Content-Type: application/json on bodiless calls.
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw badRequest(dialect, null, "the body is not valid JSON");
  }
  if (!body || typeof body !== "object" || Array.isArray(body))
    throw badRequest(dialect, null, "the body must be a JSON object");
  return body as Record<string, unknown>;
}

function refuseUnknown(dialect: Dialect, body: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(body))
    if (!known.includes(k)) throw badRequest(dialect, k, "is not a known field");
}

/**
 * OAuth2 client credentials (services/webhook-oauth.ts): undefined when the body names none (leave
 * them), null when all three are empty (remove them), else the three values.
 */
function oauthOf(dialect: Dialect, body: Record<string, unknown>): OAuthClient | null | undefined {
  const o = parseOAuthInput(body);
  if (o.kind === "error") throw badRequest(dialect, o.field, o.message);
  if (o.kind === "none") return undefined;
  if (o.kind === "clear") return null;
  return { clientId: o.clientId, clientSecret: o.clientSecret, tokenUrl: o.tokenUrl };
}

function urlField(dialect: Dialect, v: unknown, field = "url"): string {
  if (typeof v !== "string" || v.trim() === "")
    throw badRequest(dialect, field, "must be a non-empty string");
  if (v.length > MAX_URL_LENGTH)
    throw badRequest(dialect, field, `may be at most ${MAX_URL_LENGTH} characters`);
  return v.trim();
}

function enabledEvents(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0) {
    throw badRequest("scaisend", "enabled_events", 'must be a non-empty list of event types, or ["*"]');
  }
  if (v.length === 1 && v[0] === "*") return ["*"];
  const out: string[] = [];
  for (const t of v) {
    if (typeof t !== "string" || !(EVENT_TYPES as readonly string[]).includes(t)) {
      throw badRequest(
        "scaisend",
        "enabled_events",
        `${JSON.stringify(t)} is not an event type (${EVENT_TYPES.join(", ")}, or ["*"] alone)`,
      );
    }
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

function bool(dialect: Dialect, v: unknown, field: string): boolean {
  if (typeof v !== "boolean") throw badRequest(dialect, field, "must be true or false");
  return v;
}

function unwrap<T>(dialect: Dialect, outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  if (outcome.code === "not_found") throw new AppError("not_found", outcome.message);
  const field = /^(url|oauth_token_url) /.exec(outcome.message)?.[1] ?? null;
  throw badRequest(dialect, field, field ? outcome.message.slice(field.length + 1) : outcome.message);
}

const tenantOf = (c: Context<AppEnv>): string => {
  const p = c.get("principal");
  if (p.kind === "operator") throw new AppError("forbidden", "Webhooks belong to a tenant: use its API key");
  return p.tenantId;
};

const queueOf = (c: Context<AppEnv>) => c.env.WEBHOOK_QUEUE.getByName(tenantOf(c));

function positiveInt(v: string | undefined, field: string, def: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > max)
    throw badRequest("scaisend", `query.${field}`, `must be an integer from 1 to ${max}`);
  return n;
}

// ── SendGrid's Event Webhook ────────────────────────────────────────────────────────────────────

/** What PATCH …/event/settings may change, as WebhookQueue.patchEventSettings takes it. */
export interface EventSettingsPatch {
  enabled?: boolean;
  url?: string;
  flags: Record<string, boolean>;
  oauth?: OAuthClient | null;
}

/**
 * A `PATCH /v3/user/webhooks/event/settings` body checked and turned into the queue's patch, or an
 * AppError in SendGrid's shape naming the field. The dashboard's settings form goes through it too
 * (surfaces/dashboard/webhooks.tsx), so both refuse the same things; the SSRF guard is the queue's.
 */
export function eventSettingsPatch(body: Record<string, unknown>): EventSettingsPatch {
  refuseUnknown("sendgrid", body, [
    "enabled",
    "url",
    ...SENDGRID_FLAGS,
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_token_url",
  ]);
  const oauth = oauthOf("sendgrid", body);
  const flags: Record<string, boolean> = {};
  for (const f of SENDGRID_FLAGS) if (body[f] !== undefined) flags[f] = bool("sendgrid", body[f], f);
  return {
    ...(body["enabled"] !== undefined ? { enabled: bool("sendgrid", body["enabled"], "enabled") } : {}),
    // An empty url clears it (SendGrid's settings start with "").
    ...(body["url"] !== undefined
      ? { url: body["url"] === "" ? "" : urlField("sendgrid", body["url"]) }
      : {}),
    flags,
    ...(oauth !== undefined ? { oauth } : {}),
  };
}

export const eventWebhookApi = new Hono<AppEnv>()
  .use(authenticate())
  .get("/settings", routePermission(), async (c) => {
    return c.json(unwrap("sendgrid", await queueOf(c).getEventSettings(tenantOf(c))));
  })
  .patch("/settings", routePermission(), async (c) => {
    const patch = eventSettingsPatch(await readJson(c, "sendgrid"));
    return c.json(unwrap("sendgrid", await queueOf(c).patchEventSettings(tenantOf(c), patch)));
  })
  .get("/settings/signed", routePermission(), async (c) => {
    return c.json(unwrap("sendgrid", await queueOf(c).getSigned(tenantOf(c))));
  })
  .patch("/settings/signed", routePermission(), async (c) => {
    const body = await readJson(c, "sendgrid");
    refuseUnknown("sendgrid", body, ["enabled"]);
    const enabled = bool("sendgrid", body["enabled"], "enabled");
    return c.json(unwrap("sendgrid", await queueOf(c).patchSigned(tenantOf(c), enabled)));
  })
  .get("/settings/deliveries", routePermission(), async (c) => {
    const limit = positiveInt(c.req.query("limit"), "limit", 50, 500);
    return c.json(unwrap("sendgrid", await queueOf(c).deliveries(tenantOf(c), SETTINGS_ID, limit)));
  })
  // Retry now / re-send (docs/api/webhooks.md#retry-now) of one of the Event Webhook's deliveries.
  .post("/settings/deliveries/:delivery_id/retry", routePermission(), async (c) => {
    const d = c.req.param("delivery_id");
    unwrap("sendgrid", await queueOf(c).retryDelivery(tenantOf(c), SETTINGS_ID, d));
    return c.body(null, 202);
  })
  .post("/test", routePermission(), async (c) => {
    const body = await readJson(c, "sendgrid");
    refuseUnknown("sendgrid", body, [
      "url",
      "id",
      "oauth_client_id",
      "oauth_client_secret",
      "oauth_token_url",
    ]);
    const oauth = oauthOf("sendgrid", body);
    if (body["id"] !== undefined && body["id"] !== "") {
      throw badRequest("sendgrid", "id", "multiple Event Webhooks are not supported; leave id out");
    }
    const url = urlField("sendgrid", body["url"]);
    unwrap("sendgrid", await queueOf(c).testEvent(tenantOf(c), url, oauth ?? undefined));
    return c.body(null, 204);
  });
eventWebhookApi.onError(renderSendGrid);

// ── ScaiSend endpoints ─────────────────────────────────────────────────────────────────────────

export const webhooksApi = new Hono<AppEnv>()
  .use(authenticate())
  .get("/", routePermission(), async (c) => {
    const page = positiveInt(c.req.query("page"), "page", 1, 1_000_000);
    const pageSize = positiveInt(c.req.query("page_size"), "page_size", 20, 100);
    const active = c.req.query("is_active");
    if (active !== undefined && active !== "true" && active !== "false") {
      throw badRequest("scaisend", "query.is_active", "must be true or false");
    }
    const isActive = active === undefined ? null : active === "true";
    return c.json(
      unwrap("scaisend", await queueOf(c).listEndpoints(tenantOf(c), { page, pageSize, isActive })),
    );
  })
  .post("/", routePermission(), rateLimit(RATE_LIMITS.webhooksCreate), async (c) => {
    const body = await readJson(c, "scaisend");
    refuseUnknown("scaisend", body, [
      "url",
      "enabled_events",
      "oauth_client_id",
      "oauth_client_secret",
      "oauth_token_url",
    ]);
    const oauth = oauthOf("scaisend", body);
    const input = {
      url: urlField("scaisend", body["url"]),
      enabledEvents: enabledEvents(body["enabled_events"]),
      ...(oauth ? { oauth } : {}),
    };
    return c.json(unwrap("scaisend", await queueOf(c).createEndpoint(tenantOf(c), input)), 201);
  })
  .get("/:id", routePermission(), async (c) => {
    return c.json(unwrap("scaisend", await queueOf(c).getEndpoint(tenantOf(c), c.req.param("id"))));
  })
  .patch("/:id", routePermission(), async (c) => {
    const body = await readJson(c, "scaisend");
    refuseUnknown("scaisend", body, [
      "url",
      "enabled_events",
      "enabled",
      "oauth_client_id",
      "oauth_client_secret",
      "oauth_token_url",
    ]);
    if (Object.keys(body).length === 0)
      throw badRequest(
        "scaisend",
        null,
        "nothing to change: give url, enabled_events, enabled or the oauth_* fields",
      );
    const oauth = oauthOf("scaisend", body);
    const patch = {
      ...(body["url"] !== undefined ? { url: urlField("scaisend", body["url"]) } : {}),
      ...(body["enabled_events"] !== undefined
        ? { enabledEvents: enabledEvents(body["enabled_events"]) }
        : {}),
      ...(body["enabled"] !== undefined ? { enabled: bool("scaisend", body["enabled"], "enabled") } : {}),
      ...(oauth !== undefined ? { oauth } : {}),
    };
    return c.json(unwrap("scaisend", await queueOf(c).updateEndpoint(tenantOf(c), c.req.param("id"), patch)));
  })
  .delete("/:id", routePermission(), async (c) => {
    unwrap("scaisend", await queueOf(c).deleteEndpoint(tenantOf(c), c.req.param("id")));
    return c.body(null, 204);
  })
  .post("/:id/signing_secret", routePermission(), async (c) => {
    return c.json(unwrap("scaisend", await queueOf(c).rotateSecret(tenantOf(c), c.req.param("id"))));
  })
  .get("/:id/deliveries", routePermission(), async (c) => {
    const limit = positiveInt(c.req.query("limit"), "limit", 50, 500);
    const id = c.req.param("id");
    // The settings row is reached through /event/settings/deliveries, never by this path.
    if (!id.startsWith("wh_")) throw new AppError("not_found", "Webhook not found");
    return c.json(unwrap("scaisend", await queueOf(c).deliveries(tenantOf(c), id, limit)));
  })
  .post("/:id/deliveries/:delivery_id/retry", routePermission(), async (c) => {
    const id = c.req.param("id");
    if (!id.startsWith("wh_")) throw new AppError("not_found", "Webhook not found");
    const d = c.req.param("delivery_id");
    unwrap("scaisend", await queueOf(c).retryDelivery(tenantOf(c), id, d));
    return c.body(null, 202);
  });
webhooksApi.onError(renderFastApi);
