/**
 * /v3/asm — SendGrid's unsubscribe groups (Advanced Suppression Manager, docs/api/sendgrid.md#unsubscribe-groups):
 * group CRUD (`PATCH` answers 201, as SendGrid's), each group's unsubscribes, every group unsubscribe
 * of an address, and the global unsubscribe list (`GET …/global/{email}` is `{}` when the address
 * is not on it, still 200). Group ids are SendGrid-style integers; another tenant's id is a 404
 * exactly like a made-up one.
 */
import { Hono, type Context } from "hono";
import type { AppEnv } from "../../context.ts";
import type { Db } from "../../db/client.ts";
import { type AsmGroupRow, type GroupWithCount, tenantSuppressions } from "../../db/suppressions.ts";
import { authenticate } from "../../middleware/auth.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { renderSendGrid } from "../errors.ts";
import {
  badRequest,
  fieldError,
  intParam,
  isObject,
  notFound,
  onlyKeys,
  pathEmail,
  queryOf,
  readJson,
  readScope,
  recipientEmails,
  SUPPRESSIONS_RATE_LIMIT,
  tenantOf,
  unixSeconds,
  writeScope,
} from "./suppression-http.ts";

/** The calling tenant's suppressions (db/suppressions.ts): every query is bound to it. */
const suppressionsOf = (c: Context<AppEnv>) => tenantSuppressions(c.get("db"), tenantOf(c));

/** SendGrid's limits: 200 groups per account, names ≤ 30 and descriptions ≤ 100 characters. */
export const MAX_GROUPS = 200;
export const MAX_GROUP_NAME = 30;
export const MAX_GROUP_DESCRIPTION = 100;
/** Addresses per page of a group's (or every group's) unsubscribes; `limit`/`offset` page further. */
export const MAX_GROUP_PAGE = 10_000;

const groupBody = (g: AsmGroupRow) => ({
  id: g.id,
  name: g.name,
  description: g.description,
  is_default: g.isDefault,
});
const groupView = (g: GroupWithCount) => ({
  id: g.id,
  name: g.name,
  description: g.description,
  // Not tracked: SendGrid's field, always null here (docs/api/sendgrid.md#unsubscribe-groups).
  last_email_sent_at: null,
  is_default: g.isDefault,
  unsubscribes: g.unsubscribes,
});

function groupIdOf(c: Context<AppEnv>): number {
  const raw = c.req.param("id") ?? "";
  if (!/^\d{1,15}$/.test(raw)) throw notFound();
  return Number(raw);
}

async function ownGroup(c: Context<AppEnv>): Promise<AsmGroupRow> {
  const g = await suppressionsOf(c).getGroup(groupIdOf(c));
  if (!g) throw notFound();
  return g;
}

interface GroupInput {
  name?: string;
  description?: string;
  isDefault?: boolean;
}

function parseGroup(body: unknown, creating: boolean): GroupInput {
  if (!isObject(body)) throw badRequest(fieldError(null, "The body must be a JSON object."));
  onlyKeys(body, ["name", "description", "is_default"]);
  const out: GroupInput = {};
  const name = body["name"];
  if (name !== undefined || creating) {
    if (typeof name !== "string" || name.trim() === "")
      throw badRequest(fieldError("name", "name is required and must be a non-empty string."));
    if (name.length > MAX_GROUP_NAME)
      throw badRequest(fieldError("name", `name may be at most ${MAX_GROUP_NAME} characters.`));
    out.name = name;
  }
  const description = body["description"];
  if (description !== undefined) {
    if (typeof description !== "string" || description.length > MAX_GROUP_DESCRIPTION)
      throw badRequest(
        fieldError(
          "description",
          `description must be a string of at most ${MAX_GROUP_DESCRIPTION} characters.`,
        ),
      );
    out.description = description;
  } else if (creating) out.description = "";
  const isDefault = body["is_default"];
  if (isDefault !== undefined) {
    if (typeof isDefault !== "boolean")
      throw badRequest(fieldError("is_default", "is_default must be a boolean."));
    out.isDefault = isDefault;
  } else if (creating) out.isDefault = false;
  return out;
}

const nameTaken = () => badRequest(fieldError("name", "Another group with this name already exists."));
const isUniqueViolation = (err: unknown) =>
  /UNIQUE constraint failed/i.test(String((err as Error)?.message ?? err));

function pageOf(c: Context<AppEnv>) {
  const q = queryOf(c, ["limit", "offset"]);
  return {
    limit: intParam(q.one("limit"), "limit", 1, MAX_GROUP_PAGE, MAX_GROUP_PAGE),
    offset: intParam(q.one("offset"), "offset", 0, 10_000_000, 0),
  };
}

/**
 * Creates a group from a JSON body as `POST /v3/asm/groups` takes it (the dashboard calls this too):
 * SendGrid's 400s for a bad field, a name the tenant already uses, or the 201st group.
 */
export async function createAsmGroup(
  db: Db,
  tenantId: string,
  body: unknown,
  now: number,
): Promise<AsmGroupRow> {
  const input = parseGroup(body, true) as Required<GroupInput>;
  const repo = tenantSuppressions(db, tenantId);
  if ((await repo.countGroups()) >= MAX_GROUPS)
    throw badRequest(fieldError(null, `An account may have at most ${MAX_GROUPS} unsubscribe groups.`));
  if (await repo.groupNameTaken(input.name)) throw nameTaken();
  try {
    return await repo.createGroup(input, now);
  } catch (err) {
    if (isUniqueViolation(err)) throw nameTaken();
    throw err;
  }
}

