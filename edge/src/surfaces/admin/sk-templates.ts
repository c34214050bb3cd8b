/**
 * /api/admin/tenants/{id}/senderkit_templates (docs/api/admin.md#senderkit-templates): create and
 * manage a tenant's SenderKit templates, which `/v1` reads, renders and sends. The operator token,
 * or an API key of the tenant itself with `templates.read` (reads), `templates.write` (create,
 * versions, publish, rollback, unarchive, description) or `templates.delete` (archive: SenderKit's
 * delete). Another tenant's id is 404, like one that does not exist. `{"data": …}` bodies.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { type SkTemplateRow, tenantSkTemplates } from "../../db/sk-templates.ts";
import type { SkVersionRow, SkVersionSummary } from "../../db/sk-templates.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { routePermission } from "../route-permissions.ts";
import {
  addSkVersion,
  archiveSkTemplate,
  createSkTemplate,
  describeSkTemplate,
  publishSkVersion,
  requireSkTemplate,
  requireSkVersion,
  rollbackSkVersion,
  skStatusOf,
} from "../../services/senderkit/template-admin.ts";
import { SK_CHANNELS } from "../../services/senderkit/template-content.ts";
import { setTemplateConnection } from "../../services/provider-connections.ts";
import { requireTenant } from "../../services/tenants.ts";
import { parseInput, readJson } from "../validate.ts";

const description = z.string().max(1000).nullable();
const CreateBody = z.strictObject({
  slug: z.string().min(1).max(128),
  channel: z.enum(SK_CHANNELS),
  description: description.optional(),
  content: z.unknown().optional(),
  variables: z.unknown().optional(),
  publish: z.boolean().default(false),
});
const VersionBody = z.strictObject({
  content: z.unknown().refine((v) => v !== undefined, "Required"),
  variables: z.unknown().optional(),
  publish: z.boolean().default(false),
});
const PointerBody = z.strictObject({ version: z.number().int().min(1).optional() });
// provider_connection_id: the connection its live sends use instead of the channel's default; null: the default.
const PatchBody = z
  .strictObject({
    description: description.optional(),
    provider_connection_id: z.string().min(1).max(64).nullable().optional(),
  })
  .refine((b) => Object.keys(b).length > 0, "description or provider_connection_id is required");
const Empty = z.strictObject({});

async function tenantOf(c: Context<AppEnv>): Promise<string> {
  const id = c.req.param("id") ?? "";
  const p = c.get("principal");
  if (p.kind !== "operator" && p.tenantId !== id) throw new AppError("not_found", "Tenant not found");
  return (await requireTenant(c.get("db"), id)).id;
}

function templateView(t: SkTemplateRow, currentNumber: number | null) {
  return {
    id: t.id,
    slug: t.slug,
    channel: t.channel,
    description: t.description,
    status: skStatusOf(t),
    current_version: currentNumber,
    latest_version: t.latestVersion,
    provider_connection_id: t.providerConnectionId ?? null,
    published_at: iso(t.publishedAt),
    archived_at: iso(t.archivedAt),
    created_at: iso(t.createdAt),
    updated_at: iso(t.updatedAt),
  };
}

function versionView(t: SkTemplateRow, v: SkVersionSummary | SkVersionRow) {
  return {
    id: v.id,
    version: v.versionNumber,
    current: t.currentVersionId === v.id,
    variables: v.variables,
    first_published_at: iso(v.firstPublishedAt),
    created_at: iso(v.createdAt),
    ...("content" in v ? { content: v.content } : {}),
  };
}

/** The template with its versions (no content), as GET and every write answer it. */
async function detail(c: Context<AppEnv>, t: SkTemplateRow) {
  const versions = await tenantSkTemplates(c.get("db"), t.tenantId).skVersionSummaries(t.id);
  const current = versions.find((v) => v.id === t.currentVersionId)?.versionNumber ?? null;
  return { ...templateView(t, current), versions: versions.map((v) => versionView(t, v)) };
}

const slugOf = (c: Context<AppEnv>) => c.req.param("slug") ?? "";

export const skTemplatesAdminApi = new Hono<AppEnv>()
  .get("/", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const rows = await tenantSkTemplates(c.get("db"), tenantId).listSkTemplatesWithCurrent();
    return c.json({ data: rows.map((r) => templateView(r.template, r.currentNumber)) });
  })
  .post("/", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const body = parseInput(CreateBody, await readJson(c.req.raw), "body");
    const t = await createSkTemplate(c.get("db"), tenantId, body, Date.now());
    return c.json({ data: await detail(c, t) }, 201);
  })
  .get("/:slug", routePermission(), async (c) => {
    const t = await requireSkTemplate(c.get("db"), await tenantOf(c), slugOf(c));
    return c.json({ data: await detail(c, t) });
  })
  .patch("/:slug", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const body = parseInput(PatchBody, await readJson(c.req.raw), "body");
    const now = Date.now();
    let t = await requireSkTemplate(c.get("db"), tenantId, slugOf(c));
    if (body.provider_connection_id !== undefined) {
      await setTemplateConnection(c.get("db"), tenantId, t, body.provider_connection_id, now);
    }
    if (body.description !== undefined)
      t = await describeSkTemplate(c.get("db"), tenantId, t.slug, body.description, now);
    else t = await requireSkTemplate(c.get("db"), tenantId, t.slug);
    return c.json({ data: await detail(c, t) });
  })
  .post("/:slug/versions", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const body = parseInput(VersionBody, await readJson(c.req.raw), "body");
    const { template, version } = await addSkVersion(c.get("db"), tenantId, slugOf(c), body, Date.now());
    return c.json({ data: versionView(template, version) }, 201);
  })
  .get("/:slug/versions/:version", routePermission(), async (c) => {
    const t = await requireSkTemplate(c.get("db"), await tenantOf(c), slugOf(c));
    const raw = c.req.param("version");
    const v = await requireSkVersion(c.get("db"), t, /^\d{1,9}$/.test(raw) ? Number(raw) : NaN);
    return c.json({ data: versionView(t, v) });
  })
  .post("/:slug/publish", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const body = parseInput(PointerBody, await readJson(c.req.raw), "body");
    const t = await publishSkVersion(c.get("db"), tenantId, slugOf(c), body.version, Date.now());
    return c.json({ data: await detail(c, t) });
  })
  .post("/:slug/rollback", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const body = parseInput(PointerBody, await readJson(c.req.raw), "body");
    const t = await rollbackSkVersion(c.get("db"), tenantId, slugOf(c), body.version, Date.now());
    return c.json({ data: await detail(c, t) });
  })
  .post("/:slug/archive", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    parseInput(Empty, await readJson(c.req.raw), "body");
    const t = await archiveSkTemplate(c.get("db"), tenantId, slugOf(c), true, Date.now());
    return c.json({ data: await detail(c, t) });
  })
  .post("/:slug/unarchive", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    parseInput(Empty, await readJson(c.req.raw), "body");
    const t = await archiveSkTemplate(c.get("db"), tenantId, slugOf(c), false, Date.now());
    return c.json({ data: await detail(c, t) });
  });
