/**
 * /v3/auth login, callback, refresh and logout (docs/api/sendgrid.md#v3auth) end to end on the real
 * app: the local OIDC issuer (test/helpers/oidc-issuer.ts) is the edge's outbound fetch for
 * discovery, the token endpoint and the JWKS, and plays the browser's visit to its authorize
 * endpoint. The tokens it issues then authenticate as any ScaiKey JWT does.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { LOGIN_TTL_MS, oidcClient } from "../../edge/src/services/oidc.ts";
import { LocalOidcIssuer } from "../helpers/oidc-issuer.ts";
import { AUDIENCE, CLIENT, ISSUER, useLocalOidc } from "./oidc.helpers.ts";
import { BASE, createTenant, uid } from "./helpers.ts";

const REDIRECT = "https://admin.scaisend.test/auth/callback";
const oidc = useLocalOidc(REDIRECT);
const oidcEnv = oidc.env;
const app = createApp();

interface Answer {
  status: number;
  body: any;
  setCookie: string | null;
}

async function post(
  path: string,
  body: unknown,
  opts: { cookie?: string; token?: string; e?: Bindings; method?: string } = {},
): Promise<Answer> {
  const ctx = createExecutionContext();
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (opts.cookie) headers.Cookie = opts.cookie;
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  const res = await app.request(
    `${BASE}${path}`,
    { method: opts.method ?? "POST", headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) },
    opts.e ?? oidcEnv,
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

/** The cookie pair a browser would send back (name=value of the Set-Cookie). */
const cookieOf = (setCookie: string | null) => setCookie!.split(";")[0]!;

/** Login at the edge, then the user's visit to ScaiKey's authorize page: code, state, iss, cookie. */
async function loginAtIssuer(email = "ann@example.org") {
  const login = await post("/v3/auth/login", { email });
  expect(login.status, JSON.stringify(login.body)).toBe(200);
  const url = new URL(login.body.authorization_url);
  expect(url.origin + url.pathname).toBe(`${ISSUER}/oauth/authorize`);
  expect(url.searchParams.get("state")).toBe(login.body.state);
  expect(url.searchParams.get("client_id")).toBe(CLIENT.id);
  expect(url.searchParams.get("redirect_uri")).toBe(REDIRECT);
  expect(url.searchParams.get("code_challenge_method")).toBe("S256");
  expect(url.searchParams.get("login_hint")).toBe(email);
  expect(url.searchParams.get("nonce")).toBeTruthy();
  expect(login.setCookie).toMatch(/HttpOnly/i);
  expect(login.setCookie).toMatch(/Secure/i);
  expect(login.setCookie).toMatch(/SameSite=Lax/i);
  // What the cookie carries is sealed: neither the state nor the PKCE verifier shows in it.
  expect(login.setCookie).not.toContain(login.body.state);
  const visit = await oidc.issuer.handle(new Request(url));
  expect(visit.status).toBe(302);
  const back = new URL(visit.headers.get("location")!);
  expect(back.origin + back.pathname).toBe(REDIRECT);
  return {
    code: back.searchParams.get("code")!,
    state: back.searchParams.get("state")!,
    iss: back.searchParams.get("iss")!,
    cookie: cookieOf(login.setCookie),
  };
}

