/**
 * Signing in to the dashboard with ScaiKey (docs/dashboard.md#sign-in) on the real app and D1: the
 * local OIDC issuer (test/helpers/oidc-issuer.ts) is the edge's outbound fetch for discovery, the
 * token endpoint and the JWKS, and plays the browser's visit to its authorize page. Covered: the full
 * flow to a session whose roles come from the user's ScaiKey groups, a bad state, a bad nonce, an
 * expired ID token, a wrong audience, an unknown or suspended tenant, ScaiKey's own refusal, login
 * CSRF on the start, and no button and 404 where no issuer is configured.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import { createDb } from "../../edge/src/db/client.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { CONTENT_SECURITY_POLICY } from "../../edge/src/surfaces/dashboard/layout.tsx";
import { DISCOVERY_BUDGET_MS } from "../../edge/src/surfaces/dashboard/login.tsx";
import { tenantStatusCache } from "../../edge/src/services/jwt-auth.ts";
import { oidcClient } from "../../edge/src/services/oidc.ts";
import { applyMembership } from "../../edge/src/services/scaikey-mirror.ts";
import type { LoginUser } from "../helpers/oidc-issuer.ts";
import { AUDIENCE, CLIENT, ISSUER, useLocalOidc } from "./oidc.helpers.ts";
import { BASE, createTenant, operatorHeaders, uid } from "./helpers.ts";

const CALLBACK = `${BASE}/app/login/scaikey/callback`;
const oidc = useLocalOidc(`${BASE}/v3/auth/callback`);
const oidcEnv = oidc.env;
const app = createApp();

interface Answer {
  status: number;
  text: string;
  csp: string | null;
  location: string | null;
  cookies: string[];
}

async function request(
  path: string,
  init: { method?: string; cookies?: string[]; body?: URLSearchParams; origin?: string | null } = {},
  e: Bindings = oidcEnv,
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (init.cookies?.length) headers.Cookie = init.cookies.join("; ");
  if (init.body) headers["Content-Type"] = "application/x-www-form-urlencoded";
  if (init.origin !== null && init.method === "POST") headers.Origin = init.origin ?? BASE;
  const ctx = createExecutionContext();
  const res = await app.request(
    path.startsWith("http") ? path : `${BASE}${path}`,
    { method: init.method ?? "GET", headers, ...(init.body ? { body: init.body } : {}), redirect: "manual" },
    e,
    ctx,
  );
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  return {
    status: res.status,
    text,
    location: res.headers.get("location"),
    csp: res.headers.get("content-security-policy"),
    cookies: res.headers.getSetCookie(),
  };
}

/** name=value of the Set-Cookie named `name` (undefined if absent; "" if it is cleared). */
const cookie = (a: Answer, name: string) => a.cookies.find((c) => c.startsWith(`${name}=`))?.split(";")[0];

/** Start at the dashboard (the "Sign in with ScaiKey" button), then the user's visit to ScaiKey. */
async function atScaiKey(user: LoginUser, next = "/app/stats", tamper: (authorize: URL) => void = () => {}) {
  oidc.issuer.nextLogin = user;
  const start = await request("/app/login/scaikey", { method: "POST", body: new URLSearchParams({ next }) });
  expect(start.status, start.text).toBe(303);
  const authorize = new URL(start.location!);
  tamper(authorize);
  const visit = await oidc.issuer.handle(new Request(authorize));
  expect(visit.status).toBe(302);
  return {
    start,
    authorize,
    callback: visit.headers.get("location")!,
    cookies: [cookie(start, "scaisend_oidc")!, cookie(start, "scaisend_oidc_next")!],
  };
}

