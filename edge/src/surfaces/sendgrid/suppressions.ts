/**
 * /v3/suppression/{bounces,blocks,invalid_emails,spam_reports,unsubscribes} — SendGrid's suppression
 * lists (docs/api/sendgrid.md#suppressions): bare JSON arrays, `created` in unix seconds, 204 on
 * deletes; `delete_all` or `emails` in the DELETE body (or `?delete_all=true`, ScaiSend's form).
 * ScaiSend's additions: `POST` adds to bounces, blocks, invalid_emails and spam_reports (manual
 * adds, migrations), `POST …/import` takes a CSV and `GET …/export` gives one. The global
 * unsubscribe list is read here; it is changed through /v3/asm/suppressions/global (asm.ts), as at
 * SendGrid. An address not on the list answers 404 on GET and DELETE by address.
 */
import { Hono, type Context } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { SUPPRESSION_LISTS, type SuppressionList } from "../../db/schema.ts";
import {
  type ListQuery,
  type NewSuppression,
  type SuppressionRow,
  tenantSuppressions,
} from "../../db/suppressions.ts";
import { authenticate } from "../../middleware/auth.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { renderSendGrid } from "../errors.ts";
import { importCsv, toCsv } from "./suppression-csv.ts";
import {
  badRequest,
  emailAt,
  emailList,
  fieldError,
  intParam,
  isObject,
  notFound,
  onlyKeys,
  pathEmail,
  queryOf,
  readCsv,
  readJson,
  readScope,
  SUPPRESSIONS_RATE_LIMIT,
  tenantOf,
  unixSeconds,
  writeScope,
} from "./suppression-http.ts";

/** The calling tenant's suppressions (db/suppressions.ts): every query is bound to it. */
const suppressionsOf = (c: Context<AppEnv>) => tenantSuppressions(c.get("db"), tenantOf(c));

export const MAX_LIST_LIMIT = 500;
export const DEFAULT_LIST_LIMIT = 50;
const EXPORT_PAGE = 5_000;

/** The JSON item of each list, as SendGrid shows it (bounces add ScaiSend's `bounce_type`). */
export function listItem(list: SuppressionList, r: SuppressionRow): Record<string, unknown> {
  const base = { created: unixSeconds(r.createdAt), email: r.email };
  switch (list) {
    case "bounces":
      return { ...base, reason: r.reason ?? "", status: r.status ?? "", bounce_type: r.bounceType ?? "hard" };
    case "blocks":
      return { ...base, reason: r.reason ?? "", status: r.status ?? "" };
    case "invalid_emails":
      return { ...base, reason: r.reason ?? "" };
    case "spam_reports":
      return { ...base, ip: r.ip ?? "" };
    case "unsubscribes":
      return base;
  }
}

function listOf(c: Context<AppEnv>): SuppressionList {
  const name = c.req.param("list");
  if (!(SUPPRESSION_LISTS as readonly string[]).includes(name ?? "")) throw notFound();
  return name as SuppressionList;
}

function writableListOf(c: Context<AppEnv>): Exclude<SuppressionList, "unsubscribes"> {
  const list = listOf(c);
  if (list === "unsubscribes")
    throw new AppError("method_not_allowed", "method not allowed", {
      fields: [
        fieldError(
          null,
          "The global unsubscribe list is changed through /v3/asm/suppressions/global, as at SendGrid.",
        ),
      ],
    });
  return list;
}

/** start_time / end_time (unix seconds, inclusive) and `email` (a prefix, `%` a wildcard). */
function filtersOf(q: ReturnType<typeof queryOf>): Omit<ListQuery, "limit" | "offset"> {
  const start = intParam(q.one("start_time"), "start_time", 0, 253_402_300_799);
  const end = intParam(q.one("end_time"), "end_time", 0, 253_402_300_799);
  if (start !== undefined && end !== undefined && end < start)
    throw badRequest(fieldError("end_time", "end_time must not be before start_time."));
  const email = q.one("email");
  if (email !== undefined && (email.length === 0 || email.length > 320))
    throw badRequest(fieldError("email", "email must be 1 to 320 characters."));
  return {
    ...(start !== undefined ? { startTime: start * 1000 } : {}),
    // Inclusive to the end of that second.
    ...(end !== undefined ? { endTime: end * 1000 + 999 } : {}),
    ...(email !== undefined ? { emailPrefix: email } : {}),
  };
}

/** The fields POST takes per list (ScaiSend's manual add), and what each becomes. */
export const ADD_FIELDS: Record<Exclude<SuppressionList, "unsubscribes">, readonly string[]> = {
  bounces: ["email", "bounce_type", "reason", "status"],
  blocks: ["email", "reason", "status"],
  invalid_emails: ["email", "reason"],
  spam_reports: ["email", "ip"],
};

function optionalText(body: Record<string, unknown>, key: string, max: number): string | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "string" || v.length > max)
    throw badRequest(fieldError(key, `${key} must be a string of at most ${max} characters.`));
  return v;
}

/**
 * The body of ScaiSend's manual add (`POST /v3/suppression/{list}`, not for unsubscribes) as the entry
 * to store, or SendGrid's 400 naming the field; the dashboard's "Add an address" calls this too.
 */
