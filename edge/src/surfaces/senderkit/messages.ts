/**
 * /v1/messages (docs/api/senderkit.md#messages), always within the key's workspace AND mode: another
 * workspace's id, or the other mode's, is `404 not_found` like an id that exists nowhere.
 *  - GET /            newest first, `limit` 1–200 (default 50), `cursor` = the previous page's
 *                     `nextCursor` (the public id of its last message), filters `status`, `channel`,
 *                     `template`, `metadata[key]=value` (AND-ed; a value that reads as a number or
 *                     boolean matches that too). `tail=1` → the SSE stream of tail.ts.
 *  - GET /{id}        from D1, or, before the catalog flush, from the message's hub shard (read-your-writes).
 *  - DELETE /{id}     cancel, decided in the message's hub shard, serialized with its dispatch (live)
 *                     or its synthesized lifecycle (test): `200 {id, status:"canceled"}` for a message
 *                     still scheduled or queued, else `409 not_cancelable` naming the status observed.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import type { AppEnv } from "../../context.ts";
import type { SkMessageRow } from "../../db/sk-messages.ts";
import type { HubMessageView } from "../../objects/origin-hub.ts";
import { hubStub, ownerOf } from "../../services/hub-client.ts";
import {
  SK_STATUSES,
  coerceMetadataValue,
  getSkMessage,
  listSkMessages,
  mapStatus,
  messageJson,
  workspaceUuid,
  type ListFilters,
  type SkMessageView,
} from "../../services/senderkit/messages.ts";
import { CHANNELS } from "../../services/senderkit/send-input.ts";
import { skPrincipal } from "./auth.ts";
import { readBudget, sendBudget } from "./budgets.ts";
import { invalidRequest, SkError, zodIssues } from "./errors.ts";
import { tailStream } from "./tail.ts";

const ListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().min(1).max(64).optional(),
  status: z.enum(SK_STATUSES).optional(),
  channel: z.enum(CHANNELS).optional(),
  template: z.string().min(1).max(255).optional(),
  tail: z.literal("1").optional(),
});

const METADATA_PARAM = /^metadata\[([^\]]{1,40})\]$/;

/** The query string → filters; unknown parameters are a 400 (never accepted and ignored). */
export function parseListQuery(url: URL): { query: z.infer<typeof ListQuery>; filters: ListFilters } {
  const plain: Record<string, string> = {};
  const metadata: ListFilters["metadata"] = [];
  for (const [k, v] of url.searchParams) {
    const m = METADATA_PARAM.exec(k);
    if (m) metadata.push({ key: m[1]!, values: coerceMetadataValue(v) });
    else if (k in plain) throw invalidRequest(`Query parameter ${k} is given more than once`);
    else plain[k] = v;
  }
  const r = ListQuery.safeParse(plain);
  if (!r.success) throw invalidRequest("Invalid query parameters", zodIssues(r.error));
  const q = r.data;
  return {
    query: q,
    filters: {
      metadata,
      ...(q.status ? { status: q.status } : {}),
      ...(q.channel ? { channel: q.channel } : {}),
      ...(q.template ? { template: q.template } : {}),
    },
  };
}

const notFound = (id: string) =>
  new SkError(404, "not_found", `No message ${id} in this workspace and environment`);

