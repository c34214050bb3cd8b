/**
 * SenderKit templates (docs/api/senderkit.md#templates, docs/api/admin.md#senderkit-templates) on
 * the real app and real D1: the admin API that manages them, versioning (immutable versions,
 * publish, rollback, archive), which version live and test sends use and a `version` pin, the
 * render endpoint's `output` per channel and `missing`, and tenant isolation. Every /v1 response is
 * validated against SenderKit's OpenAPI document.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import { resolveTemplateSend } from "../../edge/src/services/senderkit/template-send.ts";
import { expectMatches, expectSchema, matches } from "../helpers/openapi-edge.ts";
import { createApiKey, createTenant, bearer } from "./helpers.ts";
import { addVersion, admin, adminOk, createSk, publish, skKey, v1 } from "./senderkit-templates.helpers.ts";

const db = () => createDb(env.DB);

const EMAIL = {
  subject: "Hi {{name}} & co",
  preheader: "For {{name}} <3",
  html: "<p>Hello {{name}}, <b>{{{raw}}}</b> {{&raw}}</p><p>{{#items}}<i>{{title}} at {{shop}}</i>{{/items}}{{^items}}none{{/items}}</p>",
};

describe("admin API: create, versions, immutability", () => {
  it("creates a draft with version 1, lowercases the slug, and refuses a second with the same slug", async () => {
    const tenant = await createTenant();
    const t = await createSk(tenant, {
      slug: "Welcome-Email",
      channel: "email",
      description: "hi",
      content: EMAIL,
    });
    expect(t).toMatchObject({
      slug: "welcome-email",
      channel: "email",
      status: "draft",
      current_version: null,
      latest_version: 1,
    });
    expect(t.versions.map((v) => v.version)).toEqual([1]);
    const dup = await admin(tenant, "", "POST", {
      slug: "WELCOME-email",
      channel: "sms",
      content: { body: "x" },
    });
    expect(dup.status).toBe(409);
    const got = await adminOk(tenant, "/WELCOME-EMAIL");
    expect(got.id).toBe(t.id);
  });

  it("refuses content that is not the channel's or does not compile, naming the field", async () => {
    const tenant = await createTenant();
    const bad = await admin(tenant, "", "POST", {
      slug: "a",
      channel: "email",
      content: { subject: "s", html: "{{#x}}open" },
    });
    expect(bad.status).toBe(422);
    const detail = ((await bad.json()) as { detail: { loc: string[]; msg: string }[] }).detail;
    expect(detail[0]!.loc).toEqual(["body", "content", "html"]);
    expect(detail[0]!.msg).toMatch(/line 1/);
    const wrong = await admin(tenant, "", "POST", {
      slug: "b",
      channel: "sms",
      content: { subject: "s", html: "h" },
    });
    expect(wrong.status).toBe(422);
    const extra = await admin(tenant, "", "POST", {
      slug: "c",
      channel: "sms",
      content: { body: "b" },
      bogus: 1,
    });
    expect(extra.status).toBe(422);
    await createSk(tenant, { slug: "d", channel: "sms", content: { body: "b" } });
    const emailOnSms = await admin(tenant, "/d/versions", "POST", { content: EMAIL });
    expect(emailOnSms.status).toBe(422);
    const badSlug = await admin(tenant, "", "POST", { slug: "no spaces", channel: "sms" });
    expect(badSlug.status).toBe(422);
  });

  it("numbers versions 1, 2, 3 (also when saved concurrently) and never changes one", async () => {
    const tenant = await createTenant();
    await createSk(tenant, { slug: "t", channel: "sms", content: { body: "one" } });
    const made = await Promise.all(
      ["two", "three", "four"].map((b) => addVersion(tenant, "t", { content: { body: b } })),
    );
    expect(made.map((v) => v.version).sort()).toEqual([2, 3, 4]);
    const v1row = await adminOk<{ content: { body: string } }>(tenant, "/t/versions/1");
    expect(v1row.content).toEqual({ body: "one" });
    // The store itself refuses to change or delete a version.
    await expect(
      env.DB.prepare("UPDATE sk_template_versions SET content = ? WHERE tenant_id = ?")
        .bind('{"body":"x"}', tenant)
        .run(),
    ).rejects.toThrow(/immutable/);
    await expect(
      env.DB.prepare("DELETE FROM sk_template_versions WHERE tenant_id = ?").bind(tenant).run(),
    ).rejects.toThrow(/immutable/);
    expect((await adminOk<{ content: { body: string } }>(tenant, "/t/versions/1")).content.body).toBe("one");
    expect((await admin(tenant, "/t/versions/9")).status).toBe(404);
  });

  it("needs templates.write to create and templates.read to list; another tenant's id is 404", async () => {
    const a = await createTenant();
    const b = await createTenant();
    const reader = await createApiKey(a, { scopes: ["templates.read"] });
    const writer = await createApiKey(a, { scopes: ["templates.read", "templates.write"] });
    const body = { slug: "p", channel: "sms", content: { body: "x" } };
    expect((await admin(a, "", "POST", body, bearer(reader.key))).status).toBe(403);
    expect((await admin(a, "", "POST", body, bearer(writer.key))).status).toBe(201);
    expect((await admin(a, "", "GET", undefined, bearer(reader.key))).status).toBe(200);
    // Archive is SenderKit's delete: templates.delete.
    expect((await admin(a, "/p/archive", "POST", {}, bearer(writer.key))).status).toBe(403);
    // Tenant A's key on tenant B's path, and on its own path with B's slug.
    await createSk(b, { slug: "only-b", channel: "sms", content: { body: "x" } });
    expect((await admin(b, "", "GET", undefined, bearer(reader.key))).status).toBe(404);
    expect((await admin(b, "/only-b", "GET", undefined, bearer(reader.key))).status).toBe(404);
    expect((await admin(a, "/only-b", "GET", undefined, bearer(reader.key))).status).toBe(404);
  });
});

describe("publish, rollback, archive", () => {
  it("publish points at a version; rollback goes back to an earlier published one and creates none", async () => {
    const tenant = await createTenant();
    await createSk(tenant, { slug: "r", channel: "sms", content: { body: "v1" }, publish: true });
    await addVersion(tenant, "r", { content: { body: "v2" } });
    await addVersion(tenant, "r", { content: { body: "v3" } });
    let t = await publish(tenant, "r");
    expect(t).toMatchObject({ status: "active", current_version: 3, latest_version: 3 });
    // v2 was never published: not a rollback target.
    expect((await admin(tenant, "/r/rollback", "POST", { version: 2 })).status).toBe(409);
    t = await adminOk(tenant, "/r/rollback", "POST", {});
    expect(t).toMatchObject({ current_version: 1, latest_version: 3 });
    expect(t.versions).toHaveLength(3);
    expect((await admin(tenant, "/r/rollback", "POST", {})).status).toBe(409); // nothing older than 1
    expect((await admin(tenant, "/r/rollback", "POST", { version: 1 })).status).toBe(409); // already current
    expect((await admin(tenant, "/r/rollback", "POST", { version: 3 })).status).toBe(409); // not earlier
    t = await publish(tenant, "r", 3);
    t = await adminOk(tenant, "/r/rollback", "POST", { version: 1 });
    expect(t.current_version).toBe(1);
  });

  it("archive: no new versions or publish; unarchive returns to draft", async () => {
    const tenant = await createTenant();
    await createSk(tenant, { slug: "z", channel: "sms", content: { body: "v1" }, publish: true });
    let t = await adminOk(tenant, "/z/archive", "POST", {});
    expect(t.status).toBe("archived");
    expect((await admin(tenant, "/z/versions", "POST", { content: { body: "v2" } })).status).toBe(409);
    expect((await admin(tenant, "/z/publish", "POST", {})).status).toBe(409);
    t = await adminOk(tenant, "/z/unarchive", "POST", {});
    expect(t).toMatchObject({ status: "draft", current_version: null, latest_version: 1 });
    t = await publish(tenant, "z");
    expect(t.status).toBe("active");
  });
});

describe("resolveTemplateSend (the template branch of /v1/send)", () => {
  it("live: the published version or template_not_published; test: the latest; a pin: exactly that", async () => {
    const tenant = await createTenant();
    await createSk(tenant, { slug: "s", channel: "sms", content: { body: "one {{n}}" } });
    const send = (mode: "live" | "test", version?: number) =>
      resolveTemplateSend(db(), {
        tenantId: tenant,
        mode,
        slug: "S",
        vars: { n: 7 },
        ...(version ? { version } : {}),
      });
    expect(await send("live")).toMatchObject({ ok: false, status: 404, code: "template_not_published" });
    expect(await send("test")).toMatchObject({
      ok: true,
      version: { number: 1 },
      output: { body: "one 7" },
      pinnedVersion: null,
    });
    await publish(tenant, "s");
    await addVersion(tenant, "s", { content: { body: "two {{n}}" } });
    expect(await send("live")).toMatchObject({ ok: true, version: { number: 1 }, output: { body: "one 7" } });
    expect(await send("test")).toMatchObject({ ok: true, version: { number: 2 }, output: { body: "two 7" } });
    expect(await send("live", 2)).toMatchObject({ ok: true, version: { number: 2 }, pinnedVersion: 2 });
    expect(await send("test", 1)).toMatchObject({ ok: true, version: { number: 1 }, pinnedVersion: 1 });
    expect(await send("live", 9)).toMatchObject({ ok: false, status: 404, code: "template_not_found" });
    const r = await send("live");
    expect(r.ok && r.template).toEqual({ id: expect.any(String), slug: "s", channel: "sms" });
  });

  it("archived is 422 in both modes and with a pin; a channel that is not the template's is channel_mismatch", async () => {
    const tenant = await createTenant();
    await createSk(tenant, { slug: "a", channel: "push", content: { title: "t", body: "b" }, publish: true });
    const base = { tenantId: tenant, slug: "a", vars: {} };
    expect(await resolveTemplateSend(db(), { ...base, mode: "live", channel: "sms" })).toMatchObject({
      ok: false,
      status: 400,
      code: "channel_mismatch",
    });
    expect(await resolveTemplateSend(db(), { ...base, mode: "live", channel: "push" })).toMatchObject({
      ok: true,
    });
    await adminOk(tenant, "/a/archive", "POST", {});
    for (const mode of ["live", "test"] as const) {
      expect(await resolveTemplateSend(db(), { ...base, mode })).toMatchObject({
        ok: false,
        status: 422,
        code: "template_archived",
      });
      expect(await resolveTemplateSend(db(), { ...base, mode, version: 1 })).toMatchObject({
        status: 422,
        code: "template_archived",
      });
    }
  });

  it("another tenant's slug is template_not_found", async () => {
    const a = await createTenant();
    const b = await createTenant();
    await createSk(a, { slug: "mine", channel: "sms", content: { body: "x" }, publish: true });
    expect(
      await resolveTemplateSend(db(), { tenantId: b, mode: "test", slug: "mine", vars: {} }),
    ).toMatchObject({
      ok: false,
      status: 404,
      code: "template_not_found",
    });
  });
});

describe("/v1/templates", () => {
  it("the OpenAPI validator refuses what the contract does not allow", () => {
    expect(matches(200, { channel: "email", output: {}, missing: [] }, "renderTemplate")).toBe(true);
    expect(matches(200, { channel: "fax", output: {}, missing: [] }, "renderTemplate")).toBe(false);
    expect(matches(200, { channel: "sms", output: {} }, "renderTemplate")).toBe(false);
    expect(matches(200, { data: [{ slug: "a", status: "published" }] }, "listTemplates")).toBe(false);
    expect(matches(404, { error: { code: "template_not_found" } }, "getTemplate")).toBe(false);
  });

  it("lists, gets and renders, each response as the OpenAPI says", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    let r = await v1(key, "/templates");
    expectMatches(r.status, r.body, "listTemplates");
    expect(r.body).toEqual({ data: [] });

    await createSk(tenant, {
      slug: "welcome",
      channel: "email",
      description: "The welcome mail",
      content: EMAIL,
      variables: [{ name: "name", type: "string", required: true, description: "first name" }],
    });
    await createSk(tenant, {
      slug: "code",
      channel: "sms",
      content: { body: "Code {{code}}" },
      publish: true,
    });
    r = await v1(key, "/templates");
    expectMatches(r.status, r.body, "listTemplates");
    expect(r.body.data.map((t: { slug: string; status: string }) => [t.slug, t.status])).toEqual([
      ["code", "active"],
      ["welcome", "draft"],
    ]);

    r = await v1(key, "/templates/welcome");
    expectMatches(r.status, r.body, "getTemplate");
    expect(r.body).toMatchObject({
      slug: "welcome",
      channel: "email",
      description: "The welcome mail",
      status: "draft",
      currentVersion: null,
    });

    // Render renders the published version: none yet.
    r = await v1(key, "/templates/welcome/render", { method: "POST", body: { vars: {} } });
    expect(r.status).toBe(404);
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body.error.code).toBe("template_not_published");

    await publish(tenant, "welcome");
    r = await v1(key, "/templates/Welcome");
    expectMatches(r.status, r.body, "getTemplate");
    expect(r.body.currentVersion).toMatchObject({
      versionNumber: 1,
      variables: [{ name: "name", type: "string", required: true, description: "first name" }],
    });
    expect(Date.parse(r.body.currentVersion.publishedAt)).toBeGreaterThan(0);

    r = await v1(key, "/templates/welcome/render", {
      method: "POST",
      body: {
        vars: {
          name: "Ada <A>",
          raw: "<u>x</u>",
          items: [{ title: "Pen" }, { title: "Ink", shop: "Mine" }],
          shop: "Root",
        },
      },
    });
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body.channel).toBe("email");
    expect(r.body.output).toEqual({
      subject: "Hi Ada <A> & co",
      preheader: "For Ada <A> <3",
      html: "<p>Hello Ada &lt;A&gt;, <b><u>x</u></b> <u>x</u></p><p><i>Pen at Root</i><i>Ink at Mine</i></p>",
      text: expect.stringContaining("Hello Ada <A>, x x"),
    });
    expect(r.body.missing).toEqual([]);
  });

  it("reports missing variable paths, renders them as empty, and shows an inverted section", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "test");
    await createSk(tenant, {
      slug: "m",
      channel: "email",
      content: {
        subject: "{{user.name}}!",
        html: "<p>{{user.name}} {{user.plan.tier}}</p>{{^items}}<p>none</p>{{/items}}",
        text: "T {{missingInText}}",
      },
      publish: true,
    });
    const r = await v1(key, "/templates/m/render", { method: "POST", body: { vars: { user: {} } } });
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body.output).toEqual({ subject: "!", preheader: null, html: "<p> </p><p>none</p>", text: "T " });
    expect(r.body.missing).toEqual(["user.name", "user.plan.tier", "items", "missingInText"]);
  });

  it("renders sms, push and web-push fields, unescaped", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    await createSk(tenant, {
      slug: "sms",
      channel: "sms",
      content: { body: "Hi {{name}} <b>" },
      publish: true,
    });
    await createSk(tenant, {
      slug: "push",
      channel: "push",
      content: {
        title: "T {{name}}",
        body: "B & {{name}}",
        data: { id: "{{id}}", fixed: "x" },
        badge: 3,
        sound: "ding",
      },
      publish: true,
    });
    await createSk(tenant, {
      slug: "web",
      channel: "web-push",
      content: {
        title: "W {{name}}",
        body: "b",
        icon: "https://cdn.example.com/{{icon}}.png",
        clickUrl: "https://app.example.com/o/{{id}}?a=1&b=2",
      },
      publish: true,
    });
    const vars = { name: "Ada & <Bob>", id: 42, icon: "bell" };
    const render = (slug: string) => v1(key, `/templates/${slug}/render`, { method: "POST", body: { vars } });
    let r = await render("sms");
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body).toEqual({ channel: "sms", output: { body: "Hi Ada & <Bob> <b>" }, missing: [] });
    r = await render("push");
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body).toEqual({
      channel: "push",
      output: {
        title: "T Ada & <Bob>",
        body: "B & Ada & <Bob>",
        data: { id: "42", fixed: "x" },
        badge: 3,
        sound: "ding",
      },
      missing: [],
    });
    r = await render("web");
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body).toEqual({
      channel: "web-push",
      output: {
        title: "W Ada & <Bob>",
        body: "b",
        icon: "https://cdn.example.com/bell.png",
        clickUrl: "https://app.example.com/o/42?a=1&b=2",
        data: null,
        badge: null,
      },
      missing: [],
    });
  });

  it("a version pin on render; archived is 422; bad bodies are 400 invalid_request", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    await createSk(tenant, { slug: "v", channel: "sms", content: { body: "one" }, publish: true });
    await addVersion(tenant, "v", { content: { body: "two" } });
    let r = await v1(key, "/templates/v/render", { method: "POST" });
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body.output.body).toBe("one");
    r = await v1(key, "/templates/v/render", { method: "POST", body: { version: 2 } });
    expect(r.body.output.body).toBe("two");
    r = await v1(key, "/templates/v/render", { method: "POST", body: { version: 3 } });
    expect(r.status).toBe(404);
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body.error.code).toBe("template_not_found");

    r = await v1(key, "/templates/v/render", { method: "POST", raw: "{not json" });
    expect(r.status).toBe(400);
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body.error.code).toBe("invalid_request");
    r = await v1(key, "/templates/v/render", { method: "POST", body: { vars: [], extra: 1 } });
    expect(r.status).toBe(400);
    expectMatches(r.status, r.body, "renderTemplate");
    expect(r.body.error.issues.length).toBeGreaterThanOrEqual(2);

    await adminOk(tenant, "/v/archive", "POST", {});
    r = await v1(key, "/templates/v/render", { method: "POST", body: {} });
    expect(r.status).toBe(422);
    expect(r.body.error.code).toBe("template_archived");
    expectSchema(r.body, "Error");
    r = await v1(key, "/templates/v");
    expectMatches(r.status, r.body, "getTemplate");
    expect(r.body.status).toBe("archived");
  });

  it("another workspace's slug is 404 template_not_found, and its templates are not listed", async () => {
    const a = await createTenant();
    const b = await createTenant();
    await createSk(a, { slug: "secret", channel: "sms", content: { body: "A's {{x}}" }, publish: true });
    const keyB = await skKey(b, "live");
    let r = await v1(keyB, "/templates/secret");
    expect(r.status).toBe(404);
    expectMatches(r.status, r.body, "getTemplate");
    expect(r.body.error.code).toBe("template_not_found");
    r = await v1(keyB, "/templates/secret/render", { method: "POST", body: {} });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("template_not_found");
    expect(JSON.stringify(r.body)).not.toContain("A's");
    r = await v1(keyB, "/templates");
    expect(r.body).toEqual({ data: [] });
    r = await v1(null, "/templates");
    expect(r.status).toBe(401);
    expectMatches(r.status, r.body, "listTemplates");
  });
});
