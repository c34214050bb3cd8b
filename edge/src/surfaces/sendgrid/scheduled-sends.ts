/**
 * /v3/user/scheduled_sends: pause or cancel the sends of a batch, as SendGrid does
 * (docs/api/sendgrid.md#scheduling-and-batches). POST {batch_id, status} → 201; GET (the batches
 * with a state) and GET /{batch_id} → 200 arrays; PATCH /{batch_id} {status} → 204; DELETE → 204,
 * which removes the state (a paused batch's messages go out; cancelled ones stay cancelled).
 * At most MAX_SCHEDULED_STATES batches of a tenant have a state at once; a batch has one state.
 * Every change is stored in D1 and told to every hub shard (services/batches.ts), which holds or
 * cancels the batch's messages no origin has yet, and meets later sends into the batch with it.
 * Permissions (surfaces/route-permissions.ts): `mail.cancel` to change, `mail.cancel` or `mail.schedule`
 * to read.
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { tenantBatches } from "../../db/batches.ts";
import { SCHEDULED_SEND_STATUSES, type ScheduledSendStatus } from "../../db/schema.ts";
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { tellShards } from "../../services/batches.ts";
import { BATCH_ID_FORMAT } from "../../services/scheduling.ts";
import { renderMako } from "./mako-errors.ts";
import { BATCH_RATE_LIMIT, invalidBatchId, readJsonBody, tenantOf } from "./batches.ts";

/** SendGrid's limit on batches paused or cancelled at once (docs/api/sendgrid.md#scheduling-and-batches). */
export const MAX_SCHEDULED_STATES = 10;

const badRequest = (message: string, field: string | null = null) =>
  new AppError("invalid_request", "Bad Request", { fields: [{ message, field, help: null }] });

const notFound = () =>
  new AppError("not_found", "batch id not found", {
    fields: [{ message: "batch id not found", field: null, help: null }],
  });

function parseBody(
  body: unknown,
  fields: readonly ("batch_id" | "status")[],
): { batch_id?: string; status: ScheduledSendStatus } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw badRequest("The request body must be a JSON object.");
  }
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (!(fields as readonly string[]).includes(key)) throw badRequest(`Unknown field: ${key}.`, key);
  }
  const out: { batch_id?: string; status?: ScheduledSendStatus } = {};
  if (fields.includes("batch_id")) {
    if (b.batch_id === undefined) throw badRequest("batch_id is required.", "batch_id");
    if (typeof b.batch_id !== "string") throw badRequest("batch_id must be a string.", "batch_id");
    out.batch_id = b.batch_id;
  }
  if (b.status === undefined) throw badRequest("status is required.", "status");
  if (typeof b.status !== "string" || !(SCHEDULED_SEND_STATUSES as readonly string[]).includes(b.status)) {
    throw badRequest("status must be either pause or cancel.", "status");
  }
  out.status = b.status as ScheduledSendStatus;
  return out as { batch_id?: string; status: ScheduledSendStatus };
}

export const scheduledSendsApi = new Hono<AppEnv>()
  .use(authenticate())
  .use(rateLimit(RATE_LIMITS.scheduledSends))
  .post("/", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    const { batch_id: batchId, status } = parseBody(await readJsonBody(c), ["batch_id", "status"]);
    const db = c.get("db");
    const id = batchId!;
    const now = Date.now();
    if (!BATCH_ID_FORMAT.test(id)) throw invalidBatchId();
    if (!(await tenantBatches(db, tenantId).createScheduled(id, status, MAX_SCHEDULED_STATES, now))) {
      const batch = await tenantBatches(db, tenantId).getBatch(id);
      if (!batch) throw invalidBatchId();
      if (batch.scheduledStatus !== null) {
        throw badRequest(
          `This batch is ${batch.scheduledStatus === "pause" ? "paused" : "cancelled"} already: change it with PATCH or remove it with DELETE /v3/user/scheduled_sends/${id}.`,
          "batch_id",
        );
      }
      throw badRequest(
        `At most ${MAX_SCHEDULED_STATES} batches can be paused or cancelled at once; remove one with DELETE /v3/user/scheduled_sends/{batch_id} first.`,
      );
    }
    await tellShards(c.env, c.get("config"), tenantId, id, status);
    return c.json({ batch_id: id, status }, 201);
  })
  .get("/", routePermission(), async (c) => {
    const rows = await tenantBatches(c.get("db"), tenantOf(c)).listScheduled();
    return c.json(
      rows.map((r) => ({ batch_id: r.id, status: r.scheduledStatus })),
      200,
    );
  })
  .get("/:batchId", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    const id = c.req.param("batchId");
    const batch = BATCH_ID_FORMAT.test(id)
      ? await tenantBatches(c.get("db"), tenantId).getBatch(id)
      : undefined;
    // SendGrid answers an array, empty when the batch has no state.
    return c.json(batch?.scheduledStatus ? [{ batch_id: id, status: batch.scheduledStatus }] : [], 200);
  })
  .patch("/:batchId", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    const id = c.req.param("batchId");
    const { status } = parseBody(await readJsonBody(c), ["status"]);
    if (
      !BATCH_ID_FORMAT.test(id) ||
      !(await tenantBatches(c.get("db"), tenantId).changeScheduled(id, status, Date.now()))
    ) {
      throw notFound();
    }
    await tellShards(c.env, c.get("config"), tenantId, id, status);
    return c.body(null, 204);
  })
  .delete("/:batchId", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    const id = c.req.param("batchId");
    if (!BATCH_ID_FORMAT.test(id)) throw notFound();
    const db = c.get("db");
    const removed = await tenantBatches(db, tenantId).changeScheduled(id, null, Date.now());
    // A batch of this tenant without a state: a DELETE whose shards were not all told before
    // (services/batches.ts) is repeated here, then answered as SendGrid does.
    if (removed || (await tenantBatches(db, tenantId).getBatch(id)))
      await tellShards(c.env, c.get("config"), tenantId, id, null);
    if (!removed) throw notFound();
    return c.body(null, 204);
  });

scheduledSendsApi.onError(renderMako);
