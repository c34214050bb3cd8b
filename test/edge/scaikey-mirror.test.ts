/**
 * ScaiKey's identities in the local mirror (docs/scaikey.md) on the real app and D1:
 *  - sign-in through /v3/auth (the local OIDC issuer, test/helpers/oidc-issuer.ts, as the edge's
 *    outbound fetch) writes the user and its groups, which the tenant's group mappings make roles;
 *  - POST /webhooks/scaikey: the signature (constant-time, 300 s window), events of every kind
 *    applied idempotently (a replay, or an older `updated_at`, changes nothing), a suspension that
 *    stops the tenant's keys, and the 400 / 401 / 409 answers;
 *  - the operator's bulk sync and prune (POST /api/admin/scaikey/sync, /sync/prune).
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { accessCache } from "../../edge/src/services/access.ts";
import { jwksCache } from "../../edge/src/services/jwks-cache.ts";
import { tenantStatusCache } from "../../edge/src/services/jwt-auth.ts";
import { oidcClient } from "../../edge/src/services/oidc.ts";
import { hmacSignature } from "../../edge/src/services/webhook-signing.ts";
import { LocalOidcIssuer } from "../helpers/oidc-issuer.ts";
import { BASE, createApiKey, createTenant, operatorHeaders, uid } from "./helpers.ts";

const ISSUER = "https://scaikey.test";
const AUDIENCE = "scaisend-test";
const CLIENT = { id: "scaisend-edge", secret: "client-secret-0123456789" };
const REDIRECT = `${BASE}/v3/auth/callback`;
const WEBHOOK_SECRET = "whsec_scaikey_0123456789abcdef";
const oidcEnv = {
  ...env,
  SCAIKEY_JWKS_URL: `${ISSUER}/.well-known/jwks.json`,
  SCAIKEY_ISSUER: ISSUER,
  SCAIKEY_AUDIENCE: AUDIENCE,
} as Bindings;
const app = createApp();
let issuer: LocalOidcIssuer;

beforeAll(async () => {
  issuer = await LocalOidcIssuer.create(ISSUER, CLIENT, AUDIENCE);
});

beforeEach(async () => {
  jwksCache.clear();
  jwksCache.fetcher = issuer.fetch;
  oidcClient.clear();
  oidcClient.fetcher = issuer.fetch;
  tenantStatusCache.clear();
  accessCache.clear();
  // What `scaisend register` stores: the OAuth client (so no SCAIKEY_CLIENT_* is set) and the secret.
  const put = await send("PUT", "/api/admin/scaikey", {
    issuer: ISSUER,
    client_id: CLIENT.id,
    client_secret: CLIENT.secret,
    redirect_uri: REDIRECT,
    webhook_id: "whk_1",
    webhook_url: `${BASE}/webhooks/scaikey`,
    webhook_secret: WEBHOOK_SECRET,
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
});

afterEach(() => {
  jwksCache.clear();
  jwksCache.fetcher = (url, init) => fetch(url, init);
  oidcClient.clear();
  oidcClient.fetcher = (url, init) => fetch(url, init);
});

interface Answer {
  status: number;
  body: any;
  setCookie: string | null;
}

async function send(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = operatorHeaders(),
): Promise<Answer> {
  const ctx = createExecutionContext();
  const res = await app.request(
    `${BASE}${path}`,
    {
      method,
      headers,
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    },
    oidcEnv,
    ctx,
  );
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  return {
    status: res.status,
    body: text ? JSON.parse(text) : null,
    setCookie: res.headers.get("set-cookie"),
  };
}

const nowS = () => Math.floor(Date.now() / 1000);
let seq = 0;
const iso = (ms: number) => new Date(ms).toISOString();

/** Posts an event as ScaiKey signs it; `sign` overrides the header. */
async function deliver(
  type: string,
  data: unknown,
  opts: { id?: string; t?: number; secret?: string; header?: string | null; raw?: string } = {},
): Promise<Answer> {
  const body = opts.raw ?? JSON.stringify({ id: opts.id ?? `evt_${uid()}_${++seq}`, type, data });
  const t = String(opts.t ?? nowS());
  const header =
    opts.header === undefined
      ? `t=${t},v1=${await hmacSignature(opts.secret ?? WEBHOOK_SECRET, t, body)}`
      : opts.header;
  return send("POST", "/webhooks/scaikey", body, {
    "Content-Type": "application/json",
    ...(header === null ? {} : { "X-Scaikey-Signature": header }),
  });
}

