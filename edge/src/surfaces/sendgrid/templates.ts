/**
 * /v3/templates and /v3/templates/{id}/versions — SendGrid's Transactional Templates API
 * (docs/api/sendgrid.md#templates): its paths, status codes, JSON shapes and `_metadata` paging,
 * with ScaiSend's permissions (templates.read for reads, templates.write for create, change,
 * activate and duplicate, templates.delete for deletes). Request problems answer in SendGrid's
 * `{"errors":[{message, field, help}]}` shape, an unknown or foreign id SendGrid's 404
 * "resource not found"; credentials and scopes answer `{detail}` like every /v3 route.
 * Quirk kept from SendGrid: without `page_size` the list is the older `{"templates":[…]}` of legacy
 * templates only, unless `generations` asks for dynamic ones.
 */
import { Hono, type Context } from "hono";
import { AppError, type FieldError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import {
  type Cursor,
  type TemplateRow,
  type VersionRow,
  type VersionSummary,
  tenantTemplates,
} from "../../db/templates.ts";
import type { TemplateGeneration } from "../../db/schema.ts";
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import {
  activateVersion,
  createTemplate,
  createVersion,
  duplicateTemplate,
  notFound,
  removeTemplate,
  removeVersion,
  renameTemplateTo,
  updateVersion,
} from "../../services/templates.ts";
import {
  parseTemplateCreate,
  parseTemplateName,
  parseVersion,
  type Parsed,
} from "../../services/templates-input.ts";
import { renderSendGrid } from "../errors.ts";

/** Two 1 MiB contents, 1 MiB of test_data and the rest of a version body fit; more is a 413. */
export const MAX_TEMPLATE_BODY_BYTES = 4 * 1_048_576;
export const MAX_PAGE_SIZE = 200;
/** Requests per second per API key on /v3/templates (docs/api/sendgrid.md#rate-limits). */
export const TEMPLATES_RATE_LIMIT = 100;

const fieldError = (field: string | null, message: string): FieldError => ({ field, message, help: null });
const badRequest = (...errors: FieldError[]) =>
  new AppError("invalid_request", "Bad Request", { fields: errors });

/** SendGrid's `updated_at`: "YYYY-MM-DD HH:MM:SS", UTC. */
export const sendgridTime = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");

function leanVersion(v: VersionSummary) {
  return {
    id: v.id,
    template_id: v.templateId,
    active: v.active,
    name: v.name,
    subject: v.subject,
    updated_at: sendgridTime(v.updatedAt),
    generate_plain_content: v.generatePlainContent,
    editor: v.editor,
  };
}

function fullVersion(v: VersionRow) {
  return {
    ...leanVersion(v),
    html_content: v.htmlContent,
    plain_content: v.plainContent,
    ...(v.preheader !== null ? { preheader: v.preheader } : {}),
    ...(v.testData !== null ? { test_data: v.testData } : {}),
    created_at: sendgridTime(v.createdAt),
  };
}

function templateView<V>(t: TemplateRow, versions: V[]) {
  return {
    id: t.id,
    name: t.name,
    generation: t.generation,
    updated_at: sendgridTime(t.updatedAt),
    created_at: sendgridTime(t.createdAt),
    versions,
  };
}

/** The raw body → JSON, in SendGrid's error shape: 413 over the limit, 415 for invalid UTF-8, 400 if malformed. */
async function readBody(c: Context<AppEnv>): Promise<unknown> {
  const raw = await c.req.arrayBuffer();
  if (raw.byteLength > MAX_TEMPLATE_BODY_BYTES) {
    throw new AppError("payload_too_large", "content too large", {
      fields: [
        fieldError(
          null,
          `The request body may be at most ${MAX_TEMPLATE_BODY_BYTES.toLocaleString("en-US")} bytes.`,
        ),
      ],
    });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(raw);
  } catch {
    throw new AppError("unsupported_media_type", "Invalid UTF8 in request", {
      fields: [fieldError(null, "Invalid UTF8 in request")],
    });
  }
  // @sendgrid/client sends `Content-Type: application/json` with an empty body on bodiless POSTs.
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest(fieldError(null, "Bad Request"));
  }
}

function valid<T>(parsed: Parsed<T>): T {
  if (!parsed.ok) throw badRequest(...parsed.errors);
  return parsed.value;
}

function tenantOf(c: Context<AppEnv>): string {
  const p = c.get("principal");
  if (p.kind === "operator")
    throw new AppError("forbidden", "Templates belong to a tenant: use one of its API keys");
  return p.tenantId;
}

// ------------------------------------------------------------------------------------------- list

interface PageToken {
  direction: "after" | "before";
  at: Cursor;
}

const encodeToken = (t: PageToken) =>
  btoa(`${t.direction === "after" ? "a" : "b"}|${t.at.createdAt}|${t.at.id}`)
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");

