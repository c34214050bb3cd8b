/**
 * /v3/templates/{id}/versions (edge/src/services/templates.ts, docs/api/sendgrid.md#versions):
 * SendGrid's version object, one active version per template (first created active, activation
 * exclusive, also under concurrent activations), generate_plain_content derived from the HTML,
 * Handlebars checked by the shared renderer at save with field, line and column, and the limits.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  api,
  makeTemplate,
  makeVersion,
  NOT_FOUND,
  SENDGRID_TIME,
  templatesTenant,
  UUID,
} from "./templates.helpers.ts";

const err = (field: string | null, message: string) => ({ errors: [{ message, field, help: null }] });

async function activeIn(templateId: string): Promise<string[]> {
  const rows = await env.DB.prepare("SELECT name FROM template_versions WHERE template_id = ? AND active = 1")
    .bind(templateId)
    .all<{ name: string }>();
  return rows.results.map((r) => r.name);
}

describe("POST /v3/templates/{id}/versions", () => {
  it("answers 201 with SendGrid's version object; the first version is active, later ones not", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Welcome");
    const r = await api(t.key, "POST", `/v3/templates/${tpl.id}/versions`, {
      name: "First",
      subject: "Welcome, {{name}}",
      html_content: "<h1>Hi {{name}}</h1><p>Thanks &amp; welcome.</p>",
      test_data: '{"name":"Ann"}',
    });
    expect(r.status, r.text).toBe(201);
    expect(r.body).toEqual({
      id: expect.stringMatching(UUID),
      template_id: tpl.id,
      active: 1,
      name: "First",
      subject: "Welcome, {{name}}",
      updated_at: expect.stringMatching(SENDGRID_TIME),
      generate_plain_content: true,
      editor: "code",
      html_content: "<h1>Hi {{name}}</h1><p>Thanks &amp; welcome.</p>",
      plain_content: "Hi {{name}}\n\nThanks & welcome.",
      test_data: '{"name":"Ann"}',
      created_at: expect.stringMatching(SENDGRID_TIME),
    });
    const second = await makeVersion(t.key, tpl.id, { name: "Second" });
    expect(second.active).toBe(0);
    expect(await activeIn(tpl.id)).toEqual(["First"]);

    // Reading it back gives the same object.
    const got = await api(t.key, "GET", `/v3/templates/${tpl.id}/versions/${r.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(r.body);
  });

  it("a first version sent with active 0 stays inactive; a later one with active 1 takes over", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Drafts");
    expect((await makeVersion(t.key, tpl.id, { name: "draft", active: 0 })).active).toBe(0);
    expect(await activeIn(tpl.id)).toEqual([]);
    await makeVersion(t.key, tpl.id, { name: "live", active: 1 });
    await makeVersion(t.key, tpl.id, { name: "newer live", active: 1 });
    expect(await activeIn(tpl.id)).toEqual(["newer live"]);
  });

  it("refuses what it cannot store or honour, each field named", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Strict");
    const path = `/v3/templates/${tpl.id}/versions`;
    const cases: [unknown, unknown][] = [
      [
        {},
        {
          errors: [
            { message: "name is required.", field: "name", help: null },
            { message: "subject is required.", field: "subject", help: null },
          ],
        },
      ],
      [{ name: "v", subject: "x".repeat(256) }, err("subject", "subject must be at most 255 characters.")],
      [{ name: "v".repeat(101), subject: "s" }, err("name", "name must be at most 100 characters.")],
      [
        { name: "v", subject: "a\r\nBcc: x@example.com" },
        err("subject", "subject may not contain CR or LF."),
      ],
      [{ name: "v", subject: "s", active: 2 }, err("active", "active must be 0 or 1.")],
      [{ name: "v", subject: "s", active: true }, err("active", "active must be 0 or 1.")],
      [{ name: "v", subject: "s", editor: "wysiwyg" }, err("editor", "editor must be one of: code, design.")],
      [
        { name: "v", subject: "s", generate_plain_content: "yes" },
        err("generate_plain_content", "generate_plain_content must be true or false."),
      ],
      [{ name: "v", subject: "s", test_data: { a: 1 } }, err("test_data", "test_data must be a string.")],
      [
        { name: "v", subject: "s", thumbnail: "x" },
        err("thumbnail", "thumbnail is not a field of this request."),
      ],
      [
        { name: "v", subject: "s", template_id: "d-other" },
        err("template_id", "template_id must be the template of the path, or left out."),
      ],
      [{ name: "v", subject: "s", id: "mine" }, err("id", "id is chosen by the server; leave it out.")],
      [
        {
          name: "v",
          subject: "s",
          html_content: "<p>x</p>",
          plain_content: "x",
          generate_plain_content: true,
        },
        err(
          "plain_content",
          "plain_content is generated from html_content when generate_plain_content is true; send plain_content with generate_plain_content false, or leave it out.",
        ),
      ],
      [
        { name: "v", subject: "s", html_content: "é".repeat(524_289) },
        err("html_content", "html_content must be at most 1,048,576 bytes."),
      ],
    ];
    for (const [body, expected] of cases) {
      const r = await api(t.key, "POST", path, body);
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(r.body, JSON.stringify(body).slice(0, 80)).toEqual(expected);
    }
    // SendGrid's own example body carries template_id: the path's id is accepted.
    const echo = await api(t.key, "POST", path, { template_id: tpl.id, name: "echo", subject: "s" });
    expect(echo.status, echo.text).toBe(201);
    expect((await api(t.key, "POST", path, { name: "echo", subject: "again" })).body).toEqual(
      err("name", "A version with this name already exists in this template."),
    );
    expect(
      (await api(t.key, "POST", `/v3/templates/d-${"0".repeat(32)}/versions`, { name: "v", subject: "s" }))
        .body,
    ).toEqual(NOT_FOUND);
  });

  it("checks Handlebars with the shared renderer: 400 naming the field, line and column", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Syntax");
    const path = `/v3/templates/${tpl.id}/versions`;
    const bad = await api(t.key, "POST", path, {
      name: "v",
      subject: "ok",
      html_content: "<p>\n{{#if vip}}VIP</p>",
      generate_plain_content: false,
    });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual(
      err(
        "html_content",
        "Invalid template syntax in html_content at line 2, column 19: syntax error: unexpected end of template (a block is not closed?)",
      ),
    );
    const subject = await api(t.key, "POST", path, { name: "v", subject: "Hi {{name" });
    expect(subject.body).toEqual(
      err("subject", 'Invalid template syntax in subject at line 1, column 6: syntax error: unexpected "n"'),
    );
    const helper = await api(t.key, "POST", path, {
      name: "v",
      subject: "s",
      plain_content: "line one\n{{shout name}}",
    });
    expect(helper.body).toEqual(
      err(
        "plain_content",
        'Invalid template syntax in plain_content at line 2, column 1: unknown helper "shout"',
      ),
    );
    // Nothing was stored by the refused saves.
    expect((await api(t.key, "GET", `/v3/templates/${tpl.id}`)).body.versions).toEqual([]);

    // Legacy templates are substitution tags, not Handlebars: not parsed.
    const legacy = await makeTemplate(t.key, "Old", "legacy");
    const ok = await api(t.key, "POST", `/v3/templates/${legacy.id}/versions`, {
      name: "v",
      subject: "<%subject%>",
      html_content: "<%body%> {{#if",
    });
    expect(ok.status, ok.text).toBe(201);
  });

  it("stores at most 1,900,000 bytes per version (413) and 300 versions per template", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Big");
    const mib = "a".repeat(1_048_576);
    const big = await api(t.key, "POST", `/v3/templates/${tpl.id}/versions`, {
      name: "v",
      subject: "s",
      html_content: mib,
      plain_content: mib,
      generate_plain_content: false,
    });
    expect(big.status).toBe(413);
    expect(big.body).toEqual(
      err(
        null,
        "html_content, plain_content and test_data together are 2,097,153 bytes; one version may store at most 1,900,000.",
      ),
    );
    const now = Date.now();
    await env.DB.batch(
      Array.from({ length: 300 }, (_, i) =>
        env.DB.prepare(
          "INSERT INTO template_versions (id, tenant_id, template_id, name, subject, html_content, plain_content, generate_plain_content, editor, active, created_at, updated_at) VALUES (?, ?, ?, ?, 's', '', '', 0, 'code', 0, ?, ?)",
        ).bind(crypto.randomUUID(), t.tenantId, tpl.id, `bulk ${i}`, now, now),
      ),
    );
    const more = await api(t.key, "POST", `/v3/templates/${tpl.id}/versions`, { name: "301", subject: "s" });
    expect(more.status).toBe(400);
    expect(more.body).toEqual(err(null, "A template may have at most 300 versions; delete one first."));
  });
});

describe("generate_plain_content", () => {
  it("derives the text from the HTML on create and on every change of html_content", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Text");
    const v = await makeVersion(t.key, tpl.id, {
      name: "v",
      html_content:
        '<html><head><style>p{color:red}</style></head><body><p>Hi {{name}},</p><ul>{{#each items}}<li>{{this}}</li>{{/each}}</ul><p><a href="{{url}}">Track</a></p></body></html>',
    });
    expect(v.generate_plain_content).toBe(true);
    expect(v.plain_content).toBe("Hi {{name}},\n\n{{#each items}}\n- {{this}}\n{{/each}}\n\nTrack ({{url}})");

    const patched = await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, {
      html_content: "<p>Bye {{name}}</p>",
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.plain_content).toBe("Bye {{name}}");
    expect(patched.body.generate_plain_content).toBe(true);
  });

  it("a plain_content sent without the flag is kept (and turns generation off), never overwritten", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Own text");
    const v = await makeVersion(t.key, tpl.id, { name: "v", plain_content: "My own {{name}}" });
    expect(v.plain_content).toBe("My own {{name}}");
    expect(v.generate_plain_content).toBe(false);
    // Later HTML changes leave it alone.
    const p = await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, {
      html_content: "<p>new</p>",
    });
    expect(p.body.plain_content).toBe("My own {{name}}");
    // Turning generation on derives it at once.
    const on = await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, {
      generate_plain_content: true,
    });
    expect(on.body.plain_content).toBe("new");
    expect(on.body.generate_plain_content).toBe(true);
  });

  it("the derived text is checked like any part: HTML whose text would not compile is a 400 on html_content", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Derived");
    // Valid Handlebars as HTML, but the block opens inside an attribute of an image without alt
    // text: the text has no image, so it keeps only the block's close.
    const html = '<p><img src="{{#if logo}}logo.png">{{/if}} Hi</p>';
    const r = await api(t.key, "POST", `/v3/templates/${tpl.id}/versions`, {
      name: "v",
      subject: "s",
      html_content: html,
    });
    expect(r.status).toBe(400);
    expect(r.body).toEqual(
      err(
        "html_content",
        expect.stringMatching(
          /^The plain text generated from html_content is not a valid template \(line 1, column \d+\): .+\. Send plain_content with generate_plain_content false\.$/,
        ),
      ),
    );
    // With its own text, the same HTML is stored.
    const own = await api(t.key, "POST", `/v3/templates/${tpl.id}/versions`, {
      name: "v",
      subject: "s",
      html_content: html,
      plain_content: "Hi",
      generate_plain_content: false,
    });
    expect(own.status, own.text).toBe(201);
  });
});

describe("GET, PATCH, DELETE a version; activate", () => {
  it("PATCH changes only what it is given", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Patch");
    const v = await makeVersion(t.key, tpl.id, { name: "v", editor: "design", test_data: "{}" });
    const r = await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, { name: "renamed" });
    expect(r.status, r.text).toBe(200);
    expect({ ...r.body, updated_at: v.updated_at }).toEqual({ ...v, name: "renamed" });
    const bad = await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, {
      subject: "{{#each}}",
    });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].field).toBe("subject");
    const cleared = await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, {
      test_data: null,
    });
    expect(cleared.body.test_data).toBeUndefined();
    expect(
      (await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${crypto.randomUUID()}`, { name: "x" }))
        .body,
    ).toEqual(NOT_FOUND);
  });

  it("activate makes one version active and every other inactive, in one step", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "AB test");
    const a = await makeVersion(t.key, tpl.id, { name: "A" });
    const b = await makeVersion(t.key, tpl.id, { name: "B" });
    const c = await makeVersion(t.key, tpl.id, { name: "C" });
    expect(await activeIn(tpl.id)).toEqual(["A"]);

    const r = await api(t.key, "POST", `/v3/templates/${tpl.id}/versions/${b.id}/activate`);
    expect(r.status, r.text).toBe(200);
    expect(r.body).toMatchObject({ id: b.id, active: 1, name: "B", html_content: b.html_content });
    expect(await activeIn(tpl.id)).toEqual(["B"]);
    // Activating the active one changes nothing.
    expect((await api(t.key, "POST", `/v3/templates/${tpl.id}/versions/${b.id}/activate`)).status).toBe(200);
    expect(await activeIn(tpl.id)).toEqual(["B"]);
    // PATCH active 1 is the same operation.
    await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${c.id}`, { active: 1 });
    expect(await activeIn(tpl.id)).toEqual(["C"]);
    const view = (await api(t.key, "GET", `/v3/templates/${tpl.id}`)).body;
    expect(view.versions.map((v: { id: string; active: number }) => [v.id, v.active])).toEqual([
      [a.id, 0],
      [b.id, 0],
      [c.id, 1],
    ]);
    expect(
      (await api(t.key, "POST", `/v3/templates/${tpl.id}/versions/${crypto.randomUUID()}/activate`)).body,
    ).toEqual(NOT_FOUND);
  });

  it("concurrent activations of different versions leave exactly one active", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Race");
    const versions = [];
    for (let i = 0; i < 6; i++) versions.push(await makeVersion(t.key, tpl.id, { name: `v${i}` }));
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        versions.map((v) => api(t.key, "POST", `/v3/templates/${tpl.id}/versions/${v.id}/activate`)),
      );
      expect(answers.map((a) => a.status)).toEqual(versions.map(() => 200));
      expect(await activeIn(tpl.id)).toHaveLength(1);
    }
  });

  it("the active version cannot be deleted; an inactive one can (204); deactivating leaves none active", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Deletes");
    const a = await makeVersion(t.key, tpl.id, { name: "A" });
    const b = await makeVersion(t.key, tpl.id, { name: "B" });
    const refused = await api(t.key, "DELETE", `/v3/templates/${tpl.id}/versions/${a.id}`);
    expect(refused.status).toBe(400);
    expect(refused.body).toEqual(
      err(
        "version_id",
        "The active version of a template cannot be deleted; activate another version (or set active to 0) first, or delete the template.",
      ),
    );
    const del = await api(t.key, "DELETE", `/v3/templates/${tpl.id}/versions/${b.id}`);
    expect(del.status).toBe(204);
    expect(del.text).toBe("");
    expect((await api(t.key, "GET", `/v3/templates/${tpl.id}/versions/${b.id}`)).body).toEqual(NOT_FOUND);
    expect((await api(t.key, "DELETE", `/v3/templates/${tpl.id}/versions/${b.id}`)).body).toEqual(NOT_FOUND);

    const off = await api(t.key, "PATCH", `/v3/templates/${tpl.id}/versions/${a.id}`, { active: 0 });
    expect(off.body.active).toBe(0);
    expect(await activeIn(tpl.id)).toEqual([]);
    expect((await api(t.key, "DELETE", `/v3/templates/${tpl.id}/versions/${a.id}`)).status).toBe(204);
    expect((await api(t.key, "GET", `/v3/templates/${tpl.id}`)).body.versions).toEqual([]);
  });

  it("a version is found only under its own template", async () => {
    const t = await templatesTenant();
    const one = await makeTemplate(t.key, "One");
    const two = await makeTemplate(t.key, "Two");
    const v = await makeVersion(t.key, one.id, { name: "v" });
    for (const [method, suffix] of [
      ["GET", ""],
      ["PATCH", ""],
      ["DELETE", ""],
      ["POST", "/activate"],
    ] as const) {
      const r = await api(
        t.key,
        method,
        `/v3/templates/${two.id}/versions/${v.id}${suffix}`,
        method === "PATCH" ? { name: "x" } : undefined,
      );
      expect(r.status, method + suffix).toBe(404);
    }
  });

  it("GET …/versions lists the versions without their content", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Listed");
    const a = await makeVersion(t.key, tpl.id, { name: "A" });
    const b = await makeVersion(t.key, tpl.id, { name: "B" });
    const r = await api(t.key, "GET", `/v3/templates/${tpl.id}/versions`);
    expect(r.status).toBe(200);
    expect(r.body.result.map((v: { id: string; active: number }) => [v.id, v.active])).toEqual([
      [a.id, 1],
      [b.id, 0],
    ]);
    expect(r.body.result[0].html_content).toBeUndefined();
  });
});