const ok = (a: Answer) => {
  expect(a.status, JSON.stringify(a.body)).toBeLessThan(300);
  return a.body;
};

async function usersOf(tenantId: string): Promise<any[]> {
  return ok(await send("GET", `/api/admin/users?tenant_id=${tenantId}`)).data;
}

describe("sign-in writes the user mirror", () => {
  it("the callback upserts (tenant, sub) with the ID token's profile, and its groups become roles through the mappings", async () => {
    const tenantId = await createTenant();
    const group = `grp_${uid()}`;
    ok(
      await send("POST", `/api/admin/group_mappings?tenant_id=${tenantId}`, {
        group_id: group,
        role_id: "role_developer",
      }),
    );
    const sub = `usr_${uid()}`;
    const signIn = async (name: string, groups: string[]) => {
      issuer.nextLogin = {
        sub,
        tenant_id: tenantId,
        email: "ann@example.org",
        given_name: name,
        name,
        groups,
      };
      const login = await send("POST", "/v3/auth/login", {}, { "Content-Type": "application/json" });
      expect(login.status, JSON.stringify(login.body)).toBe(200);
      const url = new URL(login.body.authorization_url);
      expect(url.searchParams.get("redirect_uri")).toBe(REDIRECT);
      const visit = await issuer.handle(new Request(url));
      const back = new URL(visit.headers.get("location")!);
      // The browser lands on the registered redirect URI itself: GET /v3/auth/callback.
      const cb = await send("GET", `${back.pathname}${back.search}`, undefined, {
        Cookie: login.setCookie!.split(";")[0]!,
      });
      expect(cb.status, JSON.stringify(cb.body)).toBe(200);
      expect(cb.body.user).toMatchObject({ id: sub, tenant_id: tenantId, first_name: name });
      return cb.body;
    };
    await signIn("Ann", [group]);
    let rows = await usersOf(tenantId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      scaikey_id: sub,
      email: "ann@example.org",
      first_name: "Ann",
      display_name: "Ann",
      roles: [{ id: "role_developer", name: "developer" }],
    });
    // Signing in again updates the same row; leaving the group drops the role it gave.
    const again = await signIn("Annie", []);
    rows = await usersOf(tenantId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ scaikey_id: sub, first_name: "Annie", roles: [] });
    const me = await send("GET", "/v3/auth/me", undefined, { Authorization: `Bearer ${again.access_token}` });
    expect(me.body.permissions).toEqual([]);
  });

  it("a sign-in into a tenant ScaiSend does not know is 401 and writes nothing", async () => {
    const ghost = `tnt_${uid()}`;
    issuer.nextLogin = { sub: `usr_${uid()}`, tenant_id: ghost };
    const login = await send("POST", "/v3/auth/login", {}, { "Content-Type": "application/json" });
    const visit = await issuer.handle(new Request(login.body.authorization_url));
    const back = new URL(visit.headers.get("location")!);
    const cb = await send(
      "POST",
      "/v3/auth/callback",
      { code: back.searchParams.get("code"), state: back.searchParams.get("state") },
      { "Content-Type": "application/json", Cookie: login.setCookie!.split(";")[0]! },
    );
    expect(cb.status).toBe(401);
    expect(cb.body.detail).toContain(ghost);
  });
});

