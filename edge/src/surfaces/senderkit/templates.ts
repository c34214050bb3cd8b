/**
 * SenderKit's template reads and render (docs/api/senderkit.md#templates), mounted at /v1/templates
 * behind the SenderKit key middleware (the tenant is the key's workspace), on the read budget:
 *   GET  /templates                 {data: TemplateSummary[]}, by slug, archived ones included
 *   GET  /templates/{slug}          TemplateDetail: currentVersion is the published version or null
 *   POST /templates/{slug}/render   {channel, output, missing}: the published version rendered with
 *                                   `vars`; `version` (an addition) renders that version instead
 * Errors in SenderKit's shape: 404 template_not_found (also for another workspace's slug),
 * 404 template_not_published, 422 template_archived, 400 invalid_request.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../../context.ts";
import { type SkTemplateRow, tenantSkTemplates } from "../../db/sk-templates.ts";
import { isoSeconds } from "../../lib/time.ts";
import { skStatusOf } from "../../services/senderkit/template-admin.ts";
import { normalizeSlug, resolveSkTemplate, SLUG_PATTERN } from "../../services/senderkit/template-render.ts";
import { skPrincipal } from "./auth.ts";
import { readBudget } from "./budgets.ts";
import { invalidRequest, SkError, zodIssues } from "./errors.ts";

/** A render body is vars and an optional pin: 1 MB is far beyond any template's data. */
const MAX_RENDER_BODY_BYTES = 1_048_576;

const RenderBody = z.strictObject({
  vars: z.record(z.string(), z.unknown()).optional(),
  version: z.number().int().min(1).optional(),
});

const iso = (ms: number) => isoSeconds(ms)!;

function summary(t: SkTemplateRow) {
  return {
    slug: t.slug,
    channel: t.channel,
    description: t.description,
    status: skStatusOf(t),
    updatedAt: iso(t.updatedAt),
  };
}

const notFound = (slug: string) => new SkError(404, "template_not_found", `No template "${slug}"`);

async function readRenderBody(req: Request): Promise<z.infer<typeof RenderBody>> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > MAX_RENDER_BODY_BYTES)
    throw invalidRequest(`The body is larger than ${MAX_RENDER_BODY_BYTES} bytes`);
  const text = await req.text();
  if (text.length > MAX_RENDER_BODY_BYTES)
    throw invalidRequest(`The body is larger than ${MAX_RENDER_BODY_BYTES} bytes`);
  let data: unknown = {};
  if (text.trim() !== "") {
    try {
      data = JSON.parse(text);
    } catch {
      throw invalidRequest("Malformed JSON body");
    }
  }
  const r = RenderBody.safeParse(data);
  if (!r.success) throw invalidRequest("Invalid request body", zodIssues(r.error));
  return r.data;
}

export const skTemplatesApi = new Hono<AppEnv>()
  .get("/", readBudget, async (c) => {
    const p = skPrincipal(c);
    const rows = await tenantSkTemplates(c.get("db"), p.tenantId).listSkTemplates();
    return c.json({ data: rows.map(summary) });
  })
  .get("/:slug", readBudget, async (c) => {
    const p = skPrincipal(c);
    const raw = c.req.param("slug");
    const slug = normalizeSlug(raw);
    const found = SLUG_PATTERN.test(slug)
      ? await tenantSkTemplates(c.get("db"), p.tenantId).resolveSkVersion(slug, { mode: "live" })
      : undefined;
    if (!found) throw notFound(raw);
    const { template: t, version: v } = found;
    return c.json({
      ...summary(t),
      currentVersion: v
        ? {
            versionNumber: v.versionNumber,
            variables: v.variables,
            publishedAt: t.publishedAt === null ? null : iso(t.publishedAt),
          }
        : null,
    });
  })
  .post("/:slug/render", readBudget, async (c) => {
    const p = skPrincipal(c);
    const body = await readRenderBody(c.req.raw);
    const r = await resolveSkTemplate(c.get("db"), {
      tenantId: p.tenantId,
      mode: p.environment,
      slug: c.req.param("slug"),
      ...(body.version !== undefined ? { version: body.version } : {}),
      vars: body.vars ?? {},
      purpose: "render",
    });
    if (!r.ok) throw new SkError(r.status, r.code, r.message);
    return c.json({ channel: r.template.channel, output: r.output, missing: r.missing });
  });
