/**
 * The permission matrix (docs/api/admin.md#permissions), against the real Worker in workerd: a key
 * holding only P reaches exactly the tenant routes that declare P (plus the routes any key may read)
 * and gets 403 everywhere else. The routes and their permissions: test/edge/route-table.ts.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { PERMISSIONS, type Permission } from "../../shared/permissions.ts";
import { bearer, createApiKey, setupTenant } from "./helpers.ts";
import { type Ids, NOWHERE, guardOf, hit, pool, tenantRoutes } from "./route-table.ts";

describe("the permission matrix", () => {
  // An empty tenant: a granted request finds nothing (404) or is refused by validation (400);
  // only a refusal for want of the permission is a 403.
  let tenantId: string;
  const ids: Ids = { ...NOWHERE, tenantId: "", category: "nothing" };
  beforeAll(async () => {
    tenantId = (await setupTenant()).tenantId;
    ids.tenantId = tenantId;
  }, 180_000);

  /** Permissions no route declares yet (user–role assignment is not served). */
  const RESERVED: readonly Permission[] = ["admin.users"];
  const declared = (r: string) => (guardOf(r) as { perms: readonly Permission[] | "any" }).perms;

  it.each(PERMISSIONS.map((p) => [p]))(
    "a key holding only %s reaches every route that declares it",
    async (p) => {
      const key = (await createApiKey(tenantId, { scopes: [p] })).key;
      const granted = tenantRoutes.filter((r) => declared(r) === "any" || declared(r).includes(p));
      // Every permission but the reserved ones unlocks something; a reserved one, nothing.
      const own = granted.filter((r) => declared(r) !== "any");
      if (RESERVED.includes(p)) expect(own).toEqual([]);
      else expect(own.length).toBeGreaterThan(0);
      const out: string[] = [];
      await pool(granted, 4, async (r) => {
        const { status, text } = await hit(r, ids, bearer(key), false);
        if (status === 401 || status === 403) out.push(`${r} → ${status} ${text.slice(0, 80)}`);
      });
      expect(out).toEqual([]);
    },
    120_000,
  );

  // Scope checks only ask "does the key hold X" (edge/src/middleware/auth.ts), so a key holding every
  // permission but the route's own being refused means no other permission, alone or together, unlocks
  // it: with the test above, each permission grants exactly its routes.
  it("a key holding every permission but a route's own is refused that route (403)", async () => {
    const routes = tenantRoutes.filter((r) => declared(r) !== "any");
    const bySet = new Map<string, string[]>();
    for (const r of routes) {
      const k = [...declared(r)].sort().join(",");
      bySet.set(k, [...(bySet.get(k) ?? []), r]);
    }
    const out: string[] = [];
    for (const [set, rs] of bySet) {
      const own = set.split(",");
      const key = (await createApiKey(tenantId, { scopes: PERMISSIONS.filter((p) => !own.includes(p)) })).key;
      await pool(rs, 4, async (r) => {
        const { status, text } = await hit(r, ids, bearer(key), false);
        if (status !== 403) out.push(`${r} → ${status} ${text.slice(0, 80)}`);
      });
    }
    expect(out).toEqual([]);
  }, 240_000);
});
