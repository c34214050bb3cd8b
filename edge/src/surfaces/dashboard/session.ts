/**
 * The dashboard's guards (docs/dashboard.md): the session cookie, CSRF on every unsafe request, and
 * the permission each page needs, read from the API's own table (surfaces/route-permissions.ts) with
 * the permissions the session's roles grant (services/dashboard-sessions.ts).
 *
 * CSRF defence, two layers (OWASP CSRF Prevention Cheat Sheet): the request's Origin (or, when a
 * browser sends none, its Referer) must be this Worker's own origin, and the form's `_csrf` field must
 * equal the session's token, compared in constant time. SameSite=Lax on the cookie is a third.
 */
import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { AppError } from "../../../../shared/errors.ts";
import type { Permission } from "../../../../shared/permissions.ts";
import type { AppVariables } from "../../context.ts";
import type { Bindings } from "../../env.ts";
import { timingSafeEqualStrings } from "../../lib/crypto.ts";
import { ABSOLUTE_MS, sessionOf, type DashboardSession } from "../../services/dashboard-sessions.ts";
import { ROUTE_PERMISSIONS } from "../route-permissions.ts";

export type DashboardEnv = {
  Bindings: Bindings;
  Variables: AppVariables & { session: DashboardSession };
};
export type DashboardContext = Context<DashboardEnv>;

export const SESSION_COOKIE = "scaisend_session";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Plain http only for a browser on this machine (npm start); anywhere else the cookie needs https. */
export function isLocalHttp(url: URL): boolean {
  return url.protocol === "http:" && ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
}

export function setSessionCookie(c: Context, sessionId: string): void {
  setCookie(c, SESSION_COOKIE, sessionId, {
    httpOnly: true,
    secure: !isLocalHttp(new URL(c.req.url)),
    sameSite: "Lax",
    path: "/app",
    maxAge: Math.floor(ABSOLUTE_MS / 1000),
  });
}

export function clearSessionCookie(c: Context): void {
  deleteCookie(c, SESSION_COOKIE, { path: "/app", secure: !isLocalHttp(new URL(c.req.url)) });
}

/** The signed-in session, or a redirect to the sign-in page (the session ended, or never was). */
export function requireSession(): MiddlewareHandler<DashboardEnv> {
  return async function dashboardSession(c, next) {
    const id = getCookie(c, SESSION_COOKIE);
    const session = id
      ? await sessionOf(c.get("db"), id, Date.now(), c.get("config").AUTH_CACHE_TTL_MS)
      : null;
    if (!session) {
      if (id) clearSessionCookie(c);
      const url = new URL(c.req.url);
      const back = SAFE_METHODS.has(c.req.method)
        ? `?next=${encodeURIComponent(url.pathname + url.search)}`
        : "";
      return c.redirect(`/app/login${back}`, 303);
    }
    c.set("session", session);
    return next();
  };
}

/** Origin check, then the session's token; unsafe methods only. */
export function requireCsrf(): MiddlewareHandler<DashboardEnv> {
  return async function dashboardCsrf(c, next) {
    if (SAFE_METHODS.has(c.req.method)) return next();
    await checkOrigin(c);
    const body = await c.req.parseBody({ all: true });
    const token = typeof body._csrf === "string" ? body._csrf : "";
    if (!(await timingSafeEqualStrings(token, c.get("session").csrfToken))) {
      throw new AppError(
        "forbidden",
        "The form's security token is missing or stale: reload the page and try again",
      );
    }
    return next();
  };
}

/** The request came from a page of this origin (also used by the sign-in form, which has no session yet). */
export async function checkOrigin(c: Context): Promise<void> {
  const own = new URL(c.req.url).origin;
  const origin = c.req.header("origin");
  let from: string | null = origin && origin !== "null" ? origin : null;
  if (!from) {
    const referer = c.req.header("referer");
    try {
      from = referer ? new URL(referer).origin : null;
    } catch {
      from = null;
    }
  }
  if (from !== own) throw new AppError("forbidden", "Cross-origin form posts are refused");
}

function neededFor(method: string, routePath: string): readonly Permission[] | "any" | undefined {
  const route = `${method === "HEAD" ? "GET" : method} ${routePath}`;
  return Object.hasOwn(ROUTE_PERMISSIONS, route) ? ROUTE_PERMISSIONS[route] : undefined;
}

/** Whether the session may call `route` ("METHOD /app/…" as in the permission table): what the pages show. */
export function can(session: DashboardSession, route: string): boolean {
  const [method, path] = route.split(" ") as [string, string];
  const needed = neededFor(method, path);
  return needed === "any" || (needed !== undefined && needed.some((p) => session.permissions.includes(p)));
}

/**
 * 403 unless the session holds one of the permissions the table gives this route. Fail closed like
 * the API's routePermission(): a dashboard route without an entry answers 500 and never runs.
 */
export function dashboardPermission(): MiddlewareHandler<DashboardEnv> {
  return async function dashboardPermissionMiddleware(c, next) {
    const needed = neededFor(c.req.method, c.req.routePath);
    if (needed === undefined) {
      console.error(
        JSON.stringify({
          level: "error",
          msg: "route without a declared permission",
          route: c.req.routePath,
        }),
      );
      throw new AppError("internal", "Internal server error");
    }
    const held = c.get("session").permissions;
    if (needed !== "any" && !needed.some((p) => held.includes(p))) {
      throw new AppError("forbidden", `This page needs the permission ${needed.join(" or ")}`);
    }
    return next();
  };
}
