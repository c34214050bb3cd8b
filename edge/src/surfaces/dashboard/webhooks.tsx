/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Webhooks (docs/dashboard.md#pages): the tenant's ScaiSend endpoints as `GET /v3/user/webhooks`
 * lists them (never a secret), an endpoint's page with its delivery log newest first, enable /
 * disable, retry / re-send, and a test POST with its outcome; and SendGrid's Event Webhook settings
 * (`/v3/user/webhooks/event/settings`) with a form that changes them through the API's own parser
 * and a test POST to its URL. Every call is the tenant's own WebhookQueue object's, the same methods
 * the API's routes call (surfaces/sendgrid/webhooks.ts). `webhooks.read` to look, `webhooks.write`
 * to act.
 */
import { Hono } from "hono";
import { AppError, isAppError } from "../../../../shared/errors.ts";
import { SETTINGS_ID, type DeliveryView, type Outcome } from "../../objects/webhook-queue.ts";
import { SENDGRID_FLAGS } from "../../services/webhook-events.ts";
import { eventSettingsPatch } from "../sendgrid/webhooks.ts";
import type { DashboardSession } from "../../services/dashboard-sessions.ts";
import { CsrfField, Page } from "./layout.tsx";
import {
  can,
  dashboardPermission,
  requireCsrf,
  type DashboardContext,
  type DashboardEnv,
} from "./session.ts";

const LOG_LIMIT = 100;
/** The Event Webhook's log on the list page: its newest deliveries. */
const EVENT_LOG_LIMIT = 20;
const LIST_LIMIT = 100;

function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  throw new AppError(outcome.code === "not_found" ? "not_found" : "invalid_request", outcome.message);
}

const queueOf = (c: DashboardContext) => c.env.WEBHOOK_QUEUE.getByName(c.get("session").tenantId);

/** An endpoint id of this tenant's (the settings row is not one): else 404 before the object is asked. */
function endpointId(c: DashboardContext): string {
  const id = c.req.param("id") ?? "";
  if (!/^wh_[0-9A-Za-z]{1,64}$/.test(id)) throw new AppError("not_found", "Webhook not found");
  return id;
}

function state(e: { enabled: boolean; disabled_at: string | null }): string {
  if (e.disabled_at) return `disabled after failures (${e.disabled_at})`;
  return e.enabled ? "enabled" : "disabled";
}

/** Labels of SendGrid's per-event flags (docs/api/webhooks.md#sendgrid-event-webhook-settings). */
const FLAG_LABEL: Record<string, string> = {
  bounce: "bounce (and blocked)",
  spam_report: "spam_report (spamreport)",
};

/** The form's one value of a field: a string, or a 400 (a repeated field or a file is not one). */
function single(form: Record<string, string | File | (string | File)[]>, k: string): string | undefined {
  const v = form[k];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new AppError("invalid_request", `${k} must be given once, as text`);
  return v;
}

/** A checkbox: absent is off, "true" is on, anything else a 400. */
function checkbox(form: Record<string, string | File | (string | File)[]>, k: string): boolean {
  const v = single(form, k);
  if (v !== undefined && v !== "true") throw new AppError("invalid_request", `${k} must be true when given`);
  return v === "true";
}

/**
 * A delivery log, newest first, as GET …/deliveries answers it; with `retryBase` (a session that
 * may act, on an active webhook) Retry now on pending deliveries and Re-send on failed ones whose
 * body is kept, both posting to `${retryBase}/deliveries/{id}/retry` (webhooks.md#retry-now).
 */
