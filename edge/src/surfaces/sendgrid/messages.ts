/**
 * GET /v3/messages and GET /v3/messages/{id} (docs/api/sendgrid.md#get-v3messages): FastAPI-style errors, any
 * authenticated caller of the tenant may read; another tenant's message is a plain 404.
 * Both read the D1 catalog, which the hub shards write in batched flushes: a list may lag an accepted
 * send by one flush (CATALOG_FLUSH_MS). By id there is no lag: when D1 has no row yet, the shard
 * the id names answers (tenant-checked there too), and D1 is asked once more in case the flush
 * landed in between (docs/api/sendgrid.md#catalog-lag).
 */
import { Hono } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import {
  getMessage,
  getMessageEvents,
  listMessages,
  type EventRow,
  type MessageRow,
} from "../../db/messages.ts";
import { MESSAGE_STATUSES } from "../../db/schema.ts";
import type { HubMessageView } from "../../objects/origin-hub.ts";
import { hubStub, ownerOf } from "../../services/hub-client.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { authenticate } from "../../middleware/auth.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { parseInput } from "../validate.ts";

/** ISO-8601 timestamp or a bare date; a bare end date includes that whole day. */
const dateParam = z
  .string()
  .refine((v) => !Number.isNaN(Date.parse(v)), "must be an ISO-8601 date or YYYY-MM-DD")
  .optional();

const ListQuery = z.object({
  status: z.enum(MESSAGE_STATUSES).optional(),
  to_email: z.string().optional(),
  from_email: z.string().optional(),
  subject: z.string().optional(),
  batch_id: z.string().optional(),
  template_id: z.string().optional(),
  category: z.string().optional(),
  start_date: dateParam,
  end_date: dateParam,
  page: z.coerce.number().int().min(1).default(1),
  page_size: z.coerce.number().int().min(1).max(100).default(25),
});

const isBareDate = (v: string) => /^\d{4}-\d{2}-\d{2}$/.test(v);

function summary(m: MessageRow) {
  return {
    id: m.id,
    status: m.status,
    from_email: m.fromEmail,
    from_name: m.fromName,
    subject: m.subject,
    to_emails: m.toEmails,
    template_id: m.templateId,
    batch_id: m.batchId,
    categories: m.categories,
    created_at: iso(m.createdAt),
    delivered_at: iso(m.deliveredAt),
  };
}

function eventView(e: EventRow) {
  return {
    event_id: e.id,
    event_type: e.eventType,
    timestamp: Math.floor(e.timestamp / 1000),
    recipient_email: e.recipientEmail,
    metadata: e.metadata,
  };
}

export const messagesApi = new Hono<AppEnv>()
  .use(authenticate())
  .get(
    "/",
    rateLimit({ name: "messages.list", per: "credential", limit: () => 100, windowMs: 1000 }),
    async (c) => {
      const principal = c.get("principal");
      if (principal.kind !== "api_key") throw new AppError("forbidden", "Reading messages needs an API key");
      const q = parseInput(ListQuery, c.req.query(), "query");
      const endMs =
        q.end_date === undefined
          ? undefined
          : Date.parse(q.end_date) + (isBareDate(q.end_date) ? 86_400_000 : 1);
      const { rows, total } = await listMessages(
        c.get("db"),
        principal.tenantId,
        {
          ...(q.status ? { status: q.status } : {}),
          ...(q.to_email ? { toEmail: q.to_email } : {}),
          ...(q.from_email ? { fromEmail: q.from_email } : {}),
          ...(q.subject ? { subject: q.subject } : {}),
          ...(q.batch_id ? { batchId: q.batch_id } : {}),
          ...(q.template_id ? { templateId: q.template_id } : {}),
          ...(q.category ? { category: q.category } : {}),
          ...(q.start_date ? { startMs: Date.parse(q.start_date) } : {}),
          ...(endMs !== undefined ? { endMs } : {}),
        },
        q.page,
        q.page_size,
      );
      return c.json({
        messages: rows.map(summary),
        total,
        page: q.page,
        page_size: q.page_size,
        total_pages: Math.ceil(total / q.page_size),
      });
    },
  )
  .get("/:id", async (c) => {
    const principal = c.get("principal");
    if (principal.kind !== "api_key") throw new AppError("forbidden", "Reading messages needs an API key");
    const id = c.req.param("id");
    const db = c.get("db");
    let found: HubMessageView | null = null;
    const m0 = await getMessage(db, principal.tenantId, id);
    if (m0) found = { message: m0, events: await getMessageEvents(db, principal.tenantId, id) };
    const owner = m0 ? null : ownerOf(c.get("config"), id);
    if (owner) {
      found = (await hubStub(c.env, owner).message(principal.tenantId, id)) as HubMessageView | null;
      if (!found) {
        const m1 = await getMessage(db, principal.tenantId, id);
        if (m1) found = { message: m1, events: await getMessageEvents(db, principal.tenantId, id) };
      }
    }
    if (!found) throw new AppError("not_found", `Message not found: ${id}`);
    const { message: m, events } = found;
    return c.json({
      ...summary(m),
      mode: m.mode,
      cc_emails: m.recipients.cc.map((a) => a.email),
      bcc_emails: m.recipients.bcc.map((a) => a.email),
      reply_to: m.recipients.replyTo,
      headers: m.headers,
      custom_args: m.customArgs,
      text_content: m.textBody,
      html_content: m.htmlBody,
      message_id_header: `<${m.messageIdHeader}>`,
      // Two counters, named for what they count (docs/api/sendgrid.md): hand-overs to an origin, and
      // deliveries that ended deferred (the retry schedule follows the latter).
      dispatches: m.dispatches,
      deferrals: m.deferrals,
      error_message: m.errorMessage,
      updated_at: iso(m.updatedAt),
      events: events.map(eventView),
    });
  });