/** The message from D1, else from its shard (accepted, catalog rows not flushed yet); null: none here. */
async function findMessage(c: Context<AppEnv>, id: string): Promise<SkMessageView | null> {
  const p = skPrincipal(c);
  const scope = { tenantId: p.tenantId, livemode: p.environment === "live" };
  const now = Date.now();
  const found = await getSkMessage(c.get("db"), scope, id, now);
  if (found) return found;
  const owner = ownerOf(c.get("config"), id);
  if (!owner) return null;
  const stub = hubStub(c.env, owner);
  if (scope.livemode) {
    // The RPC stub's result type loses the view's shape; it is exactly the hub's HubMessageView.
    const v = (await stub.message(p.tenantId, id)) as unknown as HubMessageView | null;
    // Flushed to D1 between the two reads: D1 has it now.
    if (!v) return getSkMessage(c.get("db"), scope, id, Date.now());
    if (!v.senderkit || !v.senderkit.livemode) return null;
    const m = { ...v.message };
    return {
      row: v.senderkit,
      status: mapStatus(v.senderkit, m, now),
      message: m,
      events: v.events,
    };
  }
  const row = (await stub.skTestMessage(p.tenantId, id)) as unknown as SkMessageRow | null;
  if (!row) return getSkMessage(c.get("db"), scope, id, Date.now());
  if (row.livemode) return null;
  return { row, status: mapStatus(row, null, now), message: null, events: [] };
}

export const skMessagesApi = new Hono<AppEnv>()
  .get("/", readBudget, async (c) => {
    const p = skPrincipal(c);
    const { query, filters } = parseListQuery(new URL(c.req.url));
    const scope = { tenantId: p.tenantId, livemode: p.environment === "live" };
    const ws = await workspaceUuid(p.tenantId);
    if (query.tail === "1") return tailStream(c, scope, filters, ws);
    const rows = await listSkMessages(
      c.get("db"),
      scope,
      filters,
      { limit: query.limit + 1, ...(query.cursor ? { cursor: query.cursor } : {}) },
      Date.now(),
    );
    const page = rows.slice(0, query.limit);
    return c.json({
      data: page.map((v) => messageJson(v, ws)),
      nextCursor: rows.length > query.limit ? page[page.length - 1]!.row.id : null,
    });
  })
  .get("/:id", readBudget, async (c) => {
    const p = skPrincipal(c);
    const id = c.req.param("id");
    const v = await findMessage(c, id);
    if (!v) throw notFound(id);
    return c.json(messageJson(v, await workspaceUuid(p.tenantId)));
  })
  .delete("/:id", sendBudget, async (c) => {
    const p = skPrincipal(c);
    const id = c.req.param("id");
    const v = await findMessage(c, id);
    if (!v) throw notFound(id);
    const notCancelable = (status: string) =>
      new SkError(
        409,
        "not_cancelable",
        `Message ${id} cannot be canceled: its status is ${status}. Only a scheduled or queued message can be.`,
      );
    if (v.status !== "scheduled" && v.status !== "queued") throw notCancelable(v.status);
    const owner = ownerOf(c.get("config"), id);
    if (!owner) throw notCancelable(v.status);
    const stub = hubStub(c.env, owner);
    if (p.environment === "test") {
      const r = await stub.skCancelTest(p.tenantId, id);
      if (r.outcome === "canceled") return c.json({ id, status: "canceled" as const }, 200);
      if (r.outcome === "not_cancelable") throw notCancelable(r.status);
      // Left the shard (terminal and in D1) since it was read: what D1 says now.
      const again = await getSkMessage(
        c.get("db"),
        { tenantId: p.tenantId, livemode: false },
        id,
        Date.now(),
      );
      throw notCancelable(again?.status ?? v.status);
    }
    const r = await stub.cancelMessage(p.tenantId, id);
    // Cancelled by an earlier (or concurrent) request: /v1 answers only the one that cancelled it 200.
    if (r.outcome === "cancelled" && r.already) throw notCancelable("canceled");
    if (r.outcome === "cancelled") return c.json({ id, status: "canceled" as const }, 200);
    if (r.outcome === "ended") throw notCancelable(r.status === "cancelled" ? "canceled" : r.status);
    // Handed to an origin (or finished) between the read and the cancel: the status observed now.
    const again = await findMessage(c, id);
    throw notCancelable(
      again && (again.status === "queued" || again.status === "scheduled")
        ? "rendered"
        : (again?.status ?? "rendered"),
    );
  });
