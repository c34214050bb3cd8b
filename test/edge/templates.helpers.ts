/**
 * Shared by the templates tests: a tenant with keys of chosen scopes, and JSON calls that return
 * status and parsed body together (so a failed expectation shows the body).
 */
import type { Permission } from "../../shared/permissions.ts";
import { bearer, call, createApiKey, createTenant } from "./helpers.ts";

export const ALL_TEMPLATE_SCOPES: Permission[] = ["templates.read", "templates.write", "templates.delete"];

export interface TemplatesTenant {
  tenantId: string;
  key: string;
}

export async function templatesTenant(scopes: Permission[] = ALL_TEMPLATE_SCOPES): Promise<TemplatesTenant> {
  const tenantId = await createTenant();
  const { key } = await createApiKey(tenantId, { environment: "live", scopes });
  return { tenantId, key };
}

export interface JsonAnswer {
  status: number;
  /** Parsed JSON; each test asserts the shape it reads. */
  body: any;
  text: string;
}

export async function api(key: string, method: string, path: string, body?: unknown): Promise<JsonAnswer> {
  const res = await call(path, {
    method,
    headers: bearer(key),
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, text };
}

export const NOT_FOUND = { errors: [{ message: "resource not found", field: null, help: null }] };

/** SendGrid's `updated_at` form. */
export const SENDGRID_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const DYNAMIC_ID = /^d-[0-9a-f]{32}$/;

export async function makeTemplate(
  key: string,
  name: string,
  generation: "legacy" | "dynamic" = "dynamic",
): Promise<{ id: string; name: string; generation: string }> {
  const r = await api(key, "POST", "/v3/templates", { name, generation });
  if (r.status !== 201) throw new Error(`create template: ${r.status} ${r.text}`);
  return r.body;
}

export async function makeVersion(
  key: string,
  templateId: string,
  fields: Record<string, unknown>,
): Promise<Record<string, any>> {
  const r = await api(key, "POST", `/v3/templates/${templateId}/versions`, {
    subject: "Hello {{name}}",
    html_content: "<p>Hello {{name}}</p>",
    ...fields,
  });
  if (r.status !== 201) throw new Error(`create version: ${r.status} ${r.text}`);
  return r.body;
}
