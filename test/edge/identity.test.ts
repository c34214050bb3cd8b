/**
 * Identity in the admin API (docs/api/admin.md#partners … #group-mappings) on the real app and D1,
 * with real JWTs from the local OIDC issuer (test/helpers/oidc-issuer.ts) served to the edge's JWKS
 * cache as its outbound fetch: roles CRUD and assignment, group mappings → permissions, tenant
 * suspension within the auth cache window, partner-level visibility, and API keys kept out.
 * The caches' clocks are the test's, so the TTL is stepped, not waited out.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_ROLES } from "../../shared/roles.ts";
import { PERMISSIONS } from "../../shared/permissions.ts";
import { Hono } from "hono";
import { createApp } from "../../edge/src/app.ts";
import type { AppEnv } from "../../edge/src/context.ts";
import { createDb } from "../../edge/src/db/client.ts";
import { loadConfig, type Config } from "../../edge/src/env.ts";
import { authenticate } from "../../edge/src/middleware/auth.ts";
import { tenantsApi } from "../../edge/src/surfaces/admin/identity-tenants.ts";
import { tenantTrackingApi } from "../../edge/src/surfaces/admin/tracking.ts";
import { renderFastApi } from "../../edge/src/surfaces/errors.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { accessCache } from "../../edge/src/services/access.ts";
import { catalogCache } from "../../edge/src/services/catalog-cache.ts";
import { jwksCache } from "../../edge/src/services/jwks-cache.ts";
import { tenantStatusCache } from "../../edge/src/services/jwt-auth.ts";
import { ROUTE_PERMISSIONS } from "../../edge/src/surfaces/route-permissions.ts";
import { LocalOidcIssuer, type LoginUser } from "../helpers/oidc-issuer.ts";
import { BASE, createApiKey, createTenant, uid } from "./helpers.ts";

const ISSUER = "https://scaikey.test";
const AUDIENCE = "scaisend-test";
const TTL = 10_000;
const jwtEnv = {
  ...env,
  SCAIKEY_JWKS_URL: `${ISSUER}/.well-known/jwks.json`,
  SCAIKEY_ISSUER: ISSUER,
  SCAIKEY_AUDIENCE: AUDIENCE,
  AUTH_CACHE_TTL_MS: String(TTL),
} as Bindings;
const app = createApp();

let clock = Date.now();
let issuer: LocalOidcIssuer;

beforeAll(async () => {
  issuer = await LocalOidcIssuer.create(ISSUER, { id: "scaisend", secret: "s3cret" }, AUDIENCE);
});

beforeEach(() => {
  clock = Date.now();
  issuer.clock = () => clock;
  jwksCache.clear();
  jwksCache.clock = () => clock;
  jwksCache.fetcher = issuer.fetch;
  for (const c of [catalogCache, tenantStatusCache, accessCache]) {
    c.clear();
    c.clock = () => clock;
  }
});

afterEach(() => {
  jwksCache.clear();
  jwksCache.clock = Date.now;
  jwksCache.fetcher = (url, init) => fetch(url, init);
  for (const c of [catalogCache, tenantStatusCache, accessCache]) {
    c.clear();
    c.clock = Date.now;
  }
});

interface Answer {
  status: number;
  body: any;
}

async function request(token: string, method: string, path: string, body?: unknown): Promise<Answer> {
  const ctx = createExecutionContext();
  const res = await app.request(
    `${BASE}${path}`,
    {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    },
    jwtEnv,
    ctx,
  );
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const op = (method: string, path: string, body?: unknown) => request(env.ADMIN_TOKEN, method, path, body);
const jwt = (user: Partial<LoginUser> & { tenant_id: string }) =>
  issuer.accessToken({ sub: `usr_${uid()}`, ...user });
const ok = (a: Answer, status = 200) => {
  expect(a.status, JSON.stringify(a.body)).toBe(status);
  return a.body?.data;
};

describe("permissions", () => {
  it("lists the 17 permissions, filters by category, shows one; an API key is refused (403)", async () => {
    const tenantId = await createTenant();
    const token = await jwt({ tenant_id: tenantId });
    const all = ok(await request(token, "GET", "/api/admin/permissions"));
    expect(all.map((p: any) => p.id)).toEqual([...PERMISSIONS]);
    const mail = ok(await request(token, "GET", "/api/admin/permissions?category=mail"));
    expect(mail.map((p: any) => p.id)).toEqual(["mail.send", "mail.schedule", "mail.cancel"]);
    expect((await request(token, "GET", "/api/admin/permissions?category=nope")).status).toBe(400);
    expect(ok(await request(token, "GET", "/api/admin/permissions/admin.users"))).toMatchObject({
      id: "admin.users",
      category: "admin",
    });
    expect((await request(token, "GET", "/api/admin/permissions/admin.root")).status).toBe(404);
    const key = await createApiKey(tenantId, { scopes: [...PERMISSIONS] });
    const refused = await request(key.key, "GET", "/api/admin/permissions");
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toContain("ScaiKey JWT");
  });
});

describe("roles", () => {
  it("default roles are listed with the permissions of shared/roles.ts and are read-only", async () => {
    const tenantId = await createTenant();
    const admin = await jwt({ tenant_id: tenantId, roles: ["admin"] });
    const list = ok(await request(admin, "GET", "/api/admin/roles?include_permissions=true"));
    const defaults = list.filter((r: any) => r.is_default);
    expect(Object.fromEntries(defaults.map((r: any) => [r.name, r.permissions]))).toEqual(
      Object.fromEntries(Object.entries(DEFAULT_ROLES).map(([n, p]) => [n, [...p]])),
    );
    const bare = ok(await request(admin, "GET", "/api/admin/roles"));
    expect(bare[0].permissions).toBeUndefined();
    const dev = defaults.find((r: any) => r.name === "developer");
    expect((await request(admin, "PATCH", `/api/admin/roles/${dev.id}`, { permissions: [] })).status).toBe(
      403,
    );
    expect((await request(admin, "DELETE", `/api/admin/roles/${dev.id}`)).status).toBe(403);
    const again = ok(await request(admin, "GET", `/api/admin/roles/${dev.id}`));
    expect(again.permissions).toEqual([...DEFAULT_ROLES.developer!]);
  });

  it("CRUD of a custom role; its name cannot be a default one; another tenant's role is 404", async () => {
    const tenantId = await createTenant();
    const admin = await jwt({ tenant_id: tenantId, roles: ["admin"] });
    const created = ok(
      await request(admin, "POST", "/api/admin/roles", {
        name: "editor",
        description: "Edits templates",
        permissions: ["templates.write", "templates.read", "templates.read"],
      }),
      201,
    );
    expect(created).toMatchObject({
      name: "editor",
      tenant_id: tenantId,
      is_default: false,
      permissions: ["templates.read", "templates.write"],
    });
    expect(ok(await request(admin, "GET", `/api/admin/roles/${created.id}`)).name).toBe("editor");
    const patched = ok(
      await request(admin, "PATCH", `/api/admin/roles/${created.id}`, {
        name: "template-editor",
        permissions: ["templates.delete"],
      }),
    );
    expect(patched).toMatchObject({ name: "template-editor", permissions: ["templates.delete"] });

    expect((await request(admin, "POST", "/api/admin/roles", { name: "admin" })).status).toBe(409);
    expect((await request(admin, "POST", "/api/admin/roles", { name: "partner_admin" })).status).toBe(409);
    expect((await request(admin, "POST", "/api/admin/roles", { name: "template-editor" })).status).toBe(409);
    const bad = await request(admin, "POST", "/api/admin/roles", { name: "x", permissions: ["mail.root"] });
    expect(bad.status).toBe(422);
    expect(bad.body.detail[0].loc).toEqual(["body", "permissions", 0]);
    expect((await request(admin, "POST", "/api/admin/roles", { name: "y", color: "red" })).status).toBe(422);

    const other = await jwt({ tenant_id: await createTenant(), roles: ["admin"] });
    for (const [m, body] of [["GET"], ["PATCH", { name: "mine" }], ["DELETE"]] as const) {
      expect((await request(other, m, `/api/admin/roles/${created.id}`, body)).status).toBe(404);
    }
    expect(ok(await request(other, "GET", "/api/admin/roles")).some((r: any) => r.id === created.id)).toBe(
      false,
    );

    expect((await request(admin, "DELETE", `/api/admin/roles/${created.id}`)).status).toBe(204);
    expect((await request(admin, "GET", `/api/admin/roles/${created.id}`)).status).toBe(404);
  });

  it("changing roles needs admin.users, and nobody grants what they do not hold", async () => {
    const tenantId = await createTenant();
    const dev = await jwt({ tenant_id: tenantId, roles: ["developer"] });
    const r = await request(dev, "POST", "/api/admin/roles", { name: "x", permissions: [] });
    expect(r.status).toBe(403);
    expect(r.body.detail).toContain("admin.users");
    // A role with admin.users only, held through a group: it may manage roles but not escalate.
    const made = ok(
      await op("POST", `/api/admin/roles?tenant_id=${tenantId}`, {
        name: "user-admin",
        permissions: ["admin.users", "templates.read"],
      }),
      201,
    );
    ok(
      await op("POST", `/api/admin/group_mappings?tenant_id=${tenantId}`, {
        group_id: "grp_ua",
        role_id: made.id,
      }),
      201,
    );
    const ua = await jwt({ tenant_id: tenantId, groups: ["grp_ua"] });
    const up = await request(ua, "POST", "/api/admin/roles", { name: "sender", permissions: ["mail.send"] });
    expect(up.status).toBe(403);
    expect(up.body.detail).toContain("mail.send");
    ok(
      await request(ua, "POST", "/api/admin/roles", { name: "reader", permissions: ["templates.read"] }),
      201,
    );
    // Nor assign a default role holding more than it has.
    const user = ok(await request(ua, "POST", "/api/admin/users", { scaikey_id: "usr_x" }), 201);
    expect((await request(ua, "POST", `/api/admin/users/${user.id}/roles/role_admin`)).status).toBe(403);
  });
});

describe("users and role assignment", () => {
  it("a role assigned to a user grants its permissions to the user's JWT at once; removed, at once refused", async () => {
    const tenantId = await createTenant();
    const admin = await jwt({ tenant_id: tenantId, roles: ["admin"] });
    const sub = `usr_${uid()}`;
    const user = ok(
      await request(admin, "POST", "/api/admin/users", {
        scaikey_id: sub,
        email: "ann@example.org",
        first_name: "Ann",
      }),
      201,
    );
    expect(user).toMatchObject({ scaikey_id: sub, email: "ann@example.org", roles: [] });
    expect((await request(admin, "POST", "/api/admin/users", { scaikey_id: sub })).status).toBe(409);
    const role = ok(
      await request(admin, "POST", "/api/admin/roles", {
        name: "writer",
        permissions: ["templates.read", "templates.write"],
      }),
      201,
    );
    const own = await issuer.accessToken({ sub, tenant_id: tenantId });
    const create = () => request(own, "POST", "/v3/templates", { name: `t-${uid()}`, generation: "dynamic" });
    expect((await create()).status).toBe(403);

    for (let i = 0; i < 2; i++) {
      expect((await request(admin, "POST", `/api/admin/users/${user.id}/roles/${role.id}`)).status).toBe(204);
    }
    expect(ok(await request(admin, "GET", `/api/admin/users/${user.id}/roles`))).toEqual([
      { id: role.id, name: "writer" },
    ]);
    expect((await create()).status).toBe(201);
    const me = await request(own, "GET", "/v3/auth/me");
    expect(me.body).toMatchObject({
      id: sub,
      roles: ["writer"],
      permissions: ["templates.read", "templates.write"],
    });

    expect((await request(admin, "DELETE", `/api/admin/users/${user.id}/roles/${role.id}`)).status).toBe(204);
    expect((await create()).status).toBe(403);

    const renamed = ok(
      await request(admin, "PATCH", `/api/admin/users/${user.id}`, { display_name: "Ann A." }),
    );
    expect(renamed.display_name).toBe("Ann A.");
    expect(ok(await request(admin, "GET", "/api/admin/users")).map((u: any) => u.id)).toEqual([user.id]);

    // Another tenant's admin: the user and the assignment route are 404.
    const other = await jwt({ tenant_id: await createTenant(), roles: ["admin"] });
    expect((await request(other, "GET", `/api/admin/users/${user.id}`)).status).toBe(404);
    expect((await request(other, "POST", `/api/admin/users/${user.id}/roles/${role.id}`)).status).toBe(404);
    expect((await request(other, "DELETE", `/api/admin/users/${user.id}`)).status).toBe(404);
    expect(ok(await request(other, "GET", "/api/admin/users"))).toEqual([]);

    expect((await request(admin, "DELETE", `/api/admin/users/${user.id}`)).status).toBe(204);
    expect((await request(admin, "GET", `/api/admin/users/${user.id}`)).status).toBe(404);
  });

  it("users routes need admin.users (a developer gets 403)", async () => {
    const tenantId = await createTenant();
    const dev = await jwt({ tenant_id: tenantId, roles: ["developer"] });
    expect((await request(dev, "GET", "/api/admin/users")).status).toBe(403);
    expect((await request(dev, "GET", "/api/admin/group_mappings")).status).toBe(403);
    expect((await request(dev, "GET", "/api/admin/roles")).status).toBe(200);
  });
});

describe("group mappings", () => {
  it("a JWT's groups claim maps through the tenant's mappings to roles and their permissions", async () => {
    const tenantId = await createTenant();
    const admin = await jwt({ tenant_id: tenantId, roles: ["admin"] });
    const member = await jwt({ tenant_id: tenantId, groups: ["grp_eng", "grp_unmapped"] });
    expect((await request(member, "GET", "/v3/templates")).status).toBe(403);

    const m = ok(
      await request(admin, "POST", "/api/admin/group_mappings", {
        group_id: "grp_eng",
        role_id: "role_developer",
      }),
      201,
    );
    expect(m).toMatchObject({ group_id: "grp_eng", role_id: "role_developer", role_name: "developer" });
    expect(
      (
        await request(admin, "POST", "/api/admin/group_mappings", {
          group_id: "grp_eng",
          role_id: "role_developer",
        })
      ).status,
    ).toBe(409);
    expect((await request(member, "GET", "/v3/templates")).status).toBe(200);
    const me = await request(member, "GET", "/v3/auth/me");
    expect(me.body.roles).toEqual(["developer"]);
    expect(me.body.permissions).toEqual([...DEFAULT_ROLES.developer!]);
    // The same group in another tenant maps to nothing there.
    const elsewhere = await createTenant();
    const outsider = await jwt({ tenant_id: elsewhere, groups: ["grp_eng"] });
    expect((await request(outsider, "GET", "/v3/templates")).status).toBe(403);
    const otherAdmin = await jwt({ tenant_id: elsewhere, roles: ["admin"] });
    expect((await request(otherAdmin, "GET", `/api/admin/group_mappings/${m.id}`)).status).toBe(404);
    expect((await request(otherAdmin, "DELETE", `/api/admin/group_mappings/${m.id}`)).status).toBe(404);
    expect(ok(await request(otherAdmin, "GET", "/api/admin/group_mappings"))).toEqual([]);

    // Re-pointed at a custom role, then deleted: the member's permissions follow at once.
    const role = ok(
      await request(admin, "POST", "/api/admin/roles", { name: "stats", permissions: ["stats.read"] }),
      201,
    );
    const moved = ok(
      await request(admin, "PATCH", `/api/admin/group_mappings/${m.id}`, { role_id: role.id }),
    );
    expect(moved.role_name).toBe("stats");
    expect((await request(member, "GET", "/v3/templates")).status).toBe(403);
    expect((await request(member, "GET", "/v3/auth/me")).body.permissions).toEqual(["stats.read"]);
    expect((await request(admin, "DELETE", `/api/admin/group_mappings/${m.id}`)).status).toBe(204);
    expect((await request(member, "GET", "/v3/auth/me")).body.permissions).toEqual([]);
  });

  it("a mapping made through another isolate applies within the auth cache TTL, not before", async () => {
    const tenantId = await createTenant();
    const member = await jwt({ tenant_id: tenantId, groups: ["grp_ops"] });
    expect((await request(member, "GET", "/v3/templates")).status).toBe(403);
    // Written straight to D1, as another isolate's admin route would: this isolate is not told.
    await env.DB.prepare(
      "INSERT INTO group_mappings (id, tenant_id, group_id, role_id, created_at) VALUES (?, ?, 'grp_ops', 'role_admin', 0)",
    )
      .bind(`grm_${uid()}`, tenantId)
      .run();
    clock += TTL - 1;
    expect((await request(member, "GET", "/v3/templates")).status).toBe(403);
    clock += 1;
    expect((await request(member, "GET", "/v3/templates")).status).toBe(200);
  });
});

describe("tenant suspension", () => {
  it("through another isolate: keys and JWTs keep working until the TTL passes, then 403", async () => {
    const tenantId = await createTenant();
    const key = await createApiKey(tenantId, { scopes: ["templates.read"] });
    const token = await jwt({ tenant_id: tenantId, roles: ["developer"] });
    expect((await request(key.key, "GET", "/v3/templates")).status).toBe(200);
    expect((await request(token, "GET", "/v3/templates")).status).toBe(200);
    await env.DB.prepare("UPDATE tenants SET status = 'suspended' WHERE id = ?").bind(tenantId).run();
    clock += TTL - 1;
    expect((await request(key.key, "GET", "/v3/templates")).status).toBe(200);
    expect((await request(token, "GET", "/v3/templates")).status).toBe(200);
    clock += 1;
    for (const t of [key.key, token]) {
      const r = await request(t, "GET", "/v3/templates");
      expect(r.status).toBe(403);
      expect(r.body.detail).toBe("Tenant suspended");
    }
  });

  it("through this isolate's PATCH: refused at once, and back at once when reactivated", async () => {
    const tenantId = await createTenant();
    const key = await createApiKey(tenantId, { scopes: ["templates.read"] });
    const token = await jwt({ tenant_id: tenantId, roles: ["developer"] });
    expect((await request(key.key, "GET", "/v3/templates")).status).toBe(200);
    expect((await request(token, "GET", "/v3/templates")).status).toBe(200);
    expect(ok(await op("PATCH", `/api/admin/tenants/${tenantId}`, { status: "suspended" })).status).toBe(
      "suspended",
    );
    expect((await request(key.key, "GET", "/v3/templates")).status).toBe(403);
    expect((await request(token, "GET", "/v3/templates")).status).toBe(403);
    ok(await op("PATCH", `/api/admin/tenants/${tenantId}`, { status: "active" }));
    expect((await request(key.key, "GET", "/v3/templates")).status).toBe(200);
    expect((await request(token, "GET", "/v3/templates")).status).toBe(200);
  });

  it("only the operator or the partner's admin changes the status; admin.settings changes name and settings", async () => {
    const tenantId = await createTenant();
    const admin = await jwt({ tenant_id: tenantId, roles: ["admin"] });
    expect(
      (await request(admin, "PATCH", `/api/admin/tenants/${tenantId}`, { status: "suspended" })).status,
    ).toBe(403);
    expect(
      (await request(admin, "PATCH", `/api/admin/tenants/${tenantId}`, { partner_id: null })).status,
    ).toBe(403);
    const t = ok(
      await request(admin, "PATCH", `/api/admin/tenants/${tenantId}`, {
        name: "Renamed",
        settings: { tz: "UTC" },
      }),
    );
    expect(t).toMatchObject({ id: tenantId, name: "Renamed", status: "active", settings: { tz: "UTC" } });
    expect((await request(admin, "PATCH", `/api/admin/tenants/${tenantId}`, { plan: "gold" })).status).toBe(
      422,
    );
    const dev = await jwt({ tenant_id: tenantId, roles: ["developer"] });
    expect((await request(dev, "PATCH", `/api/admin/tenants/${tenantId}`, { name: "x" })).status).toBe(403);
  });
});

describe("partners", () => {
  it("partner admins see their partner's tenants; other users only their own; another partner's are 404", async () => {
    const m = uid();
    const p1 = ok(
      await op("POST", "/api/admin/partners", {
        name: "Acme",
        slug: `acme-${m}`,
        scaikey_id: `prt_acme_${m}`,
      }),
      201,
    );
    const p2 = ok(await op("POST", "/api/admin/partners", { name: "Other", slug: `other-${m}` }), 201);
    expect((await op("POST", "/api/admin/partners", { name: "Dup", slug: `acme-${m}` })).status).toBe(409);
    const [t1a, t1b, t2] = [await createTenant(), await createTenant(), await createTenant()];
    for (const [t, p] of [
      [t1a, p1.id],
      [t1b, p1.scaikey_id],
      [t2, p2.id],
    ]) {
      ok(await op("PATCH", `/api/admin/tenants/${t}`, { partner_id: p }));
    }
    ok(await op("PATCH", `/api/admin/tenants/${t1b}`, { scaikey_id: `tnt_b_${m}` }));

    const partnerAdmin = await jwt({ tenant_id: t1a, roles: ["partner_admin"] });
    const ids = (a: Answer) =>
      ok(a)
        .map((x: any) => x.id)
        .sort();
    expect(ids(await request(partnerAdmin, "GET", "/api/admin/tenants"))).toEqual([t1a, t1b].sort());
    expect(ids(await request(partnerAdmin, "GET", `/api/admin/tenants?partner_id=${p2.id}`))).toEqual([]);
    expect(ok(await request(partnerAdmin, "GET", `/api/admin/tenants/tnt_b_${m}`)).id).toBe(t1b);
    expect((await request(partnerAdmin, "GET", `/api/admin/tenants/${t2}`)).status).toBe(404);
    expect(ids(await request(partnerAdmin, "GET", "/api/admin/partners"))).toEqual([p1.id]);
    expect(ok(await request(partnerAdmin, "GET", `/api/admin/partners/prt_acme_${m}`)).id).toBe(p1.id);
    expect((await request(partnerAdmin, "GET", `/api/admin/partners/${p2.id}`)).status).toBe(404);
    // A partner admin without admin.settings in its tenant cannot change tenants; with it, it may
    // suspend one of its partner's tenants, never another partner's.
    expect(
      (await request(partnerAdmin, "PATCH", `/api/admin/tenants/${t1b}`, { status: "suspended" })).status,
    ).toBe(403);
    const pa = await jwt({ tenant_id: t1a, roles: ["partner_admin", "admin"] });
    expect(ok(await request(pa, "PATCH", `/api/admin/tenants/${t1b}`, { status: "suspended" })).status).toBe(
      "suspended",
    );
    expect((await request(pa, "PATCH", `/api/admin/tenants/${t2}`, { status: "suspended" })).status).toBe(
      404,
    );
    ok(await op("PATCH", `/api/admin/tenants/${t1b}`, { status: "active" }));

    const user = await jwt({ tenant_id: t1a, roles: ["admin"] });
    expect(ids(await request(user, "GET", "/api/admin/tenants"))).toEqual([t1a]);
    expect((await request(user, "GET", `/api/admin/tenants/${t1b}`)).status).toBe(404);
    expect(ids(await request(user, "GET", "/api/admin/partners"))).toEqual([p1.id]);
    // A JWT naming its tenant by ScaiKey id acts in that tenant.
    const bySk = await jwt({ tenant_id: `tnt_b_${m}`, roles: ["admin"] });
    expect(ids(await request(bySk, "GET", "/api/admin/tenants"))).toEqual([t1b]);
    // A user of a tenant without a partner sees no partner.
    const loner = await jwt({ tenant_id: await createTenant(), roles: ["partner_admin"] });
    expect(ok(await request(loner, "GET", "/api/admin/partners"))).toEqual([]);

    // The operator sees all, filters by partner, and cannot delete a partner that has tenants.
    expect(ids(await op("GET", `/api/admin/tenants?partner_id=${p1.scaikey_id}`))).toEqual([t1a, t1b].sort());
    expect((await op("DELETE", `/api/admin/partners/${p2.id}`)).status).toBe(409);
    ok(await op("PATCH", `/api/admin/tenants/${t2}`, { partner_id: null }));
    expect((await op("DELETE", `/api/admin/partners/${p2.id}`)).status).toBe(204);
    expect((await op("GET", `/api/admin/partners/${p2.id}`)).status).toBe(404);
    // Partners are the operator's to change.
    expect((await request(pa, "PATCH", `/api/admin/partners/${p1.id}`, { name: "Mine" })).status).toBe(403);
    expect(ok(await op("PATCH", `/api/admin/partners/${p1.id}`, { name: "Acme Inc" })).name).toBe("Acme Inc");
  });
});

describe("the identity routes' permission matrix for JWTs (edge/src/surfaces/route-permissions.ts)", () => {
  const IDENTITY = /^\/api\/admin\/(tenants|partners|permissions|roles|users|group_mappings)(\/|$)/;
  const routes = Object.entries(ROUTE_PERMISSIONS).filter(([r]) => IDENTITY.test(r.split(" ")[1]!));
  const sample = (path: string, tenantId: string) =>
    path
      .replace(/^\/api\/admin\/tenants\/:id/, `/api/admin/tenants/${tenantId}`)
      .replace(":role_id", "rol_nowhere")
      .replace(/:id/, (_) =>
        path.startsWith("/api/admin/permissions")
          ? "mail.send"
          : `${path.split("/")[3]!.slice(0, 3)}_nowhere`,
      );

  it.each([["admin.users"], ["admin.settings"], ["(none)"]])(
    "a JWT whose only permission is %s reaches exactly the identity routes that declare it (or any JWT)",
    async (perm) => {
      expect(routes.length).toBeGreaterThan(20);
      const tenantId = await createTenant();
      const role = ok(
        await op("POST", `/api/admin/roles?tenant_id=${tenantId}`, {
          name: `only-${uid()}`,
          permissions: perm === "(none)" ? [] : [perm],
        }),
        201,
      );
      ok(
        await op("POST", `/api/admin/group_mappings?tenant_id=${tenantId}`, {
          group_id: "grp_m",
          role_id: role.id,
        }),
        201,
      );
      const token = await jwt({ tenant_id: tenantId, groups: ["grp_m"] });
      const out: string[] = [];
      for (const [route, needed] of routes) {
        const [method, path] = route.split(" ") as [string, string];
        const r = await request(token, method, sample(path, tenantId), method === "GET" ? undefined : {});
        const granted = needed === "any" || (needed as readonly string[]).includes(perm);
        if (granted ? r.status === 401 || r.status === 403 || r.status >= 500 : r.status !== 403) {
          out.push(`${route} → ${r.status} ${JSON.stringify(r.body).slice(0, 80)}`);
        }
      }
      expect(out).toEqual([]);
    },
    60_000,
  );
});

describe("mount order", () => {
  it("the identity /tenants routes sit in front of no other /tenants/{id}/… route: an API key still reaches tracking", async () => {
    // Mounted the other way round from app.ts: /tenants first, then the tracking sub-app.
    const sub = new Hono<AppEnv>()
      .use(authenticate({ allowOperator: true }))
      .route("/tenants", tenantsApi)
      .route("/tenants/:id/tracking", tenantTrackingApi)
      .onError(renderFastApi);
    const outer = new Hono<AppEnv>();
    outer.use(async (c, next) => {
      c.set("config", (loadConfig(jwtEnv) as { ok: true; config: Config }).config);
      c.set("db", createDb(env.DB));
      return next();
    });
    outer.route("/api/admin", sub);
    const tenantId = await createTenant();
    const key = await createApiKey(tenantId, { scopes: ["admin.settings"] });
    const ctx = createExecutionContext();
    const res = await outer.request(
      `${BASE}/api/admin/tenants/${tenantId}/tracking`,
      { headers: { Authorization: `Bearer ${key.key}` } },
      jwtEnv,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status, await res.clone().text()).toBe(200);
    const own = await outer.request(
      `${BASE}/api/admin/tenants/${tenantId}`,
      { headers: { Authorization: `Bearer ${key.key}` } },
      jwtEnv,
    );
    expect(own.status).toBe(403);
  });
});