/**
 * Changes one of the tenant's groups (`g`, looked up by the caller) as `PATCH /v3/asm/groups/{id}`
 * does: any of name, description, is_default. The dashboard calls this too.
 */
export async function updateAsmGroup(
  db: Db,
  tenantId: string,
  g: AsmGroupRow,
  body: unknown,
): Promise<AsmGroupRow> {
  const repo = tenantSuppressions(db, tenantId);
  const patch = parseGroup(body, false);
  if (patch.name !== undefined && (await repo.groupNameTaken(patch.name, g.id))) throw nameTaken();
  if (Object.keys(patch).length === 0) return g;
  try {
    const row = await repo.updateGroup(g.id, patch);
    if (!row) throw notFound();
    return row;
  } catch (err) {
    if (isUniqueViolation(err)) throw nameTaken();
    throw err;
  }
}

export const asmApi = new Hono<AppEnv>()
  .use(authenticate())
  .use(rateLimit(RATE_LIMITS.asm))
  // ----- groups
  .post("/groups", writeScope, async (c) => {
    const tenantId = tenantOf(c);
    const g = await createAsmGroup(c.get("db"), tenantId, await readJson(c), Date.now());
    return c.json(groupBody(g), 201);
  })
  .get("/groups", readScope, async (c) => {
    const q = queryOf(c, ["id"], ["id"]);
    const ids = q.all("id").map((v) => intParam(v, "id", 1, Number.MAX_SAFE_INTEGER)!);
    if (ids.length > 90) throw badRequest(fieldError("id", "At most 90 ids per request."));
    const groups = await suppressionsOf(c).listGroups(ids.length > 0 ? ids : undefined);
    return c.json(groups.map(groupView));
  })
  .get("/groups/:id", readScope, async (c) => {
    const g = await suppressionsOf(c).getGroupWithCount(groupIdOf(c));
    if (!g) throw notFound();
    return c.json(groupView(g));
  })
  .patch("/groups/:id", writeScope, async (c) => {
    const tenantId = tenantOf(c);
    const g = await ownGroup(c);
    const updated = await updateAsmGroup(c.get("db"), tenantId, g, await readJson(c));
    // 201, as SendGrid answers this PATCH.
    return c.json(groupBody(updated), 201);
  })
  .delete("/groups/:id", writeScope, async (c) => {
    if (!(await suppressionsOf(c).deleteGroup(groupIdOf(c)))) throw notFound();
    return c.body(null, 204);
  })
  // ----- a group's unsubscribes
  .post("/groups/:id/suppressions", writeScope, async (c) => {
    const g = await ownGroup(c);
    const emails = recipientEmails(await readJson(c));
    if (!(await suppressionsOf(c).addGroupSuppressions(g.id, emails, Date.now()))) throw notFound();
    return c.json({ recipient_emails: [...new Set(emails)] }, 201);
  })
  .get("/groups/:id/suppressions", readScope, async (c) => {
    const g = await ownGroup(c);
    return c.json(await suppressionsOf(c).listGroupSuppressions(g.id, pageOf(c)));
  })
  .post("/groups/:id/suppressions/search", readScope, async (c) => {
    const g = await ownGroup(c);
    const emails = recipientEmails(await readJson(c));
    return c.json(await suppressionsOf(c).searchGroupSuppressions(g.id, emails));
  })
  .delete("/groups/:id/suppressions/:email", writeScope, async (c) => {
    const g = await ownGroup(c);
    if (!(await suppressionsOf(c).resubscribeToGroup(g.id, pathEmail(c)))) throw notFound();
    return c.body(null, 204);
  })
  // ----- global unsubscribes (before /suppressions/:email)
  .post("/suppressions/global", writeScope, async (c) => {
    const emails = [...new Set(recipientEmails(await readJson(c)))];
    await suppressionsOf(c).unsubscribeGloballyMany(emails, Date.now());
    return c.json({ recipient_emails: emails }, 201);
  })
  .get("/suppressions/global/:email", readScope, async (c) => {
    const email = pathEmail(c);
    const row = await suppressionsOf(c).getSuppression("unsubscribes", email);
    // 200 either way, as SendGrid: `{}` says "not unsubscribed".
    return c.json(row ? { recipient_email: row.email } : {});
  })
  .delete("/suppressions/global/:email", writeScope, async (c) => {
    const n = await suppressionsOf(c).deleteSuppressions("unsubscribes", [pathEmail(c)]);
    if (n === 0) throw notFound();
    return c.body(null, 204);
  })
  // ----- every group's unsubscribes
  .get("/suppressions", readScope, async (c) => {
    const rows = await suppressionsOf(c).listAllGroupSuppressions(pageOf(c));
    return c.json(
      rows.map((r) => ({
        email: r.email,
        group_id: r.groupId,
        group_name: r.groupName,
        created_at: unixSeconds(r.createdAt),
      })),
    );
  })
  .get("/suppressions/:email", readScope, async (c) => {
    const tenantId = tenantOf(c);
    const email = pathEmail(c);
    const [groups, suppressed] = await Promise.all([
      tenantSuppressions(c.get("db"), tenantId).listGroups(),
      tenantSuppressions(c.get("db"), tenantId).groupSuppressionsOf(email),
    ]);
    const on = new Set(suppressed);
    return c.json({
      suppressions: groups.map((g) => ({
        id: g.id,
        name: g.name,
        description: g.description,
        is_default: g.isDefault,
        suppressed: on.has(g.id),
      })),
    });
  });

asmApi.onError(renderSendGrid);