describe("POST /webhooks/scaikey", () => {
  const partner = () => ({ id: `prt_${uid()}`, name: "Reseller", slug: `reseller-${uid()}` });

  it("refuses a missing, malformed, wrong, other-secret or stale signature with 401, and applies nothing", async () => {
    const p = { ...partner(), updated_at: iso(Date.now()) };
    const body = JSON.stringify({ id: `evt_${uid()}`, type: "partner.created", data: p });
    const t = String(nowS());
    const right = await hmacSignature(WEBHOOK_SECRET, t, body);
    const cases: [string | null, string][] = [
      [null, "Missing"],
      ["v1=abc", "Malformed"],
      [`t=${t}`, "Malformed"],
      [`t=${t},v1=${"0".repeat(64)}`, "does not match"],
      [`t=${t},v1=${await hmacSignature("whsec_another_secret_000000", t, body)}`, "does not match"],
      [`t=${Number(t) + 1},v1=${right}`, "does not match"],
      [`t=${nowS() - 301},v1=${await hmacSignature(WEBHOOK_SECRET, String(nowS() - 301), body)}`, "window"],
    ];
    for (const [header, why] of cases) {
      const r = await deliver("partner.created", p, { raw: body, header });
      expect(r.status, `${header}: ${JSON.stringify(r.body)}`).toBe(401);
      expect(r.body.detail).toContain(why);
    }
    // A tampered body with the original signature.
    const tampered = await deliver("partner.created", p, {
      raw: body.replace("Reseller", "Mallory"),
      header: `t=${t},v1=${right}`,
    });
    expect(tampered.status).toBe(401);
    expect((await send("GET", `/api/admin/partners/${p.id}`)).status).toBe(404);
    // One good v1 among several (a secret rotation) is enough.
    const good = await deliver("partner.created", p, {
      raw: body,
      header: `t=${t},v1=${"1".repeat(64)},v1=${right}`,
    });
    expect(ok(good)).toMatchObject({ type: "partner.created", outcome: "applied" });
    expect(ok(await send("GET", `/api/admin/partners/${p.id}`)).data).toMatchObject({
      scaikey_id: p.id,
      name: "Reseller",
    });
  });

  it("applies partner, tenant, user and membership events; a replay or an older updated_at changes nothing", async () => {
    const t0 = Date.now() - 60_000;
    const p = partner();
    const tnt = `tnt_${uid()}`;
    const usr = `usr_${uid()}`;
    ok(await deliver("partner.created", { ...p, updated_at: iso(t0) }));
    const tenantData = { id: tnt, partner_id: p.id, name: "Acme", slug: `acme-${uid()}`, status: "active" };
    ok(await deliver("tenant.created", { ...tenantData, updated_at: iso(t0), ignored_field: 1 }));
    const tenant = ok(await send("GET", `/api/admin/tenants/${tnt}`)).data;
    const localPartner = ok(await send("GET", `/api/admin/partners/${p.id}`)).data;
    expect(tenant).toMatchObject({
      scaikey_id: tnt,
      name: "Acme",
      status: "active",
      partner_id: localPartner.id,
    });

    ok(
      await send("POST", `/api/admin/group_mappings?tenant_id=${tenant.id}`, {
        group_id: "grp_ops",
        role_id: "role_admin",
      }),
    );
    const userData = { id: usr, tenant_id: tnt, email: "bo@example.org", given_name: "Bo", name: "Bo K" };
    const created = { id: `evt_${uid()}` };
    ok(await deliver("user.created", { ...userData, updated_at: iso(t0) }, created));
    expect(await usersOf(tenant.id)).toMatchObject([{ scaikey_id: usr, first_name: "Bo", roles: [] }]);

    // Replayed: same event id → "duplicate", nothing changes.
    const replay = await deliver(
      "user.created",
      { ...userData, given_name: "Replayed", updated_at: iso(t0 + 5) },
      created,
    );
    expect(ok(replay).outcome).toBe("duplicate");
    // A newer update applies; an older one (a new event id, a stale record) does not.
    expect(
      ok(await deliver("user.updated", { ...userData, given_name: "Bob", updated_at: iso(t0 + 10) })).outcome,
    ).toBe("applied");
    expect(
      ok(await deliver("user.updated", { ...userData, given_name: "Old", updated_at: iso(t0 + 5) })).outcome,
    ).toBe("unchanged");
    expect((await usersOf(tenant.id))[0].first_name).toBe("Bob");

    // Membership: the mapped group makes the user an admin; leaving it takes that away.
    const m = { tenant_id: tnt, user_id: usr, group_id: "grp_ops" };
    expect(ok(await deliver("group_membership.created", m)).outcome).toBe("applied");
    expect(ok(await deliver("group_membership.created", m)).outcome).toBe("unchanged");
    expect((await usersOf(tenant.id))[0].roles).toEqual([{ id: "role_admin", name: "admin" }]);
    expect(ok(await deliver("group_membership.deleted", m)).outcome).toBe("applied");
    expect((await usersOf(tenant.id))[0].roles).toEqual([]);

    // An older tenant record does not undo a newer one.
    ok(await deliver("tenant.updated", { ...tenantData, name: "Acme Ltd", updated_at: iso(t0 + 20) }));
    ok(await deliver("tenant.updated", { ...tenantData, name: "Acme (old)", updated_at: iso(t0 + 15) }));
    expect(ok(await send("GET", `/api/admin/tenants/${tnt}`)).data.name).toBe("Acme Ltd");

    // Deletions: an older delete is ignored, a current one removes the user.
    expect(
      ok(await deliver("user.deleted", { id: usr, tenant_id: tnt, updated_at: iso(t0 + 1) })).outcome,
    ).toBe("unchanged");
    expect(
      ok(await deliver("user.deleted", { id: usr, tenant_id: tnt, updated_at: iso(t0 + 30) })).outcome,
    ).toBe("applied");
    expect(await usersOf(tenant.id)).toEqual([]);
    // The partner goes; its tenant stays, without a partner.
    ok(await deliver("partner.deleted", { id: p.id, updated_at: iso(t0 + 40) }));
    expect((await send("GET", `/api/admin/partners/${p.id}`)).status).toBe(404);
    expect(ok(await send("GET", `/api/admin/tenants/${tnt}`)).data.partner_id).toBeNull();
  });

  it("a suspended or deleted tenant's keys are refused at once in this isolate (403)", async () => {
    const t0 = Date.now() - 60_000;
    const tnt = `tnt_${uid()}`;
    const data = { id: tnt, name: "Suspendable", status: "active" };
    ok(await deliver("tenant.created", { ...data, updated_at: iso(t0) }));
    const local = ok(await send("GET", `/api/admin/tenants/${tnt}`)).data;
    const { key } = await createApiKey(local.id, { scopes: ["mail.send"] });
    const read = () => send("GET", "/v3/messages?limit=1", undefined, { Authorization: `Bearer ${key}` });
    expect((await read()).status).toBe(200);
    ok(await deliver("tenant.updated", { ...data, status: "suspended", updated_at: iso(t0 + 1) }));
    expect((await read()).status).toBe(403);
    ok(await deliver("tenant.updated", { ...data, status: "active", updated_at: iso(t0 + 2) }));
    expect((await read()).status).toBe(200);
    ok(await deliver("tenant.deleted", { id: tnt, updated_at: iso(t0 + 3) }));
    expect((await read()).status).toBe(403);
    expect(ok(await send("GET", `/api/admin/tenants/${tnt}`)).data.status).toBe("suspended");
  });

  it("400 for bodies that are not a known event, 409 for a record whose parent is not mirrored", async () => {
    const bad = async (type: string, data: unknown, want: string, raw?: string) => {
      const r = await deliver(type, data, raw === undefined ? {} : { raw });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.detail).toContain(want);
    };
    await bad("x", {}, "not valid JSON", "{nope");
    await bad("x", {}, "id", JSON.stringify({ type: "user.created", data: {} }));
    await bad("user.renamed", {}, "Unsupported event type");
    await bad("partner.created", { id: "prt_1", name: "No slug", updated_at: iso(Date.now()) }, "data.slug");
    await bad(
      "tenant.created",
      { id: "tnt_1", name: "x", status: "paused", updated_at: iso(Date.now()) },
      "data.status",
    );
    await bad(
      "user.created",
      { id: "usr_1", tenant_id: "tnt_1", updated_at: "yesterday" },
      "data.updated_at",
    );
    const huge = await deliver("partner.created", {}, { raw: JSON.stringify({ pad: "x".repeat(300_000) }) });
    expect(huge.status).toBe(413);
    const orphan = await deliver("user.created", {
      id: `usr_${uid()}`,
      tenant_id: `tnt_${uid()}`,
      updated_at: iso(Date.now()),
    });
    expect(orphan.status).toBe(409);
    expect(orphan.body.detail).toContain("not mirrored yet");
    const noPartner = await deliver("tenant.created", {
      id: `tnt_${uid()}`,
      partner_id: `prt_${uid()}`,
      name: "x",
      status: "active",
      updated_at: iso(Date.now()),
    });
    expect(noPartner.status).toBe(409);
  });
});

