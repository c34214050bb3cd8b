/**
 * POST /v3/messages/{message_id}/cancel (docs/api/sendgrid.md#cancelling-a-message), in the
 * messages API's `{detail}` dialect, permission `mail.cancel`; and /fail beside it.
 * The message's hub shard decides: cancel and dispatch both run inside that Durable Object, one at a
 * time, so exactly one wins. Cancelled (still waiting in the outbox, no recipient reached) → 200
 * {"message_id","status":"cancelled"}, and it is never handed to an origin. Handed over already
 * (or finished) → 409 naming the status it has. Another tenant's id → 404, as a made-up one.
 * POST /v3/messages/{message_id}/fail (permission `mail.send`) ends a message that waits in the
 * outbox (a stuck retry, a scheduled or held send) `failed` the same way: 200
 * {"message_id","status":"failed"}; 409 while an origin holds it or once it has finished.
 * POST /v3/messages/{message_id}/retry (permission `mail.send`, docs/api/sendgrid.md#retrying-a-message)
 * re-queues the same message: one that ended failed or bounced (within its retry window, with the
 * recipients not delivered), or one waiting for its next retry attempt (made due now): 200
 * {"message_id","status":"queued"}. A status that cannot be retried (queued, delivered, sent,
 * cancelled, sandbox) → 400; one an origin holds right now, or a failure whose payload is no longer
 * kept → 409. Decided in the shard, serialized with dispatch and cancel (services/message-retry.ts).
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import type { Db } from "../../db/client.ts";
import { tenantMessages } from "../../db/messages.ts";
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { FAILED_BY_REQUEST } from "../../services/batch-holds.ts";
import { hubStub, ownerOf } from "../../services/hub-client.ts";
import { RETRIABLE_FINAL } from "../../services/message-retry.ts";

/** Statuses of a message an origin holds (docs/api/sendgrid.md#message-statuses). */
const HELD = new Set(["processing", "rendered", "sending"]);

/** The status to name for a message an origin holds: the catalog's stage, `processing` until it has one. */
async function heldStatus(db: Db, tenantId: string, id: string): Promise<string> {
  const m = await tenantMessages(db, tenantId).getMessage(id);
  return m && HELD.has(m.status) ? m.status : "processing";
}

export const messageActionsApi = new Hono<AppEnv>()
  .use("/:id/cancel", authenticate())
  .use("/:id/fail", authenticate())
  .use("/:id/retry", authenticate())
  .post("/:id/cancel", routePermission(), async (c) => {
    const principal = c.get("principal");
    if (principal.kind === "operator") throw new AppError("forbidden", "Cancelling needs an API key");
    const id = c.req.param("id");
    const cancelled = () => c.json({ message_id: id, status: "cancelled" }, 200);
    const tooLate = (status: string) =>
      new AppError(
        "conflict",
        `Message ${id} cannot be cancelled: its status is ${status}. Only a message still queued (not yet handed to a delivery node) can be cancelled.`,
      );
    const owner = ownerOf(c.get("config"), id);
    if (owner) {
      const r = await hubStub(c.env, owner).cancelMessage(principal.tenantId, id);
      if (r.outcome === "cancelled") return cancelled();
      if (r.outcome === "dispatched") throw tooLate(await heldStatus(c.get("db"), principal.tenantId, id));
      if (r.outcome === "ended") throw tooLate(r.status);
    }
    // Not in its shard's outbox: finished (or never live); the catalog has its final status.
    const m = await tenantMessages(c.get("db"), principal.tenantId).getMessage(id);
    if (!m) throw new AppError("not_found", `Message not found: ${id}`);
    if (m.status === "cancelled") return cancelled();
    throw tooLate(m.status);
  })
  .post("/:id/fail", routePermission(), async (c) => {
    const principal = c.get("principal");
    if (principal.kind === "operator") throw new AppError("forbidden", "Failing a message needs an API key");
    const id = c.req.param("id");
    const owner = ownerOf(c.get("config"), id);
    const r = owner ? await hubStub(c.env, owner).failMessage(principal.tenantId, id) : null;
    if (r?.outcome === "failed") return c.json({ message_id: id, status: "failed" }, 200);
    let status: string | undefined =
      r?.outcome === "dispatched" ? await heldStatus(c.get("db"), principal.tenantId, id) : undefined;
    if (r?.outcome === "ended") status = r.status;
    if (status === undefined) {
      const m = await tenantMessages(c.get("db"), principal.tenantId).getMessage(id);
      if (!m) throw new AppError("not_found", `Message not found: ${id}`);
      // Failed by an earlier /fail: the same answer again, as a repeated cancel gets.
      if (m.status === "failed" && m.errorMessage === FAILED_BY_REQUEST) {
        return c.json({ message_id: id, status: "failed" }, 200);
      }
      status = m.status;
    }
    throw new AppError(
      "conflict",
      `Message ${id} cannot be marked failed: its status is ${status}. Only a message waiting in the queue (queued, scheduled, paused, or waiting for a retry) can be; one a delivery node holds gets its outcome from that node, or returns to the queue when its lease ends.`,
    );
  })
  .post("/:id/retry", routePermission(), async (c) => {
    const principal = c.get("principal");
    if (principal.kind === "operator") throw new AppError("forbidden", "Retrying a message needs an API key");
    const id = c.req.param("id");
    const owner = ownerOf(c.get("config"), id);
    const r = owner ? await hubStub(c.env, owner).retryMessage(principal.tenantId, id) : null;
    if (r?.outcome === "requeued") return c.json({ message_id: id, status: "queued" }, 200);
    if (r?.outcome === "unavailable") {
      throw new AppError(
        "unavailable",
        `Message ${id} could not be retried now; nothing changed. Try again.`,
      );
    }
    if (r?.outcome === "dispatched") {
      const held = await heldStatus(c.get("db"), principal.tenantId, id);
      throw new AppError(
        "conflict",
        `Message ${id} cannot be retried now: a delivery node holds it (status ${held}). Its outcome comes from that node, or it returns to the queue when its lease ends.`,
      );
    }
    let status: string | undefined = r?.outcome === "waiting" ? "queued" : undefined;
    if (r?.outcome === "ended") {
      status = r.status;
      if (RETRIABLE_FINAL.has(status)) {
        // Ended by /fail a moment ago: retriable once that outcome is written.
        throw new AppError(
          "conflict",
          `Message ${id} cannot be retried yet: its status ${status} is being recorded. Try again in a moment.`,
        );
      }
    }
    if (status === undefined) {
      const m = await tenantMessages(c.get("db"), principal.tenantId).getMessage(id);
      if (!m) throw new AppError("not_found", `Message not found: ${id}`);
      status = m.status;
      if (
        RETRIABLE_FINAL.has(status) ||
        status === "processing" ||
        status === "rendered" ||
        status === "sending"
      ) {
        // Retriable in principle, but its payload is not here (finished before the retry window, or a
        // message of a shard layout that no longer owns it).
        throw new AppError(
          "conflict",
          `Message ${id} cannot be retried: its status is ${status} and its content is no longer kept (a failed or bounced message can be retried for up to 72 hours after it ended).`,
        );
      }
    }
    throw new AppError(
      "invalid_request",
      `Message ${id} cannot be retried: its status is ${status}. Only a message that failed or bounced, or one waiting for its next delivery attempt, can be retried.`,
    );
  });
