/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Templates (docs/dashboard.md#pages): the tenant's dynamic and legacy templates, a template's
 * versions with an activate button each, and a version's page with a live preview rendered with
 * sample data. Reads and writes go through the code /v3/templates uses (db/templates.ts'
 * tenant-bound queries, services/templates.ts' activateVersion, which also clears the send path's
 * cached answer), with its permissions: templates.read to look and preview, templates.write to
 * activate. Another tenant's template id is a 404, as in the API.
 *
 * The preview is the shared renderer (shared/render, the code the origin renders each message with):
 * a dynamic version's subject, HTML, text and preheader against `dynamic_template_data`, each part
 * escaped as on the send path; a legacy version's parts with SendGrid substitutions. The HTML goes
 * into a `sandbox=""` iframe (no scripts, no forms, an opaque origin), as the message preview does.
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import {
  applySubstitutions,
  compileVersion,
  renderVersion,
  type VersionPart,
} from "../../../../shared/render/index.ts";
import { tenantTemplates, type TemplateRow, type VersionRow } from "../../db/templates.ts";
import type { DashboardSession } from "../../services/dashboard-sessions.ts";
import { activateVersion, notFound } from "../../services/templates.ts";
import { LIMITS } from "../../services/templates-input.ts";
import { sendgridTime } from "../sendgrid/templates.ts";
import { CsrfField, Page } from "./layout.tsx";
import {
  can,
  dashboardPermission,
  requireCsrf,
  type DashboardEnv,
  type DashboardContext,
} from "./session.ts";

/** A tenant has at most MAX_TEMPLATES (300) templates: one page holds them all, as the API's older list does. */
const LIST_LIMIT = 1000;

const PART_NAMES: Record<VersionPart, string> = {
  subject: "subject",
  html: "HTML",
  text: "plain text",
  preheader: "preheader",
};

interface Preview {
  subject: string;
  html: string;
  text: string;
  preheader: string;
  /** Variables the template read that the sample data does not have (dynamic only). */
  missing: string[];
}

type PreviewOutcome = { ok: true; preview: Preview } | { ok: false; problem: string };

const templateHref = (t: { id: string }) => `/app/templates/${encodeURIComponent(t.id)}`;
const versionHref = (t: { id: string }, v: { id: string }) =>
  `${templateHref(t)}/versions/${encodeURIComponent(v.id)}`;

/** The sample data as the send path would take it: a JSON object (dynamic_template_data, or legacy substitutions). */
function parseSample(generation: TemplateRow["generation"], text: string): unknown {
  const what = generation === "dynamic" ? "dynamic_template_data" : "substitutions";
  if (new TextEncoder().encode(text).byteLength > LIMITS.testData) {
    throw new AppError(
      "invalid_request",
      `The sample data may be at most ${LIMITS.testData.toLocaleString("en-US")} bytes`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text.trim() === "" ? "{}" : text);
  } catch (e) {
    throw new AppError("invalid_request", `The sample data is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new AppError("invalid_request", `The sample data (${what}) must be a JSON object`);
  }
  if (generation === "legacy") {
    const bad = Object.entries(data).find(([, v]) => typeof v !== "string");
    if (bad) {
      throw new AppError(
        "invalid_request",
        `The sample data (substitutions) must map each tag to a string; "${bad[0]}" is not one`,
      );
    }
  }
  return data;
}

/** The version rendered through shared/render, or why it cannot be (a render error, as the send would fail). */
function renderPreview(generation: TemplateRow["generation"], v: VersionRow, data: unknown): PreviewOutcome {
  if (generation === "legacy") {
    const subs = data as Record<string, string>;
    const out: Partial<Record<VersionPart, string>> = {};
    for (const [part, text] of [
      ["subject", v.subject],
      ["html", v.htmlContent],
      ["text", v.plainContent],
    ] as const) {
      // As the send fills it: the tags are the message's own subject and body, never substituted into.
      const pieces: string[] = [];
      for (const piece of text.split(/(<%body%>|<%subject%>)/)) {
        if (piece === "<%body%>" || piece === "<%subject%>") {
          pieces.push(piece);
          continue;
        }
        const r = applySubstitutions(piece, subs, null);
        if (!r.ok) return { ok: false, problem: `In the ${PART_NAMES[part]}: ${r.error.message}` };
        pieces.push(r.output);
      }
      const joined = pieces.join("");
      out[part] = part === "subject" ? joined.replace(/[\r\n]+/g, " ") : joined;
    }
    return {
      ok: true,
      preview: { subject: out.subject!, html: out.html!, text: out.text!, preheader: "", missing: [] },
    };
  }
  // Stored versions compiled when saved; this fails only if the renderer changed since.
  const compiled = compileVersion({
    subject: v.subject,
    html: v.htmlContent,
    text: v.plainContent,
    preheader: v.preheader,
  });
  if (!compiled.ok) {
    const e = compiled.error;
    return {
      ok: false,
      problem: `The ${PART_NAMES[e.part]} does not compile (line ${e.line}, column ${e.column}): ${e.message}`,
    };
  }
  const r = renderVersion(compiled.version, data);
  if (!r.ok) {
    const e = r.error;
    return {
      ok: false,
      problem: `The sample data does not render: ${e.message} (in the ${PART_NAMES[e.part]}, line ${e.line}, column ${e.column})`,
    };
  }
  return {
    ok: true,
    preview: {
      subject: r.rendered.subject ?? "",
      html: r.rendered.html ?? "",
      text: r.rendered.text ?? "",
      preheader: r.rendered.preheader ?? "",
      missing: r.missing,
    },
  };
}

async function requireTemplate(c: DashboardContext): Promise<TemplateRow> {
  const t = await tenantTemplates(c.get("db"), c.get("session").tenantId).getTemplate(c.req.param("id")!);
  if (!t) throw notFound();
  return t;
}

async function requireVersion(c: DashboardContext): Promise<{ template: TemplateRow; version: VersionRow }> {
  const template = await requireTemplate(c);
  const version = await tenantTemplates(c.get("db"), c.get("session").tenantId).getVersion(
    template.id,
    c.req.param("vid")!,
  );
  if (!version) throw notFound();
  return { template, version };
}

function ActivateForm(props: {
  session: DashboardSession;
  template: TemplateRow;
  version: { id: string; name: string };
}) {
  const { session, template, version } = props;
  return (
    <form method="post" action={`${versionHref(template, version)}/activate`}>
      <CsrfField session={session} />
      <button type="submit" aria-label={`Activate version ${version.name}`}>
        Activate
      </button>
    </form>
  );
}

function VersionPage(props: {
  session: DashboardSession;
  template: TemplateRow;
  version: VersionRow;
  sample: string;
  outcome: PreviewOutcome;
}) {
  const { session, template, version: v, sample, outcome } = props;
  const dynamic = template.generation === "dynamic";
  const writable = can(session, "POST /app/templates/:id/versions/:vid/activate");
  return (
    <Page title={`${template.name} · ${v.name}`} session={session} current="/app/templates">
      <p>
        <a href={templateHref(template)}>All versions of {template.name}</a>
      </p>
      <dl class="meta">
        <dt>Version id</dt>
        <dd>{v.id}</dd>
        <dt>Subject</dt>
        <dd>{v.subject}</dd>
        <dt>Active</dt>
        <dd id="version-active">{v.active === 1 ? "yes" : "no"}</dd>
        <dt>Updated (UTC)</dt>
        <dd>{sendgridTime(v.updatedAt)}</dd>
        <dt>Plain text</dt>
        <dd>{v.generatePlainContent ? "generated from the HTML" : "its own"}</dd>
      </dl>
      {writable && v.active !== 1 ? (
        <div class="actions">
          <ActivateForm session={session} template={template} version={v} />
        </div>
      ) : null}
      <h2 id="preview-heading">Preview</h2>
      <form method="post" action={`${versionHref(template, v)}/preview`}>
        <CsrfField session={session} />
        <label>
          {dynamic
            ? "Sample dynamic_template_data (a JSON object)"
            : "Sample substitutions (a JSON object of tag to text)"}
          <textarea name="data" rows={10} cols={80} spellcheck={false} aria-describedby="sample-help">
            {sample}
          </textarea>
        </label>
        <p id="sample-help">
          {dynamic
            ? v.testData !== null
              ? "Starts as the version's test data. Rendered as a send renders it: {{x}} is HTML-escaped in the HTML and preheader, {{{x}}} never."
              : "Rendered as a send renders it: {{x}} is HTML-escaped in the HTML and preheader, {{{x}}} never."
            : "Each tag is replaced as written, as a send's substitutions are; <%body%> and <%subject%> stay for the message's own."}
        </p>
        <button type="submit">Render preview</button>
      </form>
      {outcome.ok ? (
        <section aria-labelledby="preview-heading" id="preview">
          <dl class="meta">
            <dt>Subject</dt>
            <dd id="preview-subject">{outcome.preview.subject}</dd>
            {outcome.preview.preheader ? (
              <>
                <dt>Preheader</dt>
                <dd id="preview-preheader">{outcome.preview.preheader}</dd>
              </>
            ) : null}
          </dl>
          {outcome.preview.missing.length ? (
            <p class="notice" id="preview-missing">
              The template reads variables the sample data does not have:{" "}
              {outcome.preview.missing.map((m, i) => (
                <>
                  {i ? ", " : ""}
                  <code>{m}</code>
                </>
              ))}
            </p>
          ) : null}
          {outcome.preview.html ? (
            <iframe
              class="preview"
              sandbox=""
              referrerpolicy="no-referrer"
              title="The version's HTML, rendered with the sample data"
              srcdoc={outcome.preview.html}
            ></iframe>
          ) : null}
          {outcome.preview.text ? (
            <details open={!outcome.preview.html}>
              <summary>Plain text</summary>
              <pre id="preview-text">{outcome.preview.text}</pre>
            </details>
          ) : null}
        </section>
      ) : (
        <p role="alert" id="preview-problem">
          {outcome.problem}
        </p>
      )}
      <h2>Source</h2>
      <details>
        <summary>HTML</summary>
        <pre>{v.htmlContent}</pre>
      </details>
      <details>
        <summary>Plain text</summary>
        <pre>{v.plainContent}</pre>
      </details>
    </Page>
  );
}

export const templatesPages = new Hono<DashboardEnv>()
  .get("/templates", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const q = tenantTemplates(c.get("db"), session.tenantId);
    const rows = await q.listTemplates(["dynamic", "legacy"], LIST_LIMIT, null);
    const versions = await q.versionSummaries(rows.map((r) => r.id));
    return c.html(
      <Page title="Templates" session={session} current="/app/templates">
        {rows.length === 0 ? (
          <p>No templates yet: create them with /v3/templates (docs/api/sendgrid.md#templates).</p>
        ) : null}
        <table id="templates">
          <caption class="skip">Templates, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Id</th>
              <th scope="col">Generation</th>
              <th scope="col">Active version</th>
              <th scope="col">Versions</th>
              <th scope="col">Updated (UTC)</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((t) => {
              const own = versions.filter((v) => v.templateId === t.id);
              return (
                <tr>
                  <td>
                    <a href={templateHref(t)}>{t.name}</a>
                  </td>
                  <td>
                    <code>{t.id}</code>
                  </td>
                  <td>{t.generation}</td>
                  <td>{own.find((v) => v.active === 1)?.name ?? "none"}</td>
                  <td class="num">{own.length}</td>
                  <td>{sendgridTime(t.updatedAt)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </Page>,
    );
  })
  .get("/templates/:id", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const template = await requireTemplate(c);
    const versions = await tenantTemplates(c.get("db"), session.tenantId).versionSummaries([template.id]);
    const writable = can(session, "POST /app/templates/:id/versions/:vid/activate");
    return c.html(
      <Page title={template.name} session={session} current="/app/templates">
        <dl class="meta">
          <dt>Template id</dt>
          <dd>
            <code>{template.id}</code>
          </dd>
          <dt>Generation</dt>
          <dd>{template.generation}</dd>
          <dt>Updated (UTC)</dt>
          <dd>{sendgridTime(template.updatedAt)}</dd>
        </dl>
        <h2>Versions</h2>
        {versions.length === 0 ? <p>No versions yet.</p> : null}
        <table id="versions">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Subject</th>
              <th scope="col">Active</th>
              <th scope="col">Updated (UTC)</th>
              {writable ? (
                <th scope="col">
                  <span class="skip">Actions</span>
                </th>
              ) : null}
            </tr>
          </thead>
          <tbody>
            {versions.map((v) => (
              <tr>
                <td>
                  <a href={versionHref(template, v)}>{v.name}</a>
                </td>
                <td>{v.subject}</td>
                <td class={v.active === 1 ? "status status-delivered" : undefined}>
                  {v.active === 1 ? "active" : "no"}
                </td>
                <td>{sendgridTime(v.updatedAt)}</td>
                {writable ? (
                  <td>
                    {v.active === 1 ? null : (
                      <ActivateForm session={session} template={template} version={v} />
                    )}
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </Page>,
    );
  })
  .get("/templates/:id/versions/:vid", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const { template, version } = await requireVersion(c);
    const sample = version.testData ?? "{}";
    let outcome: PreviewOutcome;
    try {
      outcome = renderPreview(template.generation, version, parseSample(template.generation, sample));
    } catch (e) {
      // The stored test data is the version's own, not this request's: shown, not a 400.
      if (!(e instanceof AppError)) throw e;
      outcome = { ok: false, problem: `The version's test data cannot be used: ${e.message}` };
    }
    return c.html(
      <VersionPage
        session={session}
        template={template}
        version={version}
        sample={sample}
        outcome={outcome}
      />,
    );
  })
  .post("/templates/:id/versions/:vid/preview", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const { template, version } = await requireVersion(c);
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf" && k !== "data");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const sample = typeof form.data === "string" ? form.data : "";
    let outcome: PreviewOutcome;
    try {
      outcome = renderPreview(template.generation, version, parseSample(template.generation, sample));
    } catch (e) {
      if (!(e instanceof AppError)) throw e;
      outcome = { ok: false, problem: e.message };
    }
    return c.html(
      <VersionPage
        session={session}
        template={template}
        version={version}
        sample={sample}
        outcome={outcome}
      />,
      outcome.ok ? 200 : 400,
    );
  })
  .post("/templates/:id/versions/:vid/activate", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const row = await activateVersion(
      c.get("db"),
      session.tenantId,
      c.req.param("id"),
      c.req.param("vid"),
      Date.now(),
    );
    return c.redirect(templateHref({ id: row.templateId }), 303);
  });