function decodeToken(token: string): PageToken | null {
  try {
    const text = atob(token.replace(/-/g, "+").replace(/_/g, "/"));
    const m = /^([ab])\|(\d{1,16})\|([A-Za-z0-9-]{1,64})$/.exec(text);
    if (!m) return null;
    return { direction: m[1] === "a" ? "after" : "before", at: { createdAt: Number(m[2]), id: m[3]! } };
  } catch {
    return null;
  }
}

const LIST_PARAMS = ["generations", "generations[]", "page_size", "page_token"];

interface ListQuery {
  generations: TemplateGeneration[];
  generationsText: string;
  pageSize: number | null;
  token: PageToken | null;
  tokenText: string | null;
}

function parseListQuery(c: Context<AppEnv>): ListQuery {
  const url = new URL(c.req.url);
  const errors: FieldError[] = [];
  for (const key of new Set(url.searchParams.keys())) {
    if (!LIST_PARAMS.includes(key))
      errors.push(fieldError(key, `${key} is not a parameter of this request.`));
  }
  // axios writes arrays as `generations[]=…`; SendGrid's own form is one comma-separated value.
  const raw = [...url.searchParams.getAll("generations"), ...url.searchParams.getAll("generations[]")];
  const wanted = raw.flatMap((v) => v.split(",")).map((v) => v.trim());
  const generations: TemplateGeneration[] = [];
  for (const g of wanted) {
    if (g !== "legacy" && g !== "dynamic") {
      errors.push(fieldError("generations", "generations must be legacy, dynamic or legacy,dynamic."));
      break;
    }
    if (!generations.includes(g)) generations.push(g);
  }
  if (generations.length === 0 && raw.length > 0 && errors.length === 0) {
    errors.push(fieldError("generations", "generations must be legacy, dynamic or legacy,dynamic."));
  }
  if (generations.length === 0) generations.push("legacy"); // SendGrid's default
  generations.sort(); // "dynamic" before "legacy": one spelling in the links

  const sizeText = url.searchParams.get("page_size");
  let pageSize: number | null = null;
  if (sizeText !== null) {
    pageSize = /^\d{1,4}$/.test(sizeText) ? Number(sizeText) : NaN;
    if (!(pageSize >= 1 && pageSize <= MAX_PAGE_SIZE)) {
      errors.push(fieldError("page_size", `page_size must be an integer from 1 to ${MAX_PAGE_SIZE}.`));
    }
  }
  const tokenText = url.searchParams.get("page_token");
  let token: PageToken | null = null;
  if (tokenText !== null && tokenText !== "") {
    token = decodeToken(tokenText);
    if (!token) errors.push(fieldError("page_token", "page_token is not a token this API gave out."));
    else if (sizeText === null)
      errors.push(fieldError("page_size", "page_size is required with page_token."));
  }
  if (errors.length > 0) throw badRequest(...errors);
  return {
    generations,
    generationsText: [...generations].reverse().join(","),
    pageSize,
    token,
    tokenText: token ? tokenText : null,
  };
}

async function withLeanVersions(c: Context<AppEnv>, tenantId: string, rows: TemplateRow[]) {
  const versions = await tenantTemplates(c.get("db"), tenantId).versionSummaries(rows.map((r) => r.id));
  const byTemplate = new Map<string, VersionSummary[]>();
  for (const v of versions) {
    const list = byTemplate.get(v.templateId) ?? [];
    list.push(v);
    byTemplate.set(v.templateId, list);
  }
  return rows.map((t) => templateView(t, (byTemplate.get(t.id) ?? []).map(leanVersion)));
}

async function listRoute(c: Context<AppEnv>) {
  const tenantId = tenantOf(c);
  const db = c.get("db");
  const q = parseListQuery(c);
  if (q.pageSize === null) {
    // The older call (no page_size): every template of the generations, in one answer. A tenant
    // has at most MAX_TEMPLATES, so this is bounded.
    const rows = await tenantTemplates(db, tenantId).listTemplates(q.generations, 1000, null);
    return c.json({ templates: await withLeanVersions(c, tenantId, rows) });
  }
  const limit = q.pageSize;
  let rows: TemplateRow[];
  let hasNext: boolean;
  let hasPrev: boolean;
  const probe = (direction: "after" | "before", at: Cursor) =>
    tenantTemplates(db, tenantId)
      .listTemplates(q.generations, 1, { direction, at })
      .then((r) => r.length > 0);
  const cursorOf = (t: TemplateRow): Cursor => ({ createdAt: t.createdAt, id: t.id });
  if (!q.token || q.token.direction === "after") {
    const got = await tenantTemplates(db, tenantId).listTemplates(q.generations, limit + 1, q.token);
    hasNext = got.length > limit;
    rows = got.slice(0, limit);
    hasPrev = q.token ? await probe("before", rows[0] ? cursorOf(rows[0]) : q.token.at) : false;
  } else {
    const got = await tenantTemplates(db, tenantId).listTemplates(q.generations, limit + 1, q.token);
    hasPrev = got.length > limit;
    rows = hasPrev ? got.slice(1) : got;
    hasNext = await probe("after", rows.length ? cursorOf(rows[rows.length - 1]!) : q.token.at);
  }
  const count = await tenantTemplates(db, tenantId).countTemplatesOf(q.generations);

  const base = new URL(c.req.url);
  const link = (token: string | null) => {
    const u = new URL("/v3/templates", base.origin);
    u.searchParams.set("generations", q.generationsText);
    u.searchParams.set("page_size", String(limit));
    if (token) u.searchParams.set("page_token", token);
    return u.toString();
  };
  const metadata: Record<string, string | number> = { self: link(q.tokenText) };
  if (hasPrev && rows.length > 0)
    metadata.prev = link(encodeToken({ direction: "before", at: cursorOf(rows[0]!) }));
  if (hasNext && rows.length > 0) {
    metadata.next = link(encodeToken({ direction: "after", at: cursorOf(rows[rows.length - 1]!) }));
  }
  metadata.count = count;
  return c.json({ result: await withLeanVersions(c, tenantId, rows), _metadata: metadata });
}

