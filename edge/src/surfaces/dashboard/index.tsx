/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * The tenant's web dashboard at /app (docs/dashboard.md): server-rendered Hono JSX pages that work
 * without JavaScript. Order matters: the static files and the sign-in form answer before the session
 * guard; every page after it needs a live session (else a redirect to /app/login), passes the CSRF
 * check on unsafe methods, and declares its permission in surfaces/route-permissions.ts.
 * Every HTML answer gets the dashboard's CSP and `Cache-Control: no-store` (pages show tenant data).
 */
import { Hono } from "hono";
import { isAppError } from "../../../../shared/errors.ts";
import { asmGroupsPages } from "./asm-groups.tsx";
import { assetsApi } from "./assets.ts";
import { domainsPages } from "./domains.tsx";
import { keysPages } from "./keys.tsx";
import { CONTENT_SECURITY_POLICY, ErrorPage } from "./layout.tsx";
import { loginApi } from "./login.tsx";
import { messagesPages } from "./messages.tsx";
import { requireCsrf, requireSession, type DashboardEnv } from "./session.ts";
import { statsPages } from "./stats.tsx";
import { suppressionsPages } from "./suppressions.tsx";
import { templatesPages } from "./templates.tsx";
import { webhooksPages } from "./webhooks.tsx";

export const dashboardApp = new Hono<DashboardEnv>();

dashboardApp.use("*", async function dashboardHeaders(c, next) {
  await next();
  if ((c.res.headers.get("content-type") ?? "").startsWith("text/html")) {
    // A page may widen the policy itself: the sign-in page adds ScaiKey as a form target (login.tsx).
    if (!c.res.headers.has("Content-Security-Policy"))
      c.res.headers.set("Content-Security-Policy", CONTENT_SECURITY_POLICY);
    c.res.headers.set("Cache-Control", "no-store");
    c.res.headers.set("Referrer-Policy", "same-origin");
    c.res.headers.set("X-Content-Type-Options", "nosniff");
  }
});
dashboardApp.onError((err, c) => {
  const status = isAppError(err) ? err.status : 500;
  if (!isAppError(err) || status >= 500) {
    console.error(
      JSON.stringify({
        level: "error",
        msg: "dashboard error",
        error: String(err),
        stack: (err as Error).stack,
      }),
    );
  }
  const message = isAppError(err) && status < 500 ? err.message : "Internal server error";
  if (isAppError(err) && err.retryAfterSeconds !== undefined)
    c.header("Retry-After", String(err.retryAfterSeconds));
  return c.html(<ErrorPage status={status} message={message} session={c.var.session} />, status as 400);
});
dashboardApp.route("/assets", assetsApi);
dashboardApp.route("/", loginApi);
dashboardApp.get("/", (c) => c.redirect("/app/messages", 303));
dashboardApp.use("*", requireSession(), requireCsrf());
dashboardApp.route("/", messagesPages);
dashboardApp.route("/", keysPages);
dashboardApp.route("/", statsPages);
dashboardApp.route("/", domainsPages);
// The groups before the lists: /suppressions/groups/… is never read as a list named "groups".
dashboardApp.route("/", asmGroupsPages);
dashboardApp.route("/", suppressionsPages);
dashboardApp.route("/", templatesPages);
dashboardApp.route("/", webhooksPages);
dashboardApp.notFound((c) =>
  c.html(<ErrorPage status={404} message="No such page." session={c.var.session} />, 404),
);
