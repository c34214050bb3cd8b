/**
 * The dashboard's templates pages in workerd (docs/dashboard.md#pages): the list of a tenant's
 * dynamic and legacy templates, a template's versions, activating one (and /v3/templates then
 * answering it active), the live preview through the shared renderer (substitutions, Handlebars'
 * HTML escaping in the HTML and none in the subject, missing variables, legacy substitutions), bad
 * sample data as a 400 page naming the problem, RBAC (templates.read to look, templates.write to
 * activate), tenant isolation and CSRF refusals. Templates are made through /v3/templates, as a
 * tenant would; the pages are fetched as a browser would (dashboard.helpers.ts).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { createApiKey, setupTenant, uid } from "./helpers.ts";
import { Browser, createLogin, createRole } from "./dashboard.helpers.ts";
import { ALL_TEMPLATE_SCOPES, api, makeTemplate, makeVersion, SENDGRID_TIME } from "./templates.helpers.ts";

/** An attribute's value as the browser reads it (Hono escapes & < > " '). */
const unescapeAttr = (s: string) =>
  s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&");

/** The preview iframe's document (its srcdoc), or null when the page has none. */
/** Text as Hono writes it into the page. */
const escapeText = (s: string) =>
  s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");

function srcdoc(page: string): string | null {
  const m = /<iframe[^>]*\bsrcdoc="([^"]*)"/.exec(page);
  return m ? unescapeAttr(m[1]!) : null;
}

function byId(page: string, id: string): string | null {
  const m = new RegExp(`id="${id}"[^>]*>([\\s\\S]*?)</`).exec(page);
  return m ? m[1]! : null;
}

/** The fields of /v3/templates' version answer these tests read. */
type Version = { id: string; name: string; test_data?: string };

interface Fixture {
  tenantId: string;
  key: string;
  templateId: string;
  templateName: string;
  v1: Version;
  v2: Version;
  legacyId: string;
  legacyName: string;
  legacyVersion: Version;
  admin: Browser;
}

async function fixture(): Promise<Fixture> {
  const t = await setupTenant();
  const { key } = await createApiKey(t.tenantId, { scopes: ALL_TEMPLATE_SCOPES });
  const m = uid();
  const tpl = await makeTemplate(key, `welcome-${m}`);
  const v1 = (await makeVersion(key, tpl.id, {
    name: `first-${m}`,
    subject: "Hi {{name}}",
    html_content: "<html><body><p>Hello {{name}}</p><p>{{{raw}}}</p><p>{{city}}</p></body></html>",
    test_data: JSON.stringify({ name: "Ada", raw: "<em>ok</em>", city: "Paris" }),
  })) as Version;
  const v2 = (await makeVersion(key, tpl.id, {
    name: `second-${m}`,
    subject: "Second {{name}}",
    html_content: "<p>Second {{name}}</p>",
  })) as Version;
  const legacy = await makeTemplate(key, `legacy-${m}`, "legacy");
  const legacyVersion = (await makeVersion(key, legacy.id, {
    name: `legacy-v-${m}`,
    subject: "Order -order- <%subject%>",
    html_content: "<p>Dear -name-,</p><%body%>",
  })) as Version;
  const admin = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
  return {
    tenantId: t.tenantId,
    key,
    templateId: tpl.id,
    templateName: tpl.name,
    v1,
    v2,
    legacyId: legacy.id,
    legacyName: legacy.name,
    legacyVersion,
    admin,
  };
}

const versionPath = (f: Fixture, v: { id: string }) => `/app/templates/${f.templateId}/versions/${v.id}`;

async function activeVersionId(f: Fixture): Promise<string | undefined> {
  const r = await api(f.key, "GET", `/v3/templates/${f.templateId}`);
  expect(r.status, r.text).toBe(200);
  return (r.body.versions as { id: string; active: number }[]).find((v) => v.active === 1)?.id;
}