// ----------------------------------------------------------------------------------------- routes

async function fullTemplate(c: Context<AppEnv>, tenantId: string, t: TemplateRow) {
  return templateView(t, (await tenantTemplates(c.get("db"), tenantId).versionsOf(t.id)).map(fullVersion));
}

const read = routePermission();
const write = routePermission();
const remove = routePermission();

export const templatesApi = new Hono<AppEnv>()
  .use(authenticate())
  // Per API key, as GET /v3/messages: template calls are management traffic, never per message.
  .use(rateLimit(RATE_LIMITS.templates))
  .post("/", write, async (c) => {
    const tenantId = tenantOf(c);
    const input = valid(parseTemplateCreate(await readBody(c)));
    const row = await createTemplate(c.get("db"), tenantId, input, Date.now());
    return c.json(templateView(row, []), 201);
  })
  .get("/", read, listRoute)
  .get("/:id", read, async (c) => {
    const tenantId = tenantOf(c);
    const t = await tenantTemplates(c.get("db"), tenantId).getTemplate(c.req.param("id"));
    if (!t) throw notFound();
    return c.json(await fullTemplate(c, tenantId, t));
  })
  .post("/:id", write, async (c) => {
    const tenantId = tenantOf(c);
    const { name } = valid(parseTemplateName(await readBody(c), false));
    const { template, versions } = await duplicateTemplate(
      c.get("db"),
      tenantId,
      c.req.param("id"),
      name,
      Date.now(),
    );
    return c.json(templateView(template, versions.map(fullVersion)), 201);
  })
  .patch("/:id", write, async (c) => {
    const tenantId = tenantOf(c);
    const { name } = valid(parseTemplateName(await readBody(c), true));
    const row = await renameTemplateTo(c.get("db"), tenantId, c.req.param("id"), name!, Date.now());
    return c.json(await fullTemplate(c, tenantId, row));
  })
  .delete("/:id", remove, async (c) => {
    await removeTemplate(c.get("db"), tenantOf(c), c.req.param("id"));
    return c.body(null, 204);
  })
  .get("/:id/versions", read, async (c) => {
    const tenantId = tenantOf(c);
    const t = await tenantTemplates(c.get("db"), tenantId).getTemplate(c.req.param("id"));
    if (!t) throw notFound();
    const versions = await tenantTemplates(c.get("db"), tenantId).versionSummaries([t.id]);
    return c.json({ result: versions.map(leanVersion) });
  })
  .post("/:id/versions", write, async (c) => {
    const tenantId = tenantOf(c);
    const templateId = c.req.param("id");
    const input = valid(parseVersion(await readBody(c), "create", { templateId }));
    const row = await createVersion(c.get("db"), tenantId, templateId, input, Date.now(), c.env.BLOBS);
    return c.json(fullVersion(row), 201);
  })
  .get("/:id/versions/:vid", read, async (c) => {
    const v = await tenantTemplates(c.get("db"), tenantOf(c)).getVersion(
      c.req.param("id"),
      c.req.param("vid"),
    );
    if (!v) throw notFound();
    return c.json(fullVersion(v));
  })
  .patch("/:id/versions/:vid", write, async (c) => {
    const tenantId = tenantOf(c);
    const templateId = c.req.param("id");
    const versionId = c.req.param("vid");
    const input = valid(parseVersion(await readBody(c), "update", { templateId, versionId }));
    const row = await updateVersion(
      c.get("db"),
      tenantId,
      templateId,
      versionId,
      input,
      Date.now(),
      c.env.BLOBS,
    );
    return c.json(fullVersion(row));
  })
  .delete("/:id/versions/:vid", remove, async (c) => {
    await removeVersion(c.get("db"), tenantOf(c), c.req.param("id"), c.req.param("vid"), Date.now());
    return c.body(null, 204);
  })
  .post("/:id/versions/:vid/activate", write, async (c) => {
    const tenantId = tenantOf(c);
    const row = await activateVersion(
      c.get("db"),
      tenantId,
      c.req.param("id"),
      c.req.param("vid"),
      Date.now(),
    );
    return c.json(fullVersion(row));
  });

templatesApi.onError(renderSendGrid);
