/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Sign-in and sign-out (docs/dashboard.md#sign-in).
 *
 * An operator-created login's email and password: the form post must come from this origin (login
 * CSRF); wrong credentials and unknown emails get the same answer; a throttled (address, email) pair
 * gets 429 with Retry-After.
 *
 * Where a ScaiKey issuer is configured, "Sign in with ScaiKey": the OIDC authorization-code flow with
 * PKCE, state and nonce of services/oidc.ts (the one /v3/auth uses), redirecting back to
 * /app/login/scaikey/callback on the registered redirect URI's origin. The start is a same-origin
 * POST (a page of another site cannot start a sign-in); the transaction travels sealed in a cookie
 * scoped to /app/login/scaikey, and the callback needs that cookie and its state (constant-time).
 * The verified ID token's user goes into the tenant's mirror with its groups
 * (services/scaikey-mirror.ts) and gets a session whose roles those groups map to. Without an issuer
 * the button is not shown and both routes are 404.
 */
import { Hono, type Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { AppError, isAppError } from "../../../../shared/errors.ts";
import { signIn, signInWithScaiKey, signOut } from "../../services/dashboard-sessions.ts";
import { LOGIN_COOKIE, LOGIN_TTL_MS, oidcClient, type OidcSettings } from "../../services/oidc.ts";
import { oidcSettings } from "../../services/oidc-settings.ts";
import { CONTENT_SECURITY_POLICY, Page } from "./layout.tsx";
import {
  checkOrigin,
  clearSessionCookie,
  dashboardPermission,
  isLocalHttp,
  requireCsrf,
  requireSession,
  setSessionCookie,
  type DashboardEnv,
} from "./session.ts";

/** Only a dashboard path of this origin: never `//evil.example` or another site. */
function safeNext(next: unknown): string {
  return typeof next === "string" && /^\/app\/[^/\\]/.test(next) ? next : "/app/messages";
}

export const SCAIKEY_CALLBACK_PATH = "/app/login/scaikey/callback";
const OIDC_COOKIE_PATH = "/app/login/scaikey";
/** Where to go after a ScaiKey sign-in (checked by safeNext on the way back, like the form's `next`). */
const NEXT_COOKIE = "scaisend_oidc_next";

/** The /v3/auth settings with the dashboard's redirect URI (the registered one's origin, our path). */
async function dashboardOidc(c: Context<DashboardEnv>): Promise<OidcSettings> {
  const s = await oidcSettings(c.get("config"), c.get("db"));
  return { ...s, redirectUri: new URL(SCAIKEY_CALLBACK_PATH, s.redirectUri).href };
}

/**
 * Whether to offer "Sign in with ScaiKey": the deployment has an issuer and a client for it. Where it
 * is offered, the page's policy also lets its forms go to ScaiKey's authorization endpoint.
 */
async function scaikeyOffered(c: Context<DashboardEnv>): Promise<boolean> {
  let s: OidcSettings;
  try {
    s = await dashboardOidc(c);
  } catch (err) {
    if (isAppError(err) && err.status === 404) return false;
    throw err;
  }
  await allowScaiKeyForms(c, s);
  return true;
}

/** How long a sign-in page waits for ScaiKey's discovery document before it answers without it. */
export const DISCOVERY_BUDGET_MS = 1_000;

/**
 * The button's POST answers with a 303 to ScaiKey's authorization endpoint, and browsers check
 * `form-action` against a form's redirects too (CSP Level 3, https://www.w3.org/TR/CSP3/#directive-form-action;
 * Chromium blocks the redirect under `form-action 'self'`), so a page showing the button adds that
 * endpoint's origin to the dashboard's policy (docs/dashboard.md#security). The endpoint comes from
 * discovery (cached per isolate); a password sign-in is not held up by a slow or unreachable ScaiKey:
 * past DISCOVERY_BUDGET_MS, or when discovery fails, the issuer's own origin is allowed instead.
 */
async function allowScaiKeyForms(c: Context<DashboardEnv>, s: OidcSettings): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const endpoint = await Promise.race([
    oidcClient.authorizationEndpoint(s).catch(() => null),
    new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), DISCOVERY_BUDGET_MS))),
  ]);
  if (timer !== undefined) clearTimeout(timer);
  let origin: string;
  try {
    origin = new URL(endpoint ?? s.issuer).origin;
  } catch {
    return;
  }
  if (!/^https?:\/\/[^\s;,']+$/.test(origin)) return;
  c.header(
    "Content-Security-Policy",
    CONTENT_SECURITY_POLICY.replace("form-action 'self'", `form-action 'self' ${origin}`),
  );
}

function cookieOptions(c: Context, maxAge?: number) {
  return {
    path: OIDC_COOKIE_PATH,
    httpOnly: true,
    secure: !isLocalHttp(new URL(c.req.url)),
    sameSite: "Lax" as const,
    ...(maxAge !== undefined ? { maxAge } : {}),
  };
}

function SignInForm(props: { next: string; email?: string; problem?: string; scaikey: boolean }) {
  return (
    <Page title="Sign in">
      {props.problem ? <p role="alert">{props.problem}</p> : null}
      {props.scaikey ? (
        <form method="post" action="/app/login/scaikey" class="signin">
          <input type="hidden" name="next" value={props.next} />
          <button type="submit">Sign in with ScaiKey</button>
        </form>
      ) : null}
      <form method="post" action="/app/login" class="signin">
        <input type="hidden" name="next" value={props.next} />
        <label>
          Email
          <input type="email" name="email" autocomplete="username" required value={props.email ?? ""} />
        </label>
        <label>
          Password
          <input type="password" name="password" autocomplete="current-password" required />
        </label>
        <button type="submit">Sign in</button>
      </form>
    </Page>
  );
}

const FIELDS = new Set(["email", "password", "next"]);

export const loginApi = new Hono<DashboardEnv>()
  .get("/login", async (c) =>
    c.html(<SignInForm next={safeNext(c.req.query("next"))} scaikey={await scaikeyOffered(c)} />),
  )
  .post("/login", async (c) => {
    await checkOrigin(c);
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => !FIELDS.has(k));
    if (extra.length > 0) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const email = typeof form.email === "string" ? form.email : "";
    const password = typeof form.password === "string" ? form.password : "";
    const next = safeNext(form.next);
    const result = await signIn(
      c.get("db"),
      { email, password, clientIp: c.req.header("cf-connecting-ip") ?? "unknown" },
      Date.now(),
    );
    if (result.outcome === "throttled") {
      c.header("Retry-After", String(result.retryAfterSeconds));
      return c.html(
        <SignInForm
          next={next}
          email={email}
          scaikey={await scaikeyOffered(c)}
          problem={`Too many failed sign-ins: try again in ${Math.ceil(result.retryAfterSeconds / 60)} minutes.`}
        />,
        429,
      );
    }
    if (result.outcome === "invalid") {
      return c.html(
        <SignInForm
          next={next}
          email={email}
          scaikey={await scaikeyOffered(c)}
          problem="The email or the password is wrong."
        />,
        401,
      );
    }
    setSessionCookie(c, result.sessionId);
    return c.redirect(next, 303);
  })
  .post("/login/scaikey", async (c) => {
    await checkOrigin(c);
    const s = await dashboardOidc(c);
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "next");
    if (extra.length > 0) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const login = await oidcClient.login(s, undefined);
    setCookie(c, LOGIN_COOKIE, login.cookie, cookieOptions(c, LOGIN_TTL_MS / 1000));
    setCookie(c, NEXT_COOKIE, safeNext(form.next), cookieOptions(c, LOGIN_TTL_MS / 1000));
    return c.redirect(login.authorizationUrl, 303);
  })
  .get("/login/scaikey/callback", async (c) => {
    const s = await dashboardOidc(c);
    const q = c.req.query();
    const cookie = getCookie(c, LOGIN_COOKIE);
    const next = safeNext(getCookie(c, NEXT_COOKIE));
    // The transaction is spent whatever happens next: a retry starts a new one.
    deleteCookie(c, LOGIN_COOKIE, cookieOptions(c));
    deleteCookie(c, NEXT_COOKIE, cookieOptions(c));
    const refused = async (status: 400 | 401 | 403, problem: string) => {
      await allowScaiKeyForms(c, s);
      return c.html(<SignInForm next={next} scaikey={true} problem={problem} />, status);
    };
    // ScaiKey's own refusal (RFC 6749 §4.1.2.1), e.g. the user declined: shown, nothing else done.
    if (q.error !== undefined) {
      return refused(401, `ScaiKey did not sign you in (${q.error.slice(0, 100)}).`);
    }
    if (!q.code || !q.state || q.code.length > 4096 || q.state.length > 512) {
      return refused(400, "The sign-in answer from ScaiKey lacks its code or state: start again.");
    }
    try {
      const { user, claims } = await oidcClient.callback(s, cookie, {
        code: q.code,
        state: q.state,
        ...(q.iss !== undefined ? { iss: q.iss } : {}),
      });
      const sessionId = await signInWithScaiKey(c.get("db"), user, claims, Date.now());
      setSessionCookie(c, sessionId);
      return c.redirect(next, 303);
    } catch (err) {
      if (!isAppError(err) || err.status >= 500) throw err;
      const status = err.status === 403 ? 403 : err.status === 401 ? 401 : 400;
      return refused(status, `Signing in with ScaiKey failed: ${err.message}.`);
    }
  })
  .post("/logout", requireSession(), requireCsrf(), dashboardPermission(), async (c) => {
    await signOut(c.get("db"), c.get("session"));
    clearSessionCookie(c);
    return c.redirect("/app/login", 303);
  });
