/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Sign-in and sign-out (docs/dashboard.md#sign-in): an operator-created login's email and password.
 * The form post must come from this origin (login CSRF); wrong credentials and unknown emails get
 * the same answer; a throttled (address, email) pair gets 429 with Retry-After.
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import { signIn, signOut } from "../../services/dashboard-sessions.ts";
import { Page } from "./layout.tsx";
import {
  checkOrigin,
  clearSessionCookie,
  dashboardPermission,
  requireCsrf,
  requireSession,
  setSessionCookie,
  type DashboardEnv,
} from "./session.ts";

/** Only a dashboard path of this origin: never `//evil.example` or another site. */
function safeNext(next: unknown): string {
  return typeof next === "string" && /^\/app\/[^/\\]/.test(next) ? next : "/app/messages";
}

function SignInForm(props: { next: string; email?: string; problem?: string }) {
  return (
    <Page title="Sign in">
      {props.problem ? <p role="alert">{props.problem}</p> : null}
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
  .get("/login", (c) => c.html(<SignInForm next={safeNext(c.req.query("next"))} />))
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
          problem={`Too many failed sign-ins: try again in ${Math.ceil(result.retryAfterSeconds / 60)} minutes.`}
        />,
        429,
      );
    }
    if (result.outcome === "invalid") {
      return c.html(
        <SignInForm next={next} email={email} problem="The email or the password is wrong." />,
        401,
      );
    }
    setSessionCookie(c, result.sessionId);
    return c.redirect(next, 303);
  })
  .post("/logout", requireSession(), requireCsrf(), dashboardPermission(), async (c) => {
    await signOut(c.get("db"), c.get("session"));
    clearSessionCookie(c);
    return c.redirect("/app/login", 303);
  });
