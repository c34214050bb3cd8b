/**
 * Dashboard sessions for edge tests: a login made through the operator's admin route, signed in
 * through the real form post, and the pages fetched with its cookie, as a browser would.
 */
import { expect } from "vitest";
import { BASE, call, operatorHeaders, uid } from "./helpers.ts";

export const PASSWORD = "correct horse battery staple";

export interface DashboardLogin {
  id: string;
  email: string;
  tenantId: string;
}

export async function createLogin(
  tenantId: string,
  roles: string[],
  password = PASSWORD,
): Promise<DashboardLogin> {
  const email = `login-${uid()}@example.org`;
  const res = await call(`/api/admin/tenants/${tenantId}/logins`, {
    method: "POST",
    headers: operatorHeaders(),
    body: JSON.stringify({ email, password, roles }),
  });
  const text = await res.text();
  expect(res.status, text).toBe(201);
  return { id: (JSON.parse(text) as { data: { id: string } }).data.id, email, tenantId };
}

/** A tenant role with exactly these permissions (docs/api/admin.md#roles). */
export async function createRole(tenantId: string, permissions: string[]): Promise<string> {
  const name = `role-${uid()}`;
  const res = await call(`/api/admin/roles?tenant_id=${tenantId}`, {
    method: "POST",
    headers: operatorHeaders(),
    body: JSON.stringify({ name, permissions }),
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return name;
}

export function form(fields: Record<string, string | string[]>): URLSearchParams {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const one of [v].flat()) body.append(k, one);
  return body;
}

/** A signed-in browser: its cookie and the CSRF token of its last page. */
export class Browser {
  cookie = "";
  csrf = "";

  async get(path: string): Promise<{ status: number; text: string; headers: Headers }> {
    const res = await call(path, { headers: this.cookie ? { Cookie: this.cookie } : {}, redirect: "manual" });
    const text = await res.text();
    const token = /name="_csrf" value="([0-9a-f]+)"/.exec(text)?.[1];
    if (token) this.csrf = token;
    return { status: res.status, text, headers: res.headers };
  }

  /** A same-origin form post (Origin set as a browser sets it) carrying this page's CSRF token. */
  async post(
    path: string,
    fields: Record<string, string | string[]> = {},
    opts: { csrf?: string | null; origin?: string | null } = {},
  ): Promise<{ status: number; text: string; headers: Headers }> {
    const csrf = opts.csrf === undefined ? this.csrf : opts.csrf;
    const headers: Record<string, string> = { "Content-Type": "application/x-www-form-urlencoded" };
    if (this.cookie) headers.Cookie = this.cookie;
    const origin = opts.origin === undefined ? BASE : opts.origin;
    if (origin !== null) headers.Origin = origin;
    const res = await call(path, {
      method: "POST",
      headers,
      body: form(csrf === null ? fields : { ...fields, _csrf: csrf }),
      redirect: "manual",
    });
    const setCookie = res.headers.get("set-cookie");
    if (setCookie) {
      const value = /^scaisend_session=([^;]*)/.exec(setCookie)?.[1] ?? "";
      this.cookie = value ? `scaisend_session=${value}` : "";
    }
    return { status: res.status, text: await res.text(), headers: res.headers };
  }

  static async signIn(email: string, password = PASSWORD): Promise<Browser> {
    const b = new Browser();
    const res = await b.post("/app/login", { email, password }, { csrf: null });
    expect(res.status, res.text).toBe(303);
    expect(b.cookie).toMatch(/^scaisend_session=[0-9a-f]{64}$/);
    await b.get("/app/messages");
    return b;
  }
}
