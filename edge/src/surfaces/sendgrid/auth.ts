/**
 * `/v3/auth/*` (docs/api/sendgrid.md#v3auth). Only `/me` takes a credential; the others produce one:
 *  - `POST /login` `{email?, login_hint?}` → `{authorization_url, state}`, and a sealed, HttpOnly
 *    cookie carrying the login transaction (services/oidc.ts);
 *  - `POST /callback` `{code, state}` (+ that cookie) → ScaiKey's tokens and the user; 401 if the
 *    state does not match the cookie's, 400 if ScaiKey refuses the code. The user is written to the
 *    tenant's user mirror with its groups (services/scaikey-mirror.ts, docs/scaikey.md#sign-in);
 *    `GET /callback?code&state&iss` is the same, for a browser ScaiKey redirects here;
 *  - `POST /refresh` `{refresh_token}` → new tokens (the refresh token may rotate); 401 if refused;
 *  - `POST /logout` → 200; stateless: the login cookie is cleared, the client discards its tokens;
 *  - `GET /me`: who a ScaiKey JWT names, in which tenant, with which roles and effective
 *    permissions (services/access.ts). A JWT is required: an API key gets 401. The profile fields
 *    are the token's OpenID Connect standard claims, null when it has none.
 */
import { Hono, type Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { decodeJwt } from "jose";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { authenticate } from "../../middleware/auth.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { LOGIN_COOKIE, LOGIN_TTL_MS, oidcClient } from "../../services/oidc.ts";
import { oidcSettings } from "../../services/oidc-settings.ts";
import { applySignIn } from "../../services/scaikey-mirror.ts";
import { renderFastApi } from "../errors.ts";
import { parseInput, readJson } from "../validate.ts";

const text = (v: unknown): string | null => (typeof v === "string" ? v : null);

const LoginBody = z.strictObject({
  email: z.email().max(320).optional(),
  login_hint: z.string().min(1).max(320).optional(),
});
const CallbackBody = z.strictObject({
  code: z.string().min(1).max(4096),
  state: z.string().min(1).max(512),
  // ScaiKey's RFC 9207 `iss` from the redirect, when the client passes it on.
  iss: z.string().min(1).max(2048).optional(),
});
const RefreshBody = z.strictObject({ refresh_token: z.string().min(1).max(4096) });

const CallbackQuery = CallbackBody.extend({}).loose();

/** The code exchange, then the user into the mirror; the answer both callbacks give. */
async function finishLogin(c: Context<AppEnv>, input: z.infer<typeof CallbackBody>) {
  const s = await oidcSettings(c.get("config"), c.get("db"));
  const { tokens, user, claims } = await oidcClient.callback(s, getCookie(c, LOGIN_COOKIE), input);
  clearLoginCookie(c);
  await applySignIn(c.get("db"), user, claims, Date.now());
  c.header("Cache-Control", "no-store");
  return c.json({ ...tokens, user });
}

const COOKIE_OPTIONS = { path: "/v3/auth", httpOnly: true, secure: true, sameSite: "Lax" } as const;
const clearLoginCookie = (c: Context<AppEnv>) => deleteCookie(c, LOGIN_COOKIE, COOKIE_OPTIONS);

export const authApi = new Hono<AppEnv>()
  .post("/login", async (c) => {
    const body = parseInput(LoginBody, await readJson(c.req.raw), "body");
    const s = await oidcSettings(c.get("config"), c.get("db"));
    const login = await oidcClient.login(s, body.login_hint ?? body.email);
    setCookie(c, LOGIN_COOKIE, login.cookie, { ...COOKIE_OPTIONS, maxAge: LOGIN_TTL_MS / 1000 });
    c.header("Cache-Control", "no-store");
    return c.json({ authorization_url: login.authorizationUrl, state: login.state });
  })
  .post("/callback", async (c) => finishLogin(c, parseInput(CallbackBody, await readJson(c.req.raw), "body")))
  // ScaiKey's redirect itself (the redirect URI `scaisend register` registers); extra query
  // parameters ScaiKey adds (e.g. session_state) are not ours to refuse.
  .get("/callback", async (c) => {
    const q = parseInput(CallbackQuery, c.req.query(), "query");
    return finishLogin(c, { code: q.code, state: q.state, ...(q.iss !== undefined ? { iss: q.iss } : {}) });
  })
  .post("/refresh", async (c) => {
    const body = parseInput(RefreshBody, await readJson(c.req.raw), "body");
    const s = await oidcSettings(c.get("config"), c.get("db"));
    const tokens = await oidcClient.refresh(s, body.refresh_token);
    c.header("Cache-Control", "no-store");
    return c.json(tokens);
  })
  .post("/logout", (c) => {
    clearLoginCookie(c);
    return c.json({});
  })
  .get("/me", authenticate(), rateLimit(RATE_LIMITS.authMe), (c) => {
    const p = c.get("principal");
    if (p.kind !== "jwt") throw new AppError("unauthorized", "This endpoint needs a ScaiKey JWT");
    // The middleware verified this very token; here it is only read.
    const claims = decodeJwt(
      c.req
        .header("authorization")!
        .replace(/^Bearer\s+/i, "")
        .trim(),
    );
    return c.json({
      id: p.subject,
      email: text(claims.email),
      first_name: text(claims.given_name),
      last_name: text(claims.family_name),
      display_name: text(claims.name),
      tenant_id: p.tenantId,
      roles: [...p.roles],
      permissions: [...p.scopes],
    });
  })
  .onError(renderFastApi);