export function parseManualAdd(
  list: Exclude<SuppressionList, "unsubscribes">,
  body: unknown,
  now: number,
): NewSuppression {
  if (!isObject(body)) throw badRequest(fieldError(null, "The body must be a JSON object."));
  onlyKeys(body, ADD_FIELDS[list]);
  const email = emailAt(body["email"], "email");
  let bounceType: string | null = null;
  if (list === "bounces") {
    bounceType = body["bounce_type"] === undefined ? "hard" : (body["bounce_type"] as string);
    if (!["hard", "soft", "block"].includes(bounceType))
      throw badRequest(fieldError("bounce_type", 'bounce_type must be "hard", "soft" or "block".'));
  }
  const status = optionalText(body, "status", 16);
  if (status !== null && !/^[245]\.\d{1,3}\.\d{1,3}$/.test(status))
    throw badRequest(fieldError("status", 'status must be an enhanced status code such as "5.1.1".'));
  return {
    email,
    createdAt: now,
    reason: optionalText(body, "reason", 1000),
    status,
    bounceType,
    ip: optionalText(body, "ip", 45),
  };
}

export const suppressionsApi = new Hono<AppEnv>()
  .use(authenticate())
  .use(rateLimit(RATE_LIMITS.suppressions))
  .get("/:list", readScope, async (c) => {
    const list = listOf(c);
    const q = queryOf(c, ["start_time", "end_time", "limit", "offset", "email"]);
    const rows = await suppressionsOf(c).listSuppressions(list, {
      limit: intParam(q.one("limit"), "limit", 1, MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT),
      offset: intParam(q.one("offset"), "offset", 0, 10_000_000, 0),
      ...filtersOf(q),
    });
    return c.json(rows.map((r) => listItem(list, r)));
  })
  .get("/:list/export", readScope, async (c) => {
    const list = listOf(c);
    const tenantId = tenantOf(c);
    const filters = filtersOf(queryOf(c, ["start_time", "end_time", "email"]));
    const db = c.get("db");
    const encoder = new TextEncoder();
    let after: { createdAt: number; email: string } | null = null;
    let first = true;
    // Pulled page by page as the client reads: a long list is never held whole in memory.
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const rows = await tenantSuppressions(db, tenantId).exportPage(list, after, EXPORT_PAGE, filters);
        controller.enqueue(encoder.encode(toCsv(list, rows, first)));
        first = false;
        if (rows.length < EXPORT_PAGE) controller.close();
        else after = { createdAt: rows.at(-1)!.createdAt, email: rows.at(-1)!.email };
      },
    });
    return new Response(body, {
      headers: {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": `attachment; filename="${list}.csv"`,
      },
    });
  })
  .post("/:list/import", writeScope, async (c) => {
    const list = listOf(c);
    const result = await importCsv(c.get("db"), tenantOf(c), list, await readCsv(c), Date.now());
    return c.json(result);
  })
  .get("/:list/:email", readScope, async (c) => {
    const list = listOf(c);
    const row = await suppressionsOf(c).getSuppression(list, pathEmail(c));
    if (!row) throw notFound();
    return c.json([listItem(list, row)]);
  })
  .post("/:list", writeScope, async (c) => {
    const list = writableListOf(c);
    const entry = parseManualAdd(list, await readJson(c), Date.now());
    await suppressionsOf(c).addSuppressions(list, [entry]);
    const row = await suppressionsOf(c).getSuppression(list, entry.email);
    return c.json(listItem(list, row!), 201);
  })
  .delete("/:list", writeScope, async (c) => {
    const list = writableListOf(c);
    const q = queryOf(c, ["delete_all"]);
    const queryAll = q.one("delete_all");
    if (queryAll !== undefined && queryAll !== "true")
      throw badRequest(fieldError("delete_all", "delete_all must be true."));
    const body = await readJson(c);
    if (body !== undefined && !isObject(body))
      throw badRequest(fieldError(null, "The body must be a JSON object."));
    if (body) onlyKeys(body, ["delete_all", "emails"]);
    const all = queryAll === "true" || body?.["delete_all"] === true;
    if (body?.["delete_all"] !== undefined && body["delete_all"] !== true)
      throw badRequest(fieldError("delete_all", "delete_all must be true."));
    const hasEmails = body?.["emails"] !== undefined;
    if (all && hasEmails) throw badRequest(fieldError(null, "Give delete_all or emails, not both."));
    if (!all && !hasEmails)
      throw badRequest(
        fieldError(null, "Give delete_all: true to delete the whole list, or emails to delete some."),
      );
    if (all) await suppressionsOf(c).deleteAllSuppressions(list);
    else await suppressionsOf(c).deleteSuppressions(list, emailList(body!["emails"], "emails"));
    return c.body(null, 204);
  })
  .delete("/:list/:email", writeScope, async (c) => {
    const list = writableListOf(c);
    const n = await suppressionsOf(c).deleteSuppressions(list, [pathEmail(c)]);
    if (n === 0) throw notFound();
    return c.body(null, 204);
  });

suppressionsApi.onError(renderSendGrid);
