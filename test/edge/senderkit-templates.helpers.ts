/**
 * Helpers for the SenderKit template tests: templates made through the real admin routes, SenderKit
 * keys minted through the real admin API, and /v1 calls on the real app.
 */
import { expect } from "vitest";
import { bearer, call, operatorHeaders, uid } from "./helpers.ts";

export interface AdminTemplate {
  id: string;
  slug: string;
  channel: string;
  description: string | null;
  status: "draft" | "active" | "archived";
  current_version: number | null;
  latest_version: number;
  published_at: string | null;
  archived_at: string | null;
  versions: { id: string; version: number; current: boolean; first_published_at: string | null }[];
}

export async function admin(
  tenantId: string,
  path: string,
  method = "GET",
  body?: unknown,
  headers: Record<string, string> = operatorHeaders(),
): Promise<Response> {
  return call(`/api/admin/tenants/${tenantId}/senderkit_templates${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

export async function adminOk<T = AdminTemplate>(
  tenantId: string,
  path: string,
  method = "GET",
  body?: unknown,
  status = 200,
): Promise<T> {
  const res = await admin(tenantId, path, method, body);
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return (JSON.parse(text) as { data: T }).data;
}

export const createSk = (tenantId: string, body: Record<string, unknown>) =>
  adminOk(tenantId, "", "POST", body, 201);

export const addVersion = (tenantId: string, slug: string, body: Record<string, unknown>) =>
  adminOk<{ id: string; version: number; current: boolean }>(
    tenantId,
    `/${slug}/versions`,
    "POST",
    body,
    201,
  );

export const publish = (tenantId: string, slug: string, version?: number) =>
  adminOk(tenantId, `/${slug}/publish`, "POST", version === undefined ? {} : { version });

/** A SenderKit key (`sk_live_…` / `sk_test_…`) minted by the operator. */
export async function skKey(tenantId: string, environment: "live" | "test"): Promise<string> {
  const res = await call(`/api/admin/tenants/${tenantId}/api_keys`, {
    method: "POST",
    headers: operatorHeaders(),
    body: JSON.stringify({ name: `sk-${uid()}`, environment, format: "senderkit" }),
  });
  const text = await res.text();
  expect(res.status, text).toBe(201);
  const key = (JSON.parse(text) as { data: { api_key: string } }).data.api_key;
  expect(key).toMatch(environment === "live" ? /^sk_live_/ : /^sk_test_/);
  return key;
}

/** A /v1 call; returns the status and the parsed JSON body. */
export async function v1(
  key: string | null,
  path: string,
  init: { method?: string; body?: unknown; raw?: string } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await call(`/v1${path}`, {
    method: init.method ?? "GET",
    headers: key ? bearer(key) : { "Content-Type": "application/json" },
    ...(init.raw !== undefined
      ? { body: init.raw }
      : init.body !== undefined
        ? { body: JSON.stringify(init.body) }
        : {}),
  });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}
