/**
 * GET /v3/messages and GET /v3/messages/{id} (docs/api/sendgrid.md#get-v3messages): FastAPI-style errors, any
 * authenticated caller of the tenant may read; another tenant's message is a plain 404.
 * Both read the D1 catalog, which the hub shards write in batched flushes: a list may lag an accepted
 * send by one flush (CATALOG_FLUSH_MS). By id there is no lag: when D1 has no row yet, the shard
 * the id names answers (tenant-checked there too), and D1 is asked once more in case the flush
 * landed in between (docs/api/sendgrid.md#catalog-lag).
 * Beside ScaiSend's fields, both answer SendGrid's Email Activity fields, and the list takes its
 * `query` and `limit` (docs/api/sendgrid.md#sendgrid-email-activity-fields).
 */
import { Hono } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import {
  ActivityQueryError,
  parseActivityQuery,
  type Expr,
} from "../../../../shared/sendgrid/activity-query.ts";
import type { AppEnv } from "../../context.ts";
import type { Db } from "../../db/client.ts";
import type { Bindings, Config } from "../../env.ts";
import {
  activityCondition,
  type ActivityRow,
  type EventRow,
  type MessageRow,
  tenantMessages,
} from "../../db/messages.ts";
import { MESSAGE_STATUSES } from "../../db/schema.ts";
import type { HubMessageView } from "../../objects/origin-hub.ts";
import { hubStub, ownerOf } from "../../services/hub-client.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { authenticate } from "../../middleware/auth.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { parseInput } from "../validate.ts";

/** ISO-8601 timestamp or a bare date; a bare end date includes that whole day. */
const dateParam = z
  .string()
  .refine((v) => !Number.isNaN(Date.parse(v)), "must be an ISO-8601 date or YYYY-MM-DD")
  .optional();

const ListQuery = z
  .object({
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
    page_size: z.coerce.number().int().min(1).max(100).optional(),
    // SendGrid's page size (1–1000). Without either, ScaiSend's default of 25 holds, not SendGrid's 10.
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    query: z.string().optional(),
  })
  .refine((q) => q.limit === undefined || q.page_size === undefined, {
    message: "Give page_size or limit, not both",
    path: ["limit"],
  });

/** The SendGrid query, parsed and compiled once here so a bad one is a 400 naming the position. */
function parseQuery(text: string | undefined): Expr | undefined {
  if (text === undefined || text.trim() === "") return undefined;
  try {
    const expr = parseActivityQuery(text);
    activityCondition(expr); // value checks that need the catalog's vocabulary (statuses)
    return expr;
  } catch (err) {
    if (err instanceof ActivityQueryError)
      throw new AppError("invalid_request", `Invalid query: ${err.message}`);
    throw err;
  }
}

/** SendGrid's Email Activity event names for ScaiSend's event types. */
const EVENT_NAMES: Record<string, string> = {
  bounce: "bounced",
  blocked: "bounced",
  open: "opened",
  click: "clicked",
};

const isBareDate = (v: string) => /^\d{4}-\d{2}-\d{2}$/.test(v);

interface Activity {
  opensCount: number;
  clicksCount: number;
  lastEventAt: number;
}

/** What SendGrid's list counts, from a timeline in hand (the detail answer has its events already). */
function activityOf(m: MessageRow, evs: EventRow[]): Activity {
  return {
    opensCount: evs.filter((e) => e.eventType === "open").length,
    clicksCount: evs.filter((e) => e.eventType === "click").length,
    lastEventAt: evs.length ? Math.max(...evs.map((e) => e.timestamp)) : m.createdAt,
  };
}

function summary(m: MessageRow, a: Activity) {
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
    // SendGrid's Email Activity names beside ScaiSend's (its `status` words differ: ScaiSend's win).
    msg_id: m.id,
    to_email: m.toEmails[0] ?? null,
    opens_count: a.opensCount,
    clicks_count: a.clicksCount,
    last_event_time: iso(a.lastEventAt),
  };
}

function eventView(e: EventRow) {
  return {
    event_id: e.id,
    event_type: e.eventType,
    timestamp: Math.floor(e.timestamp / 1000),
    recipient_email: e.recipientEmail,
    metadata: e.metadata,
    event_name: EVENT_NAMES[e.eventType] ?? e.eventType,
    processed: iso(e.timestamp),
    ...sendgridEventExtras(e),
  };
}

/** SendGrid's optional event fields, where the event's metadata has them. */
function sendgridEventExtras(e: EventRow): Record<string, unknown> {
  const md = e.metadata;
  const out: Record<string, unknown> = {};
  const reason = md.reason ?? md.smtp_response;
  if (typeof reason === "string" && e.eventType !== "processed") out.reason = reason;
  if (typeof md.attempt === "number") out.attempt_num = md.attempt;
  if (typeof md.mx_host === "string") out.mx_server = md.mx_host;
  if (e.eventType === "bounce" || e.eventType === "blocked") out.bounce_type = e.eventType;
  return out;
}

/**
 * GET /v3/messages' answer for `raw` (its query parameters) in one tenant: the one list query, which
 * the dashboard's message list reads too (edge/src/surfaces/dashboard/messages.tsx).
 */
export async function messageList(db: Db, tenantId: string, raw: Record<string, string>) {
  const q = parseInput(ListQuery, raw, "query");
  const pageSize = q.limit ?? q.page_size ?? 25;
  const query = parseQuery(q.query);
  const endMs =
    q.end_date === undefined ? undefined : Date.parse(q.end_date) + (isBareDate(q.end_date) ? 86_400_000 : 1);
  const { rows, total } = await tenantMessages(db, tenantId).listMessages(
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
    pageSize,
    query,
  );
  return {
    messages: rows.map((r: ActivityRow) => summary(r, r)),
    total,
    page: q.page,
    page_size: pageSize,
    total_pages: Math.ceil(total / pageSize),
  };
}

/** GET /v3/messages/{id}'s answer in one tenant (the dashboard's message page reads it too); 404 when absent. */
export async function messageDetail(db: Db, config: Config, env: Bindings, tenantId: string, id: string) {
  let found: HubMessageView | null = null;
  const m0 = await tenantMessages(db, tenantId).getMessage(id);
  if (m0) found = { message: m0, events: await tenantMessages(db, tenantId).getMessageEvents(id) };
  const owner = m0 ? null : ownerOf(config, id);
  if (owner) {
    found = (await hubStub(env, owner).message(tenantId, id)) as HubMessageView | null;
    if (!found) {
      const m1 = await tenantMessages(db, tenantId).getMessage(id);
      if (m1) found = { message: m1, events: await tenantMessages(db, tenantId).getMessageEvents(id) };
    }
  }
  if (!found) throw new AppError("not_found", `Message not found: ${id}`);
  const { message: m, events } = found;
  return {
    ...summary(m, activityOf(m, events)),
    api_key_id: m.apiKeyId,
    unique_args: m.customArgs,
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
  };
}

export const messagesApi = new Hono<AppEnv>()
  .use(authenticate())
  .get("/", rateLimit(RATE_LIMITS.messagesList), async (c) => {
    const principal = c.get("principal");
    if (principal.kind === "operator") throw new AppError("forbidden", "Reading messages needs an API key");
    return c.json(await messageList(c.get("db"), principal.tenantId, c.req.query()));
  })
  .get("/:id", async (c) => {
    const principal = c.get("principal");
    if (principal.kind === "operator") throw new AppError("forbidden", "Reading messages needs an API key");
    return c.json(
      await messageDetail(c.get("db"), c.get("config"), c.env, principal.tenantId, c.req.param("id")),
    );
  });