describe("bulk sync (POST /api/admin/scaikey/sync and /sync/prune)", () => {
  it("upserts pages, reports records it cannot take, and prunes what a run did not see", async () => {
    const t0 = Date.now() - 60_000;
    const tnt = `tnt_${uid()}`;
    const first = ok(await send("GET", "/api/admin/scaikey")).data;
    expect(first).toMatchObject({
      issuer: ISSUER,
      client_id: CLIENT.id,
      has_client_secret: true,
      has_webhook_secret: true,
    });
    expect(JSON.stringify(first)).not.toContain(CLIENT.secret);
    expect(JSON.stringify(first)).not.toContain(WEBHOOK_SECRET);
    const run1 = first.server_time;
    ok(
      await send("POST", "/api/admin/scaikey/sync", {
        run: run1,
        kind: "tenants",
        records: [{ id: tnt, name: "Synced", status: "active", updated_at: iso(t0) }],
      }),
    );
    const users = Array.from({ length: 5 }, (_, i) => ({
      id: `usr_${i}_${uid()}`,
      tenant_id: tnt,
      email: `u${i}@example.org`,
      groups: ["grp_a"],
      updated_at: iso(t0),
    }));
    const page = ok(
      await send("POST", "/api/admin/scaikey/sync", {
        run: run1,
        kind: "users",
        tenant_id: tnt,
        records: users,
      }),
    );
    expect(page.data).toEqual({ applied: 5, unchanged: 0, failed: [] });
    const local = ok(await send("GET", `/api/admin/tenants/${tnt}`)).data;
    expect(await usersOf(local.id)).toHaveLength(5);

    // Run 2 sees only three users: prune removes the other two, keeps the three.
    const run2 = ok(await send("GET", "/api/admin/scaikey")).data.server_time;
    ok(
      await send("POST", "/api/admin/scaikey/sync", {
        run: run2,
        kind: "tenants",
        records: [{ id: tnt, name: "Synced", status: "active", updated_at: iso(t0) }],
      }),
    );
    const again = ok(
      await send("POST", "/api/admin/scaikey/sync", {
        run: run2,
        kind: "users",
        tenant_id: tnt,
        records: users.slice(0, 3),
      }),
    );
    expect(again.data).toEqual({ applied: 0, unchanged: 3, failed: [] });
    const pruned = ok(
      await send("POST", "/api/admin/scaikey/sync/prune", { run: run2, kind: "users", tenant_id: tnt }),
    );
    expect(pruned.data.removed.sort()).toEqual(
      users
        .slice(3)
        .map((u) => u.id)
        .sort(),
    );
    expect((await usersOf(local.id)).map((u) => u.scaikey_id).sort()).toEqual(
      users
        .slice(0, 3)
        .map((u) => u.id)
        .sort(),
    );

    // Invalid records are 400 naming the index; a user of another tenant on the page is 400 too.
    const invalid = await send("POST", "/api/admin/scaikey/sync", {
      run: run2,
      kind: "users",
      tenant_id: tnt,
      records: [users[0], { id: "x" }],
    });
    expect(invalid.status).toBe(400);
    expect(invalid.body.detail).toContain("records.1");
    const mixed = await send("POST", "/api/admin/scaikey/sync", {
      run: run2,
      kind: "users",
      tenant_id: tnt,
      records: [{ ...users[0], tenant_id: "tnt_other" }],
    });
    expect(mixed.status).toBe(400);
    // A tenant whose partner is not mirrored is listed as failed, the others applied.
    const partial = ok(
      await send("POST", "/api/admin/scaikey/sync", {
        run: run2,
        kind: "tenants",
        records: [
          {
            id: `tnt_${uid()}`,
            partner_id: "prt_missing",
            name: "Orphan",
            status: "active",
            updated_at: iso(t0),
          },
          { id: tnt, name: "Synced", status: "active", updated_at: iso(t0) },
        ],
      }),
    );
    expect(partial.data.unchanged).toBe(1);
    expect(partial.data.failed).toMatchObject([{ error: expect.stringContaining("prt_missing") }]);
    // The operator only.
    const local2 = await createTenant();
    const { key } = await createApiKey(local2, { scopes: ["admin.users"] });
    expect(
      (
        await send(
          "POST",
          "/api/admin/scaikey/sync/prune",
          { run: run2, kind: "partners" },
          { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
        )
      ).status,
    ).toBe(403);
  });
});
