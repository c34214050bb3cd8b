/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * The dashboard's page frame: one stylesheet, a skip link, the navigation the session may use (a page
 * it may not open is not linked), and the sign-out form. Server-rendered HTML that works without
 * JavaScript; the stats page alone adds a script (its chart).
 */
import type { Child } from "hono/jsx";
import type { DashboardSession } from "../../services/dashboard-sessions.ts";
import { ASSETS } from "./assets.ts";
import { can } from "./session.ts";

/** Every dashboard page: scripts from this origin only, no inline script, no framing (docs/dashboard.md#security). */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

const NAV: { href: string; label: string; route: string }[] = [
  { href: "/app/messages", label: "Messages", route: "GET /app/messages" },
  { href: "/app/stats", label: "Stats", route: "GET /app/stats" },
  { href: "/app/domains", label: "Domains", route: "GET /app/domains" },
  { href: "/app/templates", label: "Templates", route: "GET /app/templates" },
  { href: "/app/suppressions", label: "Suppressions", route: "GET /app/suppressions" },
  { href: "/app/webhooks", label: "Webhooks", route: "GET /app/webhooks" },
  { href: "/app/keys", label: "API keys", route: "GET /app/keys" },
];

export function CsrfField(props: { session: DashboardSession }) {
  return <input type="hidden" name="_csrf" value={props.session.csrfToken} />;
}

export function Page(props: {
  title: string;
  session?: DashboardSession | undefined;
  current?: string;
  scripts?: string[];
  children?: Child;
}) {
  const { session } = props;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · ScaiSend`}</title>
        <link rel="stylesheet" href={ASSETS.css.path} />
        {props.scripts?.includes("stats") ? <link rel="stylesheet" href={ASSETS.uplotCss.path} /> : null}
      </head>
      <body>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <span class="brand">ScaiSend</span>
          {session ? (
            <nav aria-label="Main">
              <ul>
                {NAV.filter((n) => can(session, n.route)).map((n) => (
                  <li>
                    <a href={n.href} aria-current={props.current === n.href ? "page" : undefined}>
                      {n.label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          ) : null}
          {session ? (
            <form method="post" action="/app/logout" class="logout">
              <CsrfField session={session} />
              <span class="who">{session.email}</span> <button type="submit">Sign out</button>
            </form>
          ) : null}
        </header>
        <main id="main" tabindex={-1}>
          <h1>{props.title}</h1>
          {props.children}
        </main>
        {props.scripts?.includes("stats") ? (
          <>
            <script src={ASSETS.uplotJs.path} defer></script>
            <script src={ASSETS.statsJs.path} defer></script>
          </>
        ) : null}
        {props.scripts?.includes("copy") ? <script src={ASSETS.copyJs.path} defer></script> : null}
      </body>
    </html>
  );
}

export function ErrorPage(props: {
  status: number;
  message: string;
  session?: DashboardSession | undefined;
}) {
  return (
    <Page
      title={
        props.status === 404 ? "Not found" : props.status === 403 ? "Not allowed" : "Something went wrong"
      }
      session={props.session}
    >
      <p role="alert">{props.message}</p>
      <p>
        <a href="/app/messages">Back to the dashboard</a>
      </p>
    </Page>
  );
}