/** A tenant role with these permissions, held by members of ScaiKey group `groupId`. */
async function groupRole(tenantId: string, groupId: string, permissions: string[]): Promise<void> {
  const op = async (path: string, body: unknown) => {
    const ctx = createExecutionContext();
    const res = await app.request(
      `${BASE}${path}`,
      { method: "POST", headers: operatorHeaders(), body: JSON.stringify(body) },
      oidcEnv,
      ctx,
    );
    const text = await res.text();
    await waitOnExecutionContext(ctx);
    expect(res.status, text).toBe(201);
    return (JSON.parse(text) as { data: { id: string } }).data;
  };
  const role = await op(`/api/admin/roles?tenant_id=${tenantId}`, { name: `role-${uid()}`, permissions });
  await op(`/api/admin/group_mappings?tenant_id=${tenantId}`, { group_id: groupId, role_id: role.id });
}

const userOf = (tenantId: string, extra: Partial<LoginUser> = {}): LoginUser => ({
  sub: `usr_${uid()}`,
  tenant_id: tenantId,
  email: `ann-${uid()}@example.org`,
  name: "Ann Lee",
  ...extra,
});

/** The callback left no session behind and spent the login transaction. */
function expectRefused(a: Answer, status: number, detail: string) {
  expect(a.status, a.text).toBe(status);
  expect(a.text).toContain(detail);
  expect(a.text).toContain('role="alert"');
  expect(cookie(a, "scaisend_session")).toBeUndefined();
  expect(cookie(a, "scaisend_oidc")).toBe("scaisend_oidc=");
}