function DeliveryLog(props: {
  id: string;
  deliveries: DeliveryView[];
  limit: number;
  retryBase: string | null;
  session: DashboardSession;
}) {
  const { deliveries, limit, retryBase, session } = props;
  return (
    <table id={props.id}>
      <caption>Deliveries, newest first{deliveries.length === limit ? ` (the newest ${limit})` : ""}</caption>
      <thead>
        <tr>
          <th scope="col">Delivery</th>
          <th scope="col">Status</th>
          <th scope="col">Events</th>
          <th scope="col">Created</th>
          <th scope="col">Attempts (time, response, duration)</th>
          <th scope="col">Next attempt</th>
          <th scope="col">Finished</th>
        </tr>
      </thead>
      <tbody>
        {deliveries.map((d) => (
          <tr>
            <td>{d.id}</td>
            <td>{d.status}</td>
            <td>{d.event_count}</td>
            <td>{d.created_at}</td>
            <td>
              <ol class="attempts">
                {d.attempts.map((a) => (
                  <li>
                    {a.at}: {a.status_code ?? "no answer"}
                    {a.error ? ` (${a.error})` : ""}, {a.duration_ms} ms
                  </li>
                ))}
              </ol>
            </td>
            <td>
              {d.next_attempt_at ?? ""}
              {retryBase && d.status === "pending" ? (
                <form method="post" action={`${retryBase}/deliveries/${d.id}/retry`}>
                  <CsrfField session={session} />
                  <button type="submit" aria-label={`Retry ${d.id} now`}>
                    Retry now
                  </button>
                </form>
              ) : null}
            </td>
            <td>
              {d.finished_at ?? ""}
              {d.status === "failed"
                ? d.resend_until
                  ? ` (re-sendable until ${d.resend_until})`
                  : " (body expired; cannot be re-sent)"
                : ""}
              {retryBase && d.resend_until ? (
                // The same call as Retry now: one more attempt of this delivery.
                <form method="post" action={`${retryBase}/deliveries/${d.id}/retry`}>
                  <CsrfField session={session} />
                  <button type="submit" aria-label={`Re-send ${d.id}`}>
                    Re-send
                  </button>
                </form>
              ) : null}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export const webhooksPages = new Hono<DashboardEnv>()
  .get("/webhooks", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const extra = Object.keys(c.req.query());
    if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
    const queue = queueOf(c);
    const { webhooks, total } = unwrap(
      await queue.listEndpoints(session.tenantId, { page: 1, pageSize: LIST_LIMIT, isActive: null }),
    );
    const ew = unwrap(await queue.eventWebhookSummary(session.tenantId));
    // The settings row exists once the Event Webhook was first configured; before, it has no log.
    const ewLog = ew.configured
      ? unwrap(await queue.deliveries(session.tenantId, SETTINGS_ID, EVENT_LOG_LIMIT)).deliveries
      : [];
    const settings = ew.settings;
    const on = SENDGRID_FLAGS.filter((f) => settings[f] === true);
    const writable = can(session, "POST /app/webhooks/event/settings");
    return c.html(
      <Page title="Webhooks" session={session} current="/app/webhooks">
        <h2>SendGrid Event Webhook</h2>
        <p>
          The single URL of SendGrid's Event Webhook settings (<code>/v3/user/webhooks/event/settings</code>),
          beside the endpoints below.
        </p>
        <dl id="event-webhook">
          <dt>URL</dt>
          <dd>{settings.url === "" ? "not set" : settings.url}</dd>
          <dt>State</dt>
          <dd>
            {ew.disabled_at
              ? `disabled after failures (${ew.disabled_at})`
              : settings.enabled
                ? "enabled"
                : "disabled"}
          </dd>
          <dt>Events</dt>
          <dd>{on.length ? on.join(", ") : "none"}</dd>
          <dt>Signed</dt>
          <dd>{ew.signed ? "yes (ECDSA P-256, SendGrid's Signed Event Webhook)" : "no"}</dd>
          <dt>OAuth2</dt>
          <dd>
            {settings.oauth_client_id
              ? `client ${settings.oauth_client_id}, token URL ${settings.oauth_token_url}`
              : "no"}
          </dd>
          {ew.configured ? (
            <>
              <dt>Failures in a row</dt>
              <dd>{ew.failure_count}</dd>
              <dt>Last success</dt>
              <dd>{ew.last_success_at ?? "never"}</dd>
              <dt>Last failure</dt>
              <dd>{ew.last_failure_at ?? "never"}</dd>
            </>
          ) : null}
        </dl>
        {writable ? (
          <div class="actions">
            <form method="post" action="/app/webhooks/event/settings" id="event-webhook-form">
              <CsrfField session={session} />
              <p>
                <label for="ew-url">URL</label>
                <input id="ew-url" name="url" type="url" value={settings.url as string} maxlength={2048} />
              </p>
              <p>
                <input
                  id="ew-enabled"
                  name="enabled"
                  type="checkbox"
                  value="true"
                  checked={settings.enabled === true}
                />
                <label for="ew-enabled">Enabled</label>
              </p>
              <fieldset>
                <legend>Events</legend>
                {SENDGRID_FLAGS.map((f) => (
                  <span class="flag">
                    <input
                      id={`ew-${f}`}
                      name={f}
                      type="checkbox"
                      value="true"
                      checked={settings[f] === true}
                    />
                    <label for={`ew-${f}`}>{FLAG_LABEL[f] ?? f}</label>{" "}
                  </span>
                ))}
              </fieldset>
              <button type="submit">Save the Event Webhook</button>
            </form>
            {settings.url !== "" ? (
              <form method="post" action="/app/webhooks/event/settings/test">
                <CsrfField session={session} />
                <button type="submit">Send a test event to the Event Webhook</button>
              </form>
            ) : null}
          </div>
        ) : null}
        {ew.configured ? (
          <DeliveryLog
            id="event-webhook-deliveries"
            deliveries={ewLog}
            limit={EVENT_LOG_LIMIT}
            retryBase={writable && settings.enabled === true ? "/app/webhooks/event/settings" : null}
            session={session}
          />
        ) : null}
        <h2>Endpoints</h2>
        <table id="webhooks">
          <caption>
            {total} endpoint{total === 1 ? "" : "s"}
            {total > webhooks.length ? ` (the first ${webhooks.length})` : ""}
          </caption>
          <thead>
            <tr>
              <th scope="col">URL</th>
              <th scope="col">State</th>
              <th scope="col">Failures</th>
              <th scope="col">Events</th>
              <th scope="col">Signed</th>
            </tr>
          </thead>
          <tbody>
            {webhooks.map((w) => (
              <tr>
                <td>
                  <a href={`/app/webhooks/${w.id}`}>{w.url}</a>
                </td>
                <td>{state(w)}</td>
                <td>{w.failure_count}</td>
                <td>{w.enabled_events.join(", ")}</td>
                <td>yes (its whsec_ secret){w.oauth_client_id ? "; OAuth2" : ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Page>,
    );
  })
  .get("/webhooks/:id", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const extra = Object.keys(c.req.query());
    if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
    const id = endpointId(c);
    const queue = queueOf(c);
    const w = unwrap(await queue.getEndpoint(session.tenantId, id));
    const { deliveries } = unwrap(await queue.deliveries(session.tenantId, id, LOG_LIMIT));
    const writable = can(session, "POST /app/webhooks/:id/enabled");
    return c.html(
      <Page title={`Webhook ${w.url}`} session={session} current="/app/webhooks">
        <h2>{w.url}</h2>
        <dl id="endpoint">
          <dt>Id</dt>
          <dd>{w.id}</dd>
          <dt>State</dt>
          <dd>{state(w)}</dd>
          <dt>Events</dt>
          <dd>{w.enabled_events.join(", ")}</dd>
          <dt>Failures in a row</dt>
          <dd>{w.failure_count}</dd>
          <dt>Last success</dt>
          <dd>{w.last_success_at ?? "never"}</dd>
          <dt>Last failure</dt>
          <dd>{w.last_failure_at ?? "never"}</dd>
          <dt>Signed</dt>
          <dd>yes, with its whsec_ secret (shown only when created or rotated, through the API)</dd>
        </dl>
        {writable ? (
          <div class="actions">
            <form method="post" action={`/app/webhooks/${w.id}/enabled`}>
              <CsrfField session={session} />
              <input type="hidden" name="enabled" value={w.enabled && !w.disabled_at ? "false" : "true"} />
              <button type="submit">{w.enabled && !w.disabled_at ? "Disable" : "Enable"}</button>
            </form>
            <form method="post" action={`/app/webhooks/${w.id}/test`}>
              <CsrfField session={session} />
              <button type="submit">Send a test event</button>
            </form>
          </div>
        ) : null}
        <DeliveryLog
          id="deliveries"
          deliveries={deliveries}
          limit={LOG_LIMIT}
          retryBase={writable && w.enabled && !w.disabled_at ? `/app/webhooks/${w.id}` : null}
          session={session}
        />
        <p>
          <a href="/app/webhooks">All webhooks</a>
        </p>
      </Page>,
    );
  })
  .post("/webhooks/event/settings", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const form = await c.req.parseBody({ all: true });
    const known = ["_csrf", "url", "enabled", ...SENDGRID_FLAGS];
    const extra = Object.keys(form).filter((k) => !known.includes(k));
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const url = single(form, "url");
    if (url === undefined) throw new AppError("invalid_request", "url is required (empty clears it)");
    const queue = queueOf(c);
    const current = unwrap(await queue.getEventSettings(session.tenantId));
    // What the form changes, as a PATCH body: the URL and `enabled` only when they differ from what
    // the API reads, so saving the events of a URL the guard now refuses still works, and saving
    // with the box as shown leaves an auto-disable in place (as a PATCH of the flags alone does).
    const body: Record<string, unknown> = {};
    if (url.trim() !== current.url) body["url"] = url;
    const enabled = checkbox(form, "enabled");
    if (enabled !== current.enabled) body["enabled"] = enabled;
    for (const f of SENDGRID_FLAGS) body[f] = checkbox(form, f);
    let patch;
    try {
      patch = eventSettingsPatch(body);
    } catch (err) {
      // The API's message names its field in `fields`; the page says it in the sentence.
      if (!isAppError(err)) throw err;
      const field = err.fields[0]?.field;
      throw new AppError(err.code, field ? `${field} ${err.message}` : err.message);
    }
    unwrap(await queue.patchEventSettings(session.tenantId, patch));
    return c.redirect("/app/webhooks", 303);
  })
  .post(
    "/webhooks/event/settings/deliveries/:delivery_id/retry",
    dashboardPermission(),
    requireCsrf(),
    async (c) => {
      const session = c.get("session");
      const form = await c.req.parseBody({ all: true });
      const extra = Object.keys(form).filter((k) => k !== "_csrf");
      if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
      // The API's POST /v3/user/webhooks/event/settings/deliveries/{delivery_id}/retry call.
      unwrap(await queueOf(c).retryDelivery(session.tenantId, SETTINGS_ID, c.req.param("delivery_id")));
      return c.redirect("/app/webhooks", 303);
    },
  )
  .post("/webhooks/event/settings/test", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const queue = queueOf(c);
    if (unwrap(await queue.getEventSettings(session.tenantId)).url === "")
      throw new AppError("invalid_request", "the Event Webhook has no URL: set one first");
    // The sample POST /v3/user/webhooks/event/test makes, to the saved URL with the saved OAuth2
    // credentials; a failed POST (or a URL the guard refuses) is its outcome on the page.
    const r = await queue.testEventSettings(session.tenantId);
    return c.html(
      <Page title="Event Webhook test" session={session} current="/app/webhooks">
        <p role="status" id="test-result">
          {r.ok
            ? `Delivered: ${r.value.url} answered ${r.value.status ?? "nothing"} in ${r.value.durationMs} ms.`
            : `Failed: ${r.message}.`}
        </p>
        <p>
          <a href="/app/webhooks">Back to the webhooks</a>
        </p>
      </Page>,
    );
  })
  .post("/webhooks/:id/enabled", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const id = endpointId(c);
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf" && k !== "enabled");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    if (form.enabled !== "true" && form.enabled !== "false")
      throw new AppError("invalid_request", "enabled must be true or false");
    unwrap(await queueOf(c).updateEndpoint(session.tenantId, id, { enabled: form.enabled === "true" }));
    return c.redirect(`/app/webhooks/${id}`, 303);
  })
  .post("/webhooks/:id/deliveries/:delivery_id/retry", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const id = endpointId(c);
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    // The API's POST /v3/user/webhooks/{id}/deliveries/{delivery_id}/retry call.
    unwrap(await queueOf(c).retryDelivery(session.tenantId, id, c.req.param("delivery_id")));
    return c.redirect(`/app/webhooks/${id}`, 303);
  })
  .post("/webhooks/:id/test", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const id = endpointId(c);
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const queue = queueOf(c);
    const w = unwrap(await queue.getEndpoint(session.tenantId, id));
    // The call POST /v3/user/webhooks/event/test makes, to this endpoint's URL; a failed POST (or a
    // URL the SSRF guard refuses) is its outcome, shown as the API's 400 message would say it.
    const r = await queue.testEvent(session.tenantId, w.url);
    if (!r.ok && r.code === "not_found") throw new AppError("not_found", r.message);
    return c.html(
      <Page title="Webhook test" session={session} current="/app/webhooks">
        <p role="status" id="test-result">
          {r.ok
            ? `Delivered: ${w.url} answered ${r.value.status ?? "nothing"} in ${r.value.durationMs} ms.`
            : `Failed: ${r.message}.`}
        </p>
        <p>
          <a href={`/app/webhooks/${id}`}>Back to the webhook</a>
        </p>
      </Page>,
    );
  });
