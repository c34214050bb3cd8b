/**
 * Every tenant route (classified in test/edge/route-table.ts), against the real Worker in workerd:
 * 401 without credentials, 403 to a key without the route's permission, and 404 to tenant B's key on
 * tenant A's ids (never A's data: no id, address, name or category of A appears in any answer B gets,
 * lists included); B's writes change nothing of A's.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { PERMISSIONS } from "../../shared/permissions.ts";
import { bearer, call, createApiKey, setupTenant } from "./helpers.ts";
import {
  BODIES,
  FOREIGN_ID_STATUS,
  NOWHERE,
  QUERIES,
  UNCONFIGURED_404,
  guardOf,
  hasId,
  hit,
  json,
  pathOf,
  pool,
  tenantRoutes,
  tenantWithEverything,
  today,
} from "./route-table.ts";

describe("authentication and tenant binding on every route", () => {
  let a: Awaited<ReturnType<typeof tenantWithEverything>>;
  let b: { key: string; noScopes: string };
  let aNoScopes: string;
  beforeAll(async () => {
    a = await tenantWithEverything();
    aNoScopes = (await createApiKey(a.ids.tenantId, { scopes: [] })).key;
    const other = await setupTenant();
    b = {
      key: (await createApiKey(other.tenantId, { scopes: [...PERMISSIONS] })).key,
      noScopes: (await createApiKey(other.tenantId, { scopes: [] })).key,
    };
  }, 180_000);

  it("tenant routes: 401 without credentials, with a malformed key and with the origin token", async () => {
    const out: string[] = [];
    await pool(tenantRoutes, 4, async (r) => {
      for (const [label, headers] of [
        ["none", {}],
        ["malformed key", bearer("sg_live_nothex")],
        ["unknown key", bearer(`sg_live_${"0".repeat(32)}`)],
        ["origin token", bearer(env.ORIGIN_TOKEN)],
      ] as const) {
        const { status } = await hit(r, a.ids, headers);
        if (status !== 401) out.push(`${r} ${label} → ${status}`);
      }
    });
    expect(out).toEqual([]);
  }, 180_000);

  it("tenant routes: 403 to the tenant's own key without the route's permission", async () => {
    const out: string[] = [];
    await pool(tenantRoutes, 4, async (r) => {
      const { status, text } = await hit(r, a.ids, bearer(aNoScopes));
      const any = guardOf(r).kind === "tenant" && (guardOf(r) as { perms: unknown }).perms === "any";
      if (any ? status === 401 || status === 403 : status !== 403)
        out.push(`${r} → ${status} ${text.slice(0, 80)}`);
    });
    expect(out).toEqual([]);
  }, 180_000);

  it("tenant routes: tenant B's key (every permission) on A's ids is 404, and no answer carries A's data", async () => {
    const out: string[] = [];
    const probes = tenantRoutes.filter((r) => hasId(r) || r.startsWith("GET "));
    await pool(probes, 4, async (r) => {
      const { status, text } = await hit(r, a.ids, bearer(b.key));
      // Echoing the id the caller sent ("msg_… not found") tells it nothing; anything else of A's would.
      const sent =
        `${pathOf(r, a.ids)} ${QUERIES[r]?.replace("CATEGORY", a.ids.category) ?? ""} ${JSON.stringify(BODIES[r] ?? "")}`.toLowerCase();
      const lower = text.toLowerCase();
      const leaked = a.markers.filter((mk) => lower.includes(mk) && !sent.includes(mk));
      if (leaked.length > 0) out.push(`${r} → ${status} carries ${leaked.join(", ")}`);
      if (hasId(r)) {
        const want = FOREIGN_ID_STATUS[r] ?? 404;
        if (status !== want) out.push(`${r} → ${status} (want ${want}) ${text.slice(0, 100)}`);
        // The same answer as for an id that exists nowhere: A's ids are not even confirmed to exist.
        const nowhere = await hit(r, { ...a.ids, ...NOWHERE }, bearer(b.key));
        if (nowhere.status !== status) out.push(`${r} → ${status} on A's id but ${nowhere.status} on none`);
      } else if (status >= 400 && !(status === 404 && UNCONFIGURED_404.has(r))) {
        out.push(`${r} (a list) → ${status} ${text.slice(0, 100)}`);
      }
    });
    expect(out).toEqual([]);
    // B's writes on A's ids changed nothing of A's.
    const ids = a.ids;
    for (const path of [
      `/v3/templates/${ids.templateId}`,
      `/v3/templates/${ids.templateId}/versions/${ids.versionId}`,
      `/v3/user/webhooks/${ids.webhookId}`,
      `/v3/images/${ids.imageId}`,
      `/v3/asm/groups/${ids.groupId}`,
      `/v3/api_keys/${ids.keyId}`,
      `/v3/suppression/bounces/${encodeURIComponent(ids.email)}`,
      `/v3/user/scheduled_sends/${ids.batchId}`,
      `/api/admin/domains/${ids.domainId}`,
      `/v3/messages/${ids.messageId}`,
    ]) {
      const res = await call(path, { headers: bearer(a.adminKey) });
      expect(res.status, path).toBe(200);
      const text = (await res.text()).toLowerCase();
      expect(text, path).not.toContain("renamed");
    }
    const scheduled = await json(a.adminKey, "GET", `/v3/user/scheduled_sends/${ids.batchId}`);
    expect(JSON.stringify(scheduled)).toContain("pause");
    const global = await json(
      a.adminKey,
      "GET",
      `/v3/asm/suppressions/global/${encodeURIComponent(ids.email)}`,
    );
    expect(global).toEqual({ recipient_email: ids.email });
    // Counters: A's category counted A's one request; B asking for the same category name sees none.
    const requests = async (key: string) => {
      const days = (await json(
        key,
        "GET",
        `/v3/categories/stats?start_date=${today}&categories=${encodeURIComponent(ids.category)}`,
      )) as { stats: { metrics: { requests: number } }[] }[];
      return days.flatMap((d) => d.stats).reduce((n, s) => n + s.metrics.requests, 0);
    };
    expect(await requests(a.adminKey)).toBe(1);
    expect(await requests(b.key)).toBe(0);
  }, 240_000);
});
