/**
 * POST /v3/mail/batch and GET /v3/mail/batch/{batch_id}: SendGrid's batch ids
 * (docs/api/sendgrid.md#scheduling-and-batches). A batch id groups sends (`batch_id` on
 * /v3/mail/send) so /v3/user/scheduled_sends can pause or cancel them together. Both need
 * `mail.schedule`. Answers in SendGrid's shapes: 201 {"batch_id"}, 200 {"batch_id"}, and 400
 * "invalid batch id" for an id this tenant never created (another tenant's included).
 */
import { Hono, type Context } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { tenantBatches } from "../../db/batches.ts";
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { createBatch } from "../../services/batches.ts";
import { BATCH_ID_FORMAT } from "../../services/scheduling.ts";
import { renderMako } from "./mako-errors.ts";

/** Requests per second per credential on the batch and scheduled-send routes. */
export const BATCH_RATE_LIMIT = 50;

const sendgridError = (message: string, field: string | null = null) => ({ message, field, help: null });

export const invalidBatchId = () =>
  new AppError("invalid_request", "invalid batch id", { fields: [sendgridError("invalid batch id")] });

export function tenantOf(c: Context<AppEnv>): string {
  const p = c.get("principal");
  if (p.kind === "operator")
    throw new AppError("forbidden", "Batches belong to a tenant: use one of its API keys");
  return p.tenantId;
}

/** The route's body as JSON; an empty body counts as `{}` (@sendgrid/client sends none with a JSON type). */
export async function readJsonBody(c: Context<AppEnv>): Promise<unknown> {
  const raw = await c.req.arrayBuffer();
  if (raw.byteLength > 16 * 1024) {
    throw new AppError("payload_too_large", "content too large", {
      fields: [sendgridError("content too large")],
    });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(raw);
  } catch {
    throw new AppError("unsupported_media_type", "Invalid UTF8 in request", {
      fields: [sendgridError("Invalid UTF8 in request")],
    });
  }
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError("invalid_request", "Bad Request", { fields: [sendgridError("Bad Request")] });
  }
}

export const batchesApi = new Hono<AppEnv>()
  .use(authenticate())
  .use(rateLimit(RATE_LIMITS.batches))
  .post("/", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    const body = await readJsonBody(c);
    // The endpoint takes no fields: anything sent would be ignored, so it is refused.
    if (typeof body !== "object" || body === null || Array.isArray(body) || Object.keys(body).length > 0) {
      throw new AppError("invalid_request", "Bad Request", {
        fields: [sendgridError("POST /v3/mail/batch takes no request body (send none, or {}).")],
      });
    }
    return c.json({ batch_id: await createBatch(c.get("db"), tenantId, Date.now()) }, 201);
  })
  .get("/:batchId", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    const id = c.req.param("batchId");
    if (!BATCH_ID_FORMAT.test(id) || !(await tenantBatches(c.get("db"), tenantId).getBatch(id)))
      throw invalidBatchId();
    return c.json({ batch_id: id }, 200);
  });

batchesApi.onError(renderMako);
