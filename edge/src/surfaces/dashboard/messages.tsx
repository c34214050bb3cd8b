/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Messages (docs/dashboard.md#pages): the list with GET /v3/messages' filters and a message's page
 * (timeline, headers, preview). Both read through the API's own code (messageList / messageDetail in
 * surfaces/sendgrid/messages.ts), so the dashboard shows exactly what the API answers, tenant-bound
 * by the session. The preview is the message's HTML in a `sandbox=""` iframe (no scripts, no forms,
 * an opaque origin; the page's CSP keeps remote images out), as the dev inbox shows it.
 */
import { Hono } from "hono";
import { isAppError } from "../../../../shared/errors.ts";
import { MESSAGE_STATUSES } from "../../db/schema.ts";
import { messageDetail, messageList } from "../sendgrid/messages.ts";
import { Page } from "./layout.tsx";
import { dashboardPermission, type DashboardEnv } from "./session.ts";

const FILTERS = [
  ["to_email", "To", "email"],
  ["from_email", "From", "email"],
  ["subject", "Subject", "text"],
  ["category", "Category", "text"],
  ["batch_id", "Batch id", "text"],
  ["template_id", "Template id", "text"],
  ["start_date", "From date", "date"],
  ["end_date", "To date", "date"],
] as const;

type ListAnswer = Awaited<ReturnType<typeof messageList>>;

function Filters(props: { q: Record<string, string> }) {
  const { q } = props;
  return (
    <form method="get" action="/app/messages" class="filters" role="search">
      <label>
        Status
        <select name="status">
          <option value="">any</option>
          {MESSAGE_STATUSES.map((s) => (
            <option value={s} selected={q.status === s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      {FILTERS.map(([name, label, type]) => (
        <label>
          {label}
          <input type={type} name={name} value={q[name] ?? ""} />
        </label>
      ))}
      <label>
        Query (SendGrid syntax)
        <input type="text" name="query" value={q.query ?? ""} placeholder={'status="delivered"'} />
      </label>
      <button type="submit">Search</button>
    </form>
  );
}

/** SendGrid's `reason` where the event has one (bounces, deferrals, drops). */
const reasonOf = (e: object): string => {
  const r = (e as { reason?: unknown }).reason;
  return typeof r === "string" ? r : "";
};

function pageLink(q: Record<string, string>, page: number): string {
  return `/app/messages?${new URLSearchParams({ ...q, page: String(page) }).toString()}`;
}

export const messagesPages = new Hono<DashboardEnv>()
  .get("/messages", dashboardPermission(), async (c) => {
    const session = c.get("session");
    // A form sends every field; an empty one is no filter (the API would refuse `status=`).
    const q = Object.fromEntries(Object.entries(c.req.query()).filter(([, v]) => v !== ""));
    let answer: ListAnswer | null = null;
    let problem: string | null = null;
    try {
      answer = await messageList(c.get("db"), session.tenantId, q);
    } catch (err) {
      if (!isAppError(err) || err.status !== 400) throw err;
      problem = err.fields.length
        ? err.fields.map((f) => `${f.field}: ${f.message}`).join("; ")
        : err.message;
    }
    const rest = Object.fromEntries(Object.entries(q).filter(([k]) => k !== "page"));
    return c.html(
      <Page title="Messages" session={session} current="/app/messages">
        <Filters q={q} />
        {problem ? <p role="alert">{problem}</p> : null}
        {answer ? (
          <>
            <p>
              {answer.total} message{answer.total === 1 ? "" : "s"}
              {answer.total_pages > 1 ? `, page ${answer.page} of ${answer.total_pages}` : ""}
            </p>
            <table>
              <caption class="skip">Messages, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Created (UTC)</th>
                  <th scope="col">Status</th>
                  <th scope="col">To</th>
                  <th scope="col">Subject</th>
                  <th scope="col">Categories</th>
                </tr>
              </thead>
              <tbody>
                {answer.messages.map((m) => (
                  <tr>
                    <td>{m.created_at}</td>
                    <td class={`status status-${m.status}`}>{m.status}</td>
                    <td>{m.to_emails.join(", ")}</td>
                    <td>
                      <a href={`/app/messages/${encodeURIComponent(m.id)}`}>{m.subject || "(no subject)"}</a>
                    </td>
                    <td>{m.categories.join(", ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <nav aria-label="Pages">
              {answer.page > 1 ? <a href={pageLink(rest, answer.page - 1)}>Previous page</a> : null}{" "}
              {answer.page < answer.total_pages ? (
                <a href={pageLink(rest, answer.page + 1)}>Next page</a>
              ) : null}
            </nav>
          </>
        ) : null}
      </Page>,
      problem ? 400 : 200,
    );
  })
  .get("/messages/:id", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const m = await messageDetail(c.get("db"), c.get("config"), c.env, session.tenantId, c.req.param("id"));
    const headers = Object.entries(m.headers ?? {});
    return c.html(
      <Page title={m.subject || "(no subject)"} session={session} current="/app/messages">
        <dl class="meta">
          <dt>Status</dt>
          <dd class={`status status-${m.status}`} id="message-status">
            {m.status}
          </dd>
          <dt>Message id</dt>
          <dd>{m.id}</dd>
          <dt>From</dt>
          <dd>{m.from_name ? `${m.from_name} <${m.from_email}>` : m.from_email}</dd>
          <dt>To</dt>
          <dd>{m.to_emails.join(", ")}</dd>
          {m.cc_emails.length ? (
            <>
              <dt>Cc</dt>
              <dd>{m.cc_emails.join(", ")}</dd>
            </>
          ) : null}
          <dt>Created</dt>
          <dd>{m.created_at}</dd>
          <dt>Delivered</dt>
          <dd>{m.delivered_at ?? "—"}</dd>
          <dt>Categories</dt>
          <dd>{m.categories.join(", ") || "—"}</dd>
          <dt>Message-ID</dt>
          <dd>{m.message_id_header}</dd>
          {m.error_message ? (
            <>
              <dt>Error</dt>
              <dd>{m.error_message}</dd>
            </>
          ) : null}
        </dl>
        <h2>Timeline</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Time (UTC)</th>
              <th scope="col">Event</th>
              <th scope="col">Recipient</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {m.events.map((e) => (
              <tr>
                <td>{e.processed}</td>
                <td>{e.event_type}</td>
                <td>{e.recipient_email ?? ""}</td>
                <td>{reasonOf(e)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <h2>Headers</h2>
        {headers.length ? (
          <table>
            <tbody>
              {headers.map(([k, v]) => (
                <tr>
                  <th scope="row">{k}</th>
                  <td>{String(v)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p>No custom headers.</p>
        )}
        <h2>Preview</h2>
        {m.html_content ? (
          <iframe
            class="preview"
            sandbox=""
            referrerpolicy="no-referrer"
            title="The message's HTML body"
            srcdoc={m.html_content}
          ></iframe>
        ) : null}
        {m.text_content ? (
          <details open={!m.html_content}>
            <summary>Text body</summary>
            <pre>{m.text_content}</pre>
          </details>
        ) : null}
      </Page>,
    );
  });