describe("dashboard templates", () => {
  let f: Fixture;

  beforeAll(async () => {
    f = await fixture();
  }, 120_000);

  it("lists the tenant's dynamic and legacy templates with their active version, linked from the nav", async () => {
    const page = await f.admin.get("/app/templates");
    expect(page.status).toBe(200);
    expect(page.text).toContain('href="/app/templates" aria-current="page"');
    const rows = page.text.split("<tr>").slice(2);
    const dyn = rows.find((r) => r.includes(f.templateName))!;
    expect(dyn).toContain(`href="/app/templates/${f.templateId}"`);
    expect(dyn).toContain("<td>dynamic</td>");
    expect(dyn).toContain(`<td>${f.v1.name}</td>`); // the first version is the active one
    expect(dyn).toMatch(/<td class="num">2<\/td>/);
    const leg = rows.find((r) => r.includes(f.legacyName))!;
    expect(leg).toContain("<td>legacy</td>");
    expect(rows).toHaveLength(2);
    // The nav of every dashboard page links it.
    expect((await f.admin.get("/app/messages")).text).toContain('href="/app/templates"');
  });

  it("a template's page lists its versions with name, subject, active flag and the API's updated_at", async () => {
    const page = await f.admin.get(`/app/templates/${f.templateId}`);
    expect(page.status).toBe(200);
    const api1 = await api(f.key, "GET", `/v3/templates/${f.templateId}/versions/${f.v1.id}`);
    expect(api1.body.updated_at).toMatch(SENDGRID_TIME);
    const rows = page.text.split("<tr>").slice(2);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toContain(`href="${versionPath(f, f.v1)}"`);
    expect(rows[0]).toContain("<td>Hi {{name}}</td>");
    expect(rows[0]).toContain(">active</td>");
    expect(rows[0]).toContain(`<td>${api1.body.updated_at}</td>`);
    expect(rows[0]).not.toContain("Activate");
    expect(rows[1]).toContain("<td>Second {{name}}</td>");
    expect(rows[1]).toContain(">no</td>");
    expect(rows[1]).toContain(`action="${versionPath(f, f.v2)}/activate"`);
  });

  it("the version's page previews it with its test data, rendered by the shared renderer in a sandboxed iframe", async () => {
    const page = await f.admin.get(versionPath(f, f.v1));
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/<iframe[^>]*sandbox=""/);
    expect(srcdoc(page.text)).toBe(
      "<html><body><p>Hello Ada</p><p><em>ok</em></p><p>Paris</p></body></html>",
    );
    expect(byId(page.text, "preview-subject")).toBe("Hi Ada");
    // The textarea starts as the version's test data.
    expect(page.text).toContain(`${escapeText(f.v1.test_data as string)}</textarea>`);
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
  });

  it("a posted preview substitutes the sample data, HTML-escaping {{x}} in the HTML (not {{{x}}}, not the subject) and naming missing variables", async () => {
    const data = { name: `<b>Bob & "co"</b>`, raw: "<i>raw</i>" };
    const res = await f.admin.post(`${versionPath(f, f.v1)}/preview`, { data: JSON.stringify(data) });
    expect(res.status, res.text).toBe(200);
    expect(srcdoc(res.text)).toBe(
      "<html><body><p>Hello &lt;b&gt;Bob &amp; &quot;co&quot;&lt;/b&gt;</p><p><i>raw</i></p><p></p></body></html>",
    );
    // The subject is not HTML-escaped by the renderer (a header); the page escapes it as text once.
    expect(byId(res.text, "preview-subject")).toBe("Hi &lt;b&gt;Bob &amp; &quot;co&quot;&lt;/b&gt;");
    expect(res.text).toMatch(/id="preview-missing"[\s\S]*<code>city<\/code>/);
    // Nothing was stored: the version's test data is unchanged.
    const after = await api(f.key, "GET", `/v3/templates/${f.templateId}/versions/${f.v1.id}`);
    expect(JSON.parse(after.body.test_data)).toEqual({ name: "Ada", raw: "<em>ok</em>", city: "Paris" });
  });

  it("bad sample data is a 400 page naming the problem, the textarea keeping what was sent", async () => {
    const bad = await f.admin.post(`${versionPath(f, f.v1)}/preview`, { data: '{"name": "Ada",}' });
    expect(bad.status).toBe(400);
    expect(byId(bad.text, "preview-problem")).toMatch(/^The sample data is not valid JSON: \S.+/);
    expect(bad.text).toContain("{&quot;name&quot;: &quot;Ada&quot;,}</textarea>");
    expect(srcdoc(bad.text)).toBeNull();
    const list = await f.admin.post(`${versionPath(f, f.v1)}/preview`, { data: "[1, 2]" });
    expect(list.status).toBe(400);
    expect(byId(list.text, "preview-problem")).toBe(
      "The sample data (dynamic_template_data) must be a JSON object",
    );
    const field = await f.admin.post(`${versionPath(f, f.v1)}/preview`, { data: "{}", extra: "1" });
    expect(field.status).toBe(400);
    expect(field.text).toContain("Unknown form field: extra");
  });

  it("data the template cannot render with is a 400 naming the helper and place; stored test data that is not JSON is said on the page", async () => {
    const g = await fixture(); // its own template: the tests above count f's versions
    const v = (await makeVersion(g.key, g.templateId, {
      name: `dated-${uid()}`,
      subject: "Due",
      html_content: '<p>Due {{formatDate when "YYYY-MM-DD"}}</p>',
      test_data: "not json",
    })) as Version;
    const page = await g.admin.get(versionPath(g, v));
    expect(page.status).toBe(200);
    expect(byId(page.text, "preview-problem")).toMatch(
      /^The version&#39;s test data cannot be used: The sample data is not valid JSON: \S/,
    );
    expect(page.text).toContain("not json</textarea>");
    const ok = await g.admin.post(`${versionPath(g, v)}/preview`, {
      data: '{"when": "2026-01-31T10:00:00Z"}',
    });
    expect(ok.status, ok.text).toBe(200);
    expect(srcdoc(ok.text)).toBe("<p>Due 2026-01-31</p>");
    const bad = await g.admin.post(`${versionPath(g, v)}/preview`, { data: '{"when": "soon"}' });
    expect(bad.status).toBe(400);
    expect(byId(bad.text, "preview-problem")).toBe(
      "The sample data does not render: formatDate: &quot;soon&quot; is not a date (epoch number or ISO 8601 string) (in the HTML, line 1, column 8)",
    );
  });

  it("a legacy version previews with substitutions, <%body%> and <%subject%> left for the message's own", async () => {
    const path = `/app/templates/${f.legacyId}/versions/${f.legacyVersion.id}/preview`;
    // A tag inside <%body%> is not substituted: the body is the message's own, filled at send.
    const res = await f.admin.post(path, {
      data: JSON.stringify({ "-name-": "Ada", "-order-": "42", "%body%": "oops" }),
    });
    expect(res.status, res.text).toBe(200);
    expect(srcdoc(res.text)).toBe("<p>Dear Ada,</p><%body%>");
    expect(byId(res.text, "preview-subject")).toBe("Order 42 &lt;%subject%&gt;");
    const bad = await f.admin.post(path, { data: JSON.stringify({ "-name-": 7 }) });
    expect(bad.status).toBe(400);
    expect(byId(bad.text, "preview-problem")).toContain("&quot;-name-&quot; is not one");
  });

  it("activating a version makes it the one /v3/templates reports active", async () => {
    const g = await fixture();
    expect(await activeVersionId(g)).toBe(g.v1.id);
    await g.admin.get(`/app/templates/${g.templateId}`);
    const res = await g.admin.post(`${versionPath(g, g.v2)}/activate`);
    expect(res.status, res.text).toBe(303);
    expect(res.headers.get("location")).toBe(`/app/templates/${g.templateId}`);
    expect(await activeVersionId(g)).toBe(g.v2.id);
    const page = await g.admin.get(`/app/templates/${g.templateId}`);
    const rows = page.text.split("<tr>").slice(2);
    expect(rows[0]).toContain(`action="${versionPath(g, g.v1)}/activate"`);
    expect(rows[1]).toContain(">active</td>");
    expect((await g.admin.get(versionPath(g, g.v2))).text).toContain('id="version-active">yes<');
  });

  it("templates.read sees no activate buttons and its POST is 403; without templates.read the pages are 403 and unlinked", async () => {
    const g = await fixture();
    const reader = await Browser.signIn(
      (await createLogin(g.tenantId, [await createRole(g.tenantId, ["templates.read"])])).email,
    );
    const list = await reader.get(`/app/templates/${g.templateId}`);
    expect(list.status).toBe(200);
    expect(list.text).toContain(g.v2.name);
    expect(list.text).not.toContain("/activate");
    const version = await reader.get(versionPath(g, g.v2));
    expect(version.status).toBe(200);
    expect(version.text).not.toContain("/activate");
    const preview = await reader.post(`${versionPath(g, g.v2)}/preview`, { data: '{"name":"Cy"}' });
    expect(preview.status).toBe(200);
    expect(srcdoc(preview.text)).toBe("<p>Second Cy</p>");
    const refused = await reader.post(`${versionPath(g, g.v2)}/activate`);
    expect(refused.status).toBe(403);
    expect(refused.text).toContain("templates.write");
    expect(await activeVersionId(g)).toBe(g.v1.id);

    const none = await Browser.signIn(
      (await createLogin(g.tenantId, [await createRole(g.tenantId, ["stats.read"])])).email,
    );
    const home = await none.get("/app/messages");
    expect(home.text).not.toContain('href="/app/templates"');
    for (const path of ["/app/templates", `/app/templates/${g.templateId}`, versionPath(g, g.v1)]) {
      expect((await none.get(path)).status, path).toBe(403);
    }
    expect((await none.post(`${versionPath(g, g.v1)}/preview`, { data: "{}" })).status).toBe(403);
  });

  it("tenant B's session on A's template ids is 404, as for ids that exist nowhere, and changes nothing", async () => {
    const other = await setupTenant();
    const b = await Browser.signIn((await createLogin(other.tenantId, ["admin"])).email);
    const mine = await b.get("/app/templates");
    expect(mine.status).toBe(200);
    expect(mine.text).not.toContain(f.templateName);
    expect(mine.text).not.toContain(f.templateId);
    const nowhere = { id: "d-00000000000000000000000000000000" };
    for (const [label, path] of [
      ["A's", `/app/templates/${f.templateId}`],
      ["A's version", versionPath(f, f.v2)],
      ["no such", `/app/templates/${nowhere.id}`],
      ["A's template, no such version", `/app/templates/${f.templateId}/versions/${nowhere.id}`],
    ] as const) {
      const res = await b.get(path);
      expect(res.status, label).toBe(404);
      expect(res.text).not.toContain(f.templateName);
    }
    const preview = await b.post(`${versionPath(f, f.v1)}/preview`, { data: "{}" });
    expect(preview.status).toBe(404);
    expect(preview.text).not.toContain("Ada");
    expect((await b.post(`${versionPath(f, f.v2)}/activate`)).status).toBe(404);
    expect(await activeVersionId(f)).toBe(f.v1.id);
  });

  it("an activate without the session's CSRF token, or from another origin, is 403 and changes nothing", async () => {
    const g = await fixture();
    await g.admin.get(`/app/templates/${g.templateId}`);
    const path = `${versionPath(g, g.v2)}/activate`;
    expect((await g.admin.post(path, {}, { csrf: null })).status).toBe(403);
    expect((await g.admin.post(path, {}, { csrf: "0".repeat(64) })).status).toBe(403);
    expect((await g.admin.post(path, {}, { origin: "https://evil.example" })).status).toBe(403);
    expect((await g.admin.post(path, {}, { origin: null })).status).toBe(403);
    expect(await activeVersionId(g)).toBe(g.v1.id);
    expect((await g.admin.post(path)).status).toBe(303);
    expect(await activeVersionId(g)).toBe(g.v2.id);
  });
});