describe("sign-in with ScaiKey", () => {
  it("button → ScaiKey → callback: a session for the mirrored user, its roles from its ScaiKey groups", async () => {
    const tenantId = await createTenant();
    const group = `grp_${uid()}`;
    await groupRole(tenantId, group, ["stats.read"]);
    const user = userOf(tenantId, { groups: [group, "grp_unmapped"] });

    const page = await request("/app/login?next=%2Fapp%2Fstats");
    expect(page.status).toBe(200);
    expect(page.text).toContain('action="/app/login/scaikey"');
    expect(page.text).toContain("Sign in with ScaiKey");

    const { start, authorize, callback, cookies } = await atScaiKey(user);
    expect(authorize.origin + authorize.pathname).toBe(`${ISSUER}/oauth/authorize`);
    const q = authorize.searchParams;
    expect(q.get("client_id")).toBe(CLIENT.id);
    expect(q.get("redirect_uri")).toBe(CALLBACK);
    expect(q.get("response_type")).toBe("code");
    expect(q.get("code_challenge_method")).toBe("S256");
    expect(q.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get("state")).toBeTruthy();
    expect(q.get("nonce")).toBeTruthy();
    const tx = start.cookies.find((c) => c.startsWith("scaisend_oidc="))!;
    expect(tx).toMatch(/HttpOnly/i);
    expect(tx).toMatch(/Secure/i);
    expect(tx).toMatch(/SameSite=Lax/i);
    expect(tx).toMatch(/Path=\/app\/login\/scaikey(;|$)/);
    // Sealed: neither the state nor the nonce shows in it.
    expect(tx).not.toContain(q.get("state")!);
    expect(tx).not.toContain(q.get("nonce")!);
    expect(callback.startsWith(`${CALLBACK}?`)).toBe(true);

    const back = await request(callback, { cookies });
    expect(back.status, back.text).toBe(303);
    expect(back.location).toBe("/app/stats");
    const session = cookie(back, "scaisend_session")!;
    expect(session).toMatch(/^scaisend_session=[0-9a-f]{64}$/);
    expect(cookie(back, "scaisend_oidc")).toBe("scaisend_oidc=");
    expect(oidc.issuer.requests).toEqual([
      "GET /.well-known/openid-configuration",
      "GET /oauth/authorize",
      "POST /oauth/token",
      "GET /.well-known/jwks.json",
    ]);

    // The user is in the tenant's mirror with its groups; the session is that user's.
    const mirrored = await env.DB.prepare(
      "SELECT id, email FROM users WHERE tenant_id = ? AND scaikey_id = ?",
    )
      .bind(tenantId, user.sub)
      .first<{ id: string; email: string }>();
    expect(mirrored?.email).toBe(user.email);
    const groups = await env.DB.prepare(
      "SELECT group_id FROM user_groups WHERE user_id = ? ORDER BY group_id",
    )
      .bind(mirrored!.id)
      .all<{ group_id: string }>();
    expect(groups.results.map((r) => r.group_id).sort()).toEqual([group, "grp_unmapped"].sort());
    const row = await env.DB.prepare(
      "SELECT tenant_id, login_id, user_id FROM dashboard_sessions WHERE user_id = ?",
    )
      .bind(mirrored!.id)
      .first();
    expect(row).toEqual({ tenant_id: tenantId, login_id: null, user_id: mirrored!.id });

    // The group's role grants stats.read and nothing else: stats open, keys refused and not linked.
    const stats = await request("/app/stats", { cookies: [session] });
    expect(stats.status, stats.text).toBe(200);
    expect(stats.text).toContain(user.email!);
    expect(stats.text).not.toContain('href="/app/keys"');
    expect((await request("/app/keys", { cookies: [session] })).status).toBe(403);

    // Roles follow the mirrored groups: the user leaves the group through the mirror (as the sync
    // webhook's membership.removed applies it) and stats is refused on the next page.
    expect(
      await applyMembership(
        createDb(env.DB),
        { tenant_id: tenantId, user_id: user.sub, group_id: group },
        false,
      ),
    ).toBe("applied");
    expect((await request("/app/stats", { cookies: [session] })).status).toBe(403);
    // Deleted from the mirror: the session is gone with it.
    await env.DB.prepare("DELETE FROM users WHERE id = ?").bind(mirrored!.id).run();
    const gone = await request("/app/stats", { cookies: [session] });
    expect(gone.status).toBe(303);
    expect(gone.location).toMatch(/^\/app\/login/);
  });

  it("a callback whose state is not the browser's login is refused (401) before ScaiKey's token endpoint", async () => {
    const tenantId = await createTenant();
    const a = await atScaiKey(userOf(tenantId));
    const b = await atScaiKey(userOf(tenantId));
    const withState = (url: string, state: string) => {
      const u = new URL(url);
      u.searchParams.set("state", state);
      return u.href;
    };
    const sealed = a.cookies[0]!;
    const cases: [string, string, string[]][] = [
      ["no login cookie", a.callback, []],
      [
        "another login's state",
        withState(a.callback, new URL(b.callback).searchParams.get("state")!),
        a.cookies,
      ],
      ["another login's cookie", a.callback, b.cookies],
      ["a forged cookie", a.callback, [`${sealed.slice(0, -4)}AAAA`]],
    ];
    for (const [label, url, cookies] of cases) {
      const r = await request(url, { cookies });
      expect(r.status, label).toBe(401);
      expectRefused(r, 401, "state does not match");
    }
    expect(oidc.issuer.requests.filter((r) => r === "POST /oauth/token")).toEqual([]);
    // A callback without code or state at all is a 400, ScaiKey's refusal a 401: no session either way.
    expectRefused(await request("/app/login/scaikey/callback", { cookies: a.cookies }), 400, "code or state");
    expectRefused(
      await request("/app/login/scaikey/callback?error=access_denied&state=x", { cookies: a.cookies }),
      401,
      "ScaiKey did not sign you in (access_denied)",
    );
    // The untouched pair still signs in.
    expect((await request(b.callback, { cookies: b.cookies })).status).toBe(303);
  });

  it("an ID token with another nonce, past its expiry, or for another audience makes no session", async () => {
    const tenantId = await createTenant();
    // Each refusal below comes after ScaiKey's token endpoint answered 200: it is the ID token's check.
    const tokenAnswers: number[] = [];
    const recording =
      (inner: (url: string, init: RequestInit) => Promise<Response>) =>
      async (url: string, init: RequestInit): Promise<Response> => {
        const res = await inner(url, init);
        if (url.endsWith("/oauth/token")) tokenAnswers.push(res.status);
        return res;
      };
    oidcClient.fetcher = recording(oidc.issuer.fetch);

    // The nonce ScaiKey puts in the ID token is not the one the login sealed.
    const nonce = await atScaiKey(userOf(tenantId), "/app/stats", (u) =>
      u.searchParams.set("nonce", "a-nonce-of-another-login"),
    );
    const nonceAnswer = await request(nonce.callback, { cookies: nonce.cookies });
    expectRefused(nonceAnswer, 400, "Signing in with ScaiKey failed");
    expect(nonceAnswer.text).toMatch(/ID token was refused: [^<]*nonce/);

    // Issued ten minutes ago (ScaiKey's clock), so expired five minutes ago: beyond the 30 s skew.
    const expired = await atScaiKey(userOf(tenantId));
    oidc.issuer.clock = () => oidc.clock - 10 * 60_000;
    const expiredAnswer = await request(expired.callback, { cookies: expired.cookies });
    expectRefused(expiredAnswer, 400, "Signing in with ScaiKey failed");
    expect(expiredAnswer.text).toMatch(/ID token was refused: [^<]*exp/);
    oidc.issuer.clock = () => oidc.clock;

    // ScaiKey issues the ID token to another client (aud): the token endpoint is asked as this
    // client, and answers as the other.
    const other = { id: "another-client", secret: "another-secret-0123456789" };
    const aud = await atScaiKey(userOf(tenantId));
    oidcClient.fetcher = recording(async (url: string, init: RequestInit) => {
      if (!url.endsWith("/oauth/token")) return oidc.issuer.fetch(url, init);
      const mine = { ...oidc.issuer.client };
      Object.assign(oidc.issuer.client, other);
      try {
        const headers = new Headers(init.headers);
        headers.set("authorization", `Basic ${btoa(`${other.id}:${other.secret}`)}`);
        return await oidc.issuer.fetch(url, { ...init, headers });
      } finally {
        Object.assign(oidc.issuer.client, mine);
      }
    });
    const audAnswer = await request(aud.callback, { cookies: aud.cookies });
    expectRefused(audAnswer, 400, "Signing in with ScaiKey failed");
    expect(audAnswer.text).toMatch(/ID token was refused: [^<]*aud/);
    oidcClient.fetcher = oidc.issuer.fetch;
    expect(tokenAnswers).toEqual([200, 200, 200]);

    const none = await env.DB.prepare(
      "SELECT count(*) AS n FROM dashboard_sessions WHERE tenant_id = ? AND user_id IS NOT NULL",
    )
      .bind(tenantId)
      .first<{ n: number }>();
    expect(none?.n).toBe(0);
  });

  it("a suspended tenant's user is refused (403), an unknown tenant's too (401), with a page that says why", async () => {
    const tenantId = await createTenant();
    const suspended = await atScaiKey(userOf(tenantId));
    await env.DB.prepare("UPDATE tenants SET status = 'suspended' WHERE id = ?").bind(tenantId).run();
    tenantStatusCache.clear();
    expectRefused(await request(suspended.callback, { cookies: suspended.cookies }), 403, "Tenant suspended");

    const unknown = await atScaiKey(userOf(`tnt_${uid()}`));
    expectRefused(await request(unknown.callback, { cookies: unknown.cookies }), 401, "Unknown tenant");

    // A session made while the tenant was active stops working once it is suspended.
    const active = await createTenant();
    const ok = await atScaiKey(userOf(active));
    const back = await request(ok.callback, { cookies: ok.cookies });
    const session = cookie(back, "scaisend_session")!;
    expect((await request("/app/messages", { cookies: [session] })).status).toBe(200);
    await env.DB.prepare("UPDATE tenants SET status = 'suspended' WHERE id = ?").bind(active).run();
    expect((await request("/app/messages", { cookies: [session] })).status).toBe(303);
  });

  it("the start is a same-origin POST only, and goes back only to a dashboard path", async () => {
    oidc.issuer.nextLogin = userOf(await createTenant());
    const cross = await request("/app/login/scaikey", {
      method: "POST",
      body: new URLSearchParams({ next: "/app/stats" }),
      origin: "https://evil.example",
    });
    expect(cross.status).toBe(403);
    expect(cross.cookies).toEqual([]);
    const extra = await request("/app/login/scaikey", {
      method: "POST",
      body: new URLSearchParams({ next: "/app/stats", redirect_uri: "https://evil.example/" }),
    });
    expect(extra.status).toBe(400);
    const away = await atScaiKey(userOf(await createTenant()), "//evil.example/app/x");
    const back = await request(away.callback, { cookies: away.cookies });
    expect(back.status).toBe(303);
    expect(back.location).toBe("/app/messages");
  });

  it("a page with the button lets forms go to ScaiKey's authorization endpoint, and nowhere else", async () => {
    // The button's POST is answered with a 303 there, and browsers apply form-action to redirects.
    const widened = CONTENT_SECURITY_POLICY.replace("form-action 'self'", `form-action 'self' ${ISSUER}`);
    expect(widened).not.toBe(CONTENT_SECURITY_POLICY);
    const page = await request("/app/login");
    expect(page.text).toContain("Sign in with ScaiKey");
    expect(page.csp).toBe(widened);
    // The page shown after a refused callback has the button too.
    const tenantId = await createTenant();
    const { callback, cookies } = await atScaiKey(userOf(tenantId));
    const forged = new URL(callback);
    forged.searchParams.set("state", "another-state");
    const refused = await request(forged.href, { cookies });
    expect(refused.status).toBe(401);
    expect(refused.csp).toBe(widened);
    // A wrong password's page as well; without an issuer, the dashboard's own policy.
    const wrong = await request("/app/login", {
      method: "POST",
      body: new URLSearchParams({ email: `nobody-${uid()}@example.org`, password: "not a password at all" }),
    });
    expect(wrong.status).toBe(401);
    expect(wrong.csp).toBe(widened);
    expect((await request("/app/login", {}, { ...env } as Bindings)).csp).toBe(CONTENT_SECURITY_POLICY);
  });

  it("a ScaiKey that does not answer holds the sign-in page up for one second at most", async () => {
    // Discovery hangs: the page answers after the budget, with the issuer's origin as the form target.
    oidcClient.fetcher = (_url, init) =>
      new Promise((_resolve, reject) =>
        (init.signal as AbortSignal | undefined)?.addEventListener("abort", () =>
          reject(new Error("aborted")),
        ),
      );
    const started = Date.now();
    const page = await request("/app/login");
    const took = Date.now() - started;
    expect(page.status).toBe(200);
    expect(page.text).toContain("Sign in with ScaiKey");
    expect(page.csp).toBe(
      CONTENT_SECURITY_POLICY.replace("form-action 'self'", `form-action 'self' ${ISSUER}`),
    );
    expect(took).toBeGreaterThanOrEqual(DISCOVERY_BUDGET_MS - 50);
    expect(took).toBeLessThan(DISCOVERY_BUDGET_MS + 3_000);
  });

  it("without an issuer there is no button, and both routes are 404", async () => {
    const plain = { ...env } as Bindings;
    const page = await request("/app/login", {}, plain);
    expect(page.status).toBe(200);
    expect(page.csp).toBe(CONTENT_SECURITY_POLICY);
    expect(page.text).not.toContain("Sign in with ScaiKey");
    expect(page.text).toContain('action="/app/login"');
    const start = await request(
      "/app/login/scaikey",
      { method: "POST", body: new URLSearchParams({ next: "/app/stats" }) },
      plain,
    );
    expect(start.status).toBe(404);
    expect((await request("/app/login/scaikey/callback?code=x&state=y", {}, plain)).status).toBe(404);
    expect(oidc.issuer.requests).toEqual([]);
  });
});