describe("the OIDC code flow", () => {
  it("login → ScaiKey → callback yields tokens and the user; the access token is a working principal", async () => {
    const tenantId = await createTenant();
    const sub = `usr_${uid()}`;
    oidc.issuer.nextLogin = {
      sub,
      tenant_id: tenantId,
      roles: ["developer"],
      email: "ann@example.org",
      given_name: "Ann",
      family_name: "Lee",
      name: "Ann Lee",
    };
    const { code, state, iss, cookie } = await loginAtIssuer();
    const cb = await post("/v3/auth/callback", { code, state, iss }, { cookie });
    expect(cb.status, JSON.stringify(cb.body)).toBe(200);
    expect(cb.body).toMatchObject({
      expires_in: 3600,
      user: {
        id: sub,
        email: "ann@example.org",
        first_name: "Ann",
        last_name: "Lee",
        display_name: "Ann Lee",
        tenant_id: tenantId,
      },
    });
    expect(cb.body.refresh_token).toMatch(/^rtk_/);
    expect(decodeJwt(cb.body.access_token)).toMatchObject({ sub, tenant_id: tenantId, aud: AUDIENCE });
    // The login cookie is spent.
    expect(cb.setCookie).toMatch(/scaisend_oidc=;/);
    expect(cb.setCookie).toMatch(/Max-Age=0/i);
    // Discovery, token endpoint, JWKS: each asked as the flow needs, nothing else.
    expect(oidc.issuer.requests).toEqual([
      "GET /.well-known/openid-configuration",
      "GET /oauth/authorize",
      "POST /oauth/token",
      "GET /.well-known/jwks.json",
    ]);

    const me = await post("/v3/auth/me", undefined, { token: cb.body.access_token, method: "GET" });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: sub, tenant_id: tenantId, roles: ["developer"] });
    expect(me.body.permissions).toContain("mail.send");

    // The code is single-use: the same callback again is refused by ScaiKey → 400.
    const again = await post("/v3/auth/callback", { code, state, iss }, { cookie });
    expect(again.status).toBe(400);
    expect(again.body.detail).toContain("invalid or expired");
  });

  it("refresh rotates the refresh token; the old one is then refused (401)", async () => {
    const tenantId = await createTenant();
    oidc.issuer.nextLogin = { sub: `usr_${uid()}`, tenant_id: tenantId, roles: ["admin"] };
    const { code, state, cookie } = await loginAtIssuer();
    const cb = await post("/v3/auth/callback", { code, state }, { cookie });
    expect(cb.status).toBe(200);
    oidc.clock += 5_000;
    const r1 = await post("/v3/auth/refresh", { refresh_token: cb.body.refresh_token });
    expect(r1.status, JSON.stringify(r1.body)).toBe(200);
    expect(r1.body.refresh_token).not.toBe(cb.body.refresh_token);
    expect(r1.body.expires_in).toBe(3600);
    const me = await post("/v3/auth/me", undefined, { token: r1.body.access_token, method: "GET" });
    expect(me.status).toBe(200);
    const stale = await post("/v3/auth/refresh", { refresh_token: cb.body.refresh_token });
    expect(stale.status).toBe(401);
    expect((await post("/v3/auth/refresh", {})).status).toBe(422);
  });

  it("the callback is 401 without the login cookie, with another state, with a forged cookie, or after the login expired", async () => {
    const tenantId = await createTenant();
    oidc.issuer.nextLogin = { sub: `usr_${uid()}`, tenant_id: tenantId };
    const a = await loginAtIssuer();
    const b = await loginAtIssuer();
    const cases: [string, unknown, string | undefined][] = [
      ["no cookie", { code: a.code, state: a.state }, undefined],
      ["state of another login", { code: a.code, state: b.state }, a.cookie],
      ["cookie of another login", { code: a.code, state: a.state }, b.cookie],
      [
        "forged cookie",
        { code: a.code, state: a.state },
        `scaisend_oidc=${a.cookie.split("=")[1]!.slice(0, -4)}AAAA`,
      ],
    ];
    for (const [label, body, cookie] of cases) {
      const r = await post("/v3/auth/callback", body, cookie ? { cookie } : {});
      expect(r.status, label).toBe(401);
      expect(r.body.detail, label).toContain("state");
    }
    // None of these reached ScaiKey's token endpoint.
    expect(oidc.issuer.requests.filter((r) => r === "POST /oauth/token")).toEqual([]);
    // The untouched pair still works, until the login's lifetime is over.
    oidc.clock += LOGIN_TTL_MS + 1;
    const late = await post("/v3/auth/callback", { code: a.code, state: a.state }, { cookie: a.cookie });
    expect(late.status).toBe(401);
    expect(late.body.detail).toContain("expired");
    oidc.clock -= LOGIN_TTL_MS + 1;
    expect(
      (await post("/v3/auth/callback", { code: b.code, state: b.state }, { cookie: b.cookie })).status,
    ).toBe(200);
  });

  it("bad bodies are 422, logout is 200 and clears the cookie, and without the client settings login is 404", async () => {
    expect((await post("/v3/auth/login", { email: "not-an-email" })).status).toBe(422);
    expect((await post("/v3/auth/login", { redirect_uri: "https://evil.example" })).status).toBe(422);
    expect((await post("/v3/auth/callback", { code: "x" })).status).toBe(422);
    const out = await post("/v3/auth/logout", undefined);
    expect(out.status).toBe(200);
    expect(out.setCookie).toMatch(/Max-Age=0/i);
    const {
      SCAIKEY_CLIENT_ID: _a,
      SCAIKEY_CLIENT_SECRET: _b,
      SCAIKEY_REDIRECT_URI: _c,
      ...jwtOnly
    } = oidcEnv;
    const off = await post("/v3/auth/login", {}, { e: jwtOnly as Bindings });
    expect(off.status).toBe(404);
    expect(off.body.detail).toContain("not configured");
  });

  it("a discovery document naming another issuer is refused (503), and nothing is cached", async () => {
    const impostor = await LocalOidcIssuer.create("https://impostor.test", CLIENT, AUDIENCE);
    oidcClient.fetcher = (url, init) =>
      impostor.handle(new Request(url.replace(ISSUER, "https://impostor.test"), init));
    const r = await post("/v3/auth/login", {});
    expect(r.status).toBe(503);
    oidcClient.fetcher = oidc.issuer.fetch;
    expect((await post("/v3/auth/login", {})).status).toBe(200);
  });
});
