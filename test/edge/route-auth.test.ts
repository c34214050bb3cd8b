/**
 * Every route of the Worker, read from the app's own route table (createApp().routes), is classified
 * in test/edge/route-table.ts, so a new route cannot ship unclassified: the first test fails on any
 * route missing from ROUTES (and on any entry of ROUTES the app no longer has). Then, against the real
 * Worker in workerd: public routes answer without credentials; origin routes (ORIGIN_TOKEN) and
 * operator routes (ADMIN_TOKEN) refuse a tenant's API key; admin identity and SenderKit routes refuse
 * the wrong credentials. Tenant routes: route-auth.tenant.test.ts; the permission matrix:
 * route-auth.matrix.test.ts (split so the three files run side by side).
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { PERMISSIONS } from "../../shared/permissions.ts";
import { ROUTE_PERMISSIONS } from "../../edge/src/surfaces/route-permissions.ts";
import { bearer, createApiKey, operatorHeaders, setupTenant } from "./helpers.ts";
import { type Ids, NOWHERE, ROUTE_LIST, ROUTES, guardOf, hit, pool } from "./route-table.ts";

describe("the route table", () => {
  it("the permission table the guards read (edge/src/surfaces/route-permissions.ts) says what ROUTES says", () => {
    const norm = (p: readonly string[] | "any") => (p === "any" ? "any" : [...p].sort().join(" | "));
    const expected: Record<string, string> = {};
    for (const [r, g] of Object.entries(ROUTES)) {
      if (g.kind === "tenant" || g.kind === "admin_jwt" || g.kind === "dashboard")
        expected[r] = norm(g.perms);
    }
    const declared = Object.fromEntries(Object.entries(ROUTE_PERMISSIONS).map(([r, p]) => [r, norm(p)]));
    expect(declared).toEqual(expected);
  });

  it("classifies every route the Worker serves, and no route it does not", () => {
    expect(ROUTE_LIST.length).toBeGreaterThan(50);
    const unclassified = ROUTE_LIST.filter((r) => !(r in ROUTES));
    expect(unclassified, "routes missing from ROUTES in test/edge/route-table.ts").toEqual([]);
    expect(Object.keys(ROUTES).filter((r) => !ROUTE_LIST.includes(r))).toEqual([]);
  });
});

describe("credentials on the public, origin, operator, identity and SenderKit routes", () => {
  // These guards refuse (or admit) before any lookup, so tenant A needs only a key holding every
  // permission; its own tenant and domain ids fill the paths, ids of other families exist nowhere.
  let a: { ids: Ids; adminKey: string };
  beforeAll(async () => {
    const t = await setupTenant();
    const admin = await createApiKey(t.tenantId, { scopes: [...PERMISSIONS] });
    a = {
      ids: { ...NOWHERE, tenantId: t.tenantId, domainId: t.domainId, category: "nothing" },
      adminKey: admin.key,
    };
  }, 180_000);

  it("public routes answer without credentials (never 401/403)", async () => {
    const out: string[] = [];
    await pool(
      ROUTE_LIST.filter((r) => guardOf(r).kind === "public"),
      4,
      async (r) => {
        const { status } = await hit(r, a.ids, {});
        if (status === 401 || status === 403 || status >= 500) out.push(`${r} → ${status}`);
      },
    );
    expect(out).toEqual([]);
  });

  it("origin, operator, JWT-only and ScaiKey-signed routes: 401 without credentials, refused to a tenant's key holding every permission", async () => {
    const out: string[] = [];
    const routes = ROUTE_LIST.filter((r) =>
      ["origin", "operator", "jwt", "signed"].includes(guardOf(r).kind),
    );
    await pool(routes, 4, async (r) => {
      const none = await hit(r, a.ids, {});
      if (none.status !== 401) out.push(`${r} no credentials → ${none.status}`);
      const key = await hit(r, a.ids, bearer(a.adminKey));
      const want = guardOf(r).kind === "operator" ? [403] : [401];
      if (!want.includes(key.status)) out.push(`${r} tenant key → ${key.status}`);
      if (guardOf(r).kind !== "operator") {
        const op = await hit(r, a.ids, operatorHeaders());
        if (op.status !== 401) out.push(`${r} operator token → ${op.status}`);
      } else {
        const origin = await hit(r, a.ids, bearer(env.ORIGIN_TOKEN));
        if (origin.status !== 401) out.push(`${r} origin token → ${origin.status}`);
      }
    });
    expect(out).toEqual([]);
  });

  it("admin identity routes: 401 without credentials, 403 to a tenant's key holding every permission, open to the operator", async () => {
    const out: string[] = [];
    await pool(
      ROUTE_LIST.filter((r) => guardOf(r).kind === "admin_jwt"),
      4,
      async (r) => {
        const none = await hit(r, a.ids, {});
        if (none.status !== 401) out.push(`${r} no credentials → ${none.status}`);
        const key = await hit(r, a.ids, bearer(a.adminKey));
        if (key.status !== 403) out.push(`${r} tenant key → ${key.status}`);
        const op = await hit(r, a.ids, operatorHeaders());
        if (op.status === 401 || op.status === 403 || op.status >= 500)
          out.push(`${r} operator → ${op.status} ${op.text.slice(0, 80)}`);
      },
    );
    expect(out).toEqual([]);
  }, 180_000);

  it("SenderKit routes: 401 unauthorized (SenderKit's error shape) without a SenderKit key, to any other credential", async () => {
    const out: string[] = [];
    await pool(
      ROUTE_LIST.filter((r) => guardOf(r).kind === "senderkit"),
      4,
      async (r) => {
        for (const [label, headers] of [
          ["none", {}],
          ["malformed key", bearer("sk_live_nothex")],
          ["unknown key", bearer(`sk_live_${"0".repeat(32)}`)],
          ["sg key with every permission", bearer(a.adminKey)],
          ["operator token", operatorHeaders()],
          ["origin token", bearer(env.ORIGIN_TOKEN)],
        ] as const) {
          const { status, text } = await hit(r, a.ids, headers);
          const code =
            status === 401 ? (JSON.parse(text) as { error?: { code?: string } }).error?.code : null;
          if (status !== 401 || code !== "unauthorized")
            out.push(`${r} ${label} → ${status} ${text.slice(0, 80)}`);
        }
      },
    );
    expect(out).toEqual([]);
  });
});
