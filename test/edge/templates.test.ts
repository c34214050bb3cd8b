/**
 * /v3/templates (edge/src/surfaces/sendgrid/templates.ts, docs/api/sendgrid.md#templates) through
 * the real Worker and D1: SendGrid's shapes and status codes, its list quirk and `_metadata`
 * paging, duplicates, errors in SendGrid's shape, scopes, and tenant isolation.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { call, operatorHeaders, uid } from "./helpers.ts";
import {
  api,
  DYNAMIC_ID,
  makeTemplate,
  makeVersion,
  NOT_FOUND,
  SENDGRID_TIME,
  templatesTenant,
  UUID,
} from "./templates.helpers.ts";

const err = (field: string | null, message: string) => ({ errors: [{ message, field, help: null }] });

describe("POST /v3/templates", () => {
  it("creates a dynamic template: d- + 32 hex, SendGrid's updated_at, no versions", async () => {
    const t = await templatesTenant();
    const r = await api(t.key, "POST", "/v3/templates", { name: "Welcome", generation: "dynamic" });
    expect(r.status, r.text).toBe(201);
    expect(r.body).toEqual({
      id: expect.stringMatching(DYNAMIC_ID),
      name: "Welcome",
      generation: "dynamic",
      updated_at: expect.stringMatching(SENDGRID_TIME),
      created_at: expect.stringMatching(SENDGRID_TIME),
      versions: [],
    });
    // updated_at is UTC now, to the second.
    const at = Date.parse(`${r.body.updated_at.replace(" ", "T")}Z`);
    expect(Math.abs(at - Date.now())).toBeLessThan(5000);
  });

  it("without generation creates a legacy template with a UUID id, as SendGrid does", async () => {
    const t = await templatesTenant();
    const r = await api(t.key, "POST", "/v3/templates", { name: "Old style" });
    expect(r.status, r.text).toBe(201);
    expect(r.body.generation).toBe("legacy");
    expect(r.body.id).toMatch(UUID);
  });

  it("refuses a body it cannot honour, every problem at once", async () => {
    const t = await templatesTenant();
    const cases: [unknown, unknown][] = [
      [{}, err("name", "name is required.")],
      [{ name: "  " }, err("name", "name may not be empty.")],
      [{ name: "x".repeat(101) }, err("name", "name must be at most 100 characters.")],
      [{ name: 7 }, err("name", "name must be a string.")],
      [
        { name: "ok", generation: "modern" },
        err("generation", "generation must be one of: legacy, dynamic."),
      ],
      [
        { generation: "x", colour: "red" },
        {
          errors: [
            { message: "colour is not a field of this request.", field: "colour", help: null },
            { message: "name is required.", field: "name", help: null },
            { message: "generation must be one of: legacy, dynamic.", field: "generation", help: null },
          ],
        },
      ],
      [[1, 2], err(null, "The request body must be a JSON object.")],
      ['{"name":', err(null, "Bad Request")],
    ];
    for (const [body, expected] of cases) {
      const r = await api(t.key, "POST", "/v3/templates", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body, JSON.stringify(body)).toEqual(expected);
    }
    // 100 characters is still a name (SendGrid's limit counts characters, not bytes).
    expect((await api(t.key, "POST", "/v3/templates", { name: "é".repeat(100) })).status).toBe(201);
  });

  it("answers invalid UTF-8 with 415 and an oversized body with 413", async () => {
    const t = await templatesTenant();
    const bad = await call("/v3/templates", {
      method: "POST",
      headers: { Authorization: `Bearer ${t.key}`, "Content-Type": "application/json" },
      body: new Uint8Array([0x7b, 0x22, 0x6e, 0xff, 0x22, 0x7d]),
    });
    expect(bad.status).toBe(415);
    expect(await bad.json()).toEqual(err(null, "Invalid UTF8 in request"));
    const big = await api(t.key, "POST", "/v3/templates", { name: "x", pad: "y".repeat(4 * 1_048_576) });
    expect(big.status).toBe(413);
    expect(big.body.errors[0].message).toMatch(/at most 4,194,304 bytes/);
  });

  it("keeps names unique within a tenant, not across tenants", async () => {
    const a = await templatesTenant();
    const b = await templatesTenant();
    expect((await api(a.key, "POST", "/v3/templates", { name: "Receipt" })).status).toBe(201);
    const again = await api(a.key, "POST", "/v3/templates", { name: "Receipt", generation: "dynamic" });
    expect(again.status).toBe(400);
    expect(again.body).toEqual(err("name", "A template with this name already exists."));
    expect((await api(b.key, "POST", "/v3/templates", { name: "Receipt" })).status).toBe(201);
  });

  it("stops at 300 templates per tenant", async () => {
    const t = await templatesTenant();
    const now = Date.now();
    const rows = Array.from({ length: 300 }, (_, i) =>
      env.DB.prepare(
        "INSERT INTO templates (id, tenant_id, name, generation, created_at, updated_at) VALUES (?, ?, ?, 'legacy', ?, ?)",
      ).bind(crypto.randomUUID(), t.tenantId, `bulk ${i}`, now, now),
    );
    await env.DB.batch(rows);
    const r = await api(t.key, "POST", "/v3/templates", { name: "one too many" });
    expect(r.status).toBe(400);
    expect(r.body).toEqual(err(null, "A tenant may have at most 300 templates; delete one first."));
  });
});

describe("GET, PATCH, DELETE /v3/templates/{id}", () => {
  it("reads the template with its versions in full, renames it, deletes it (204), then 404", async () => {
    const t = await templatesTenant();
    const tpl = await makeTemplate(t.key, "Order shipped");
    const v = await makeVersion(t.key, tpl.id, { name: "v1" });

    const got = await api(t.key, "GET", `/v3/templates/${tpl.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: tpl.id, name: "Order shipped", generation: "dynamic" });
    expect(got.body.versions).toEqual([v]);
    expect(got.body.versions[0].html_content).toBe("<p>Hello {{name}}</p>");

    const renamed = await api(t.key, "PATCH", `/v3/templates/${tpl.id}`, { name: "Order sent" });
    expect(renamed.status, renamed.text).toBe(200);
    expect(renamed.body).toMatchObject({ id: tpl.id, name: "Order sent", versions: [v] });
    expect((await api(t.key, "GET", `/v3/templates/${tpl.id}`)).body.name).toBe("Order sent");

    const del = await call(`/v3/templates/${tpl.id}`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${t.key}`, "Content-Type": "application/json" },
    });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe("");
    const gone = await api(t.key, "GET", `/v3/templates/${tpl.id}`);
    expect(gone.status).toBe(404);
    expect(gone.body).toEqual(NOT_FOUND);
    // The versions went with it.
    const left = await env.DB.prepare("SELECT count(*) AS n FROM template_versions WHERE template_id = ?")
      .bind(tpl.id)
      .first<{ n: number }>();
    expect(left!.n).toBe(0);
    expect((await api(t.key, "DELETE", `/v3/templates/${tpl.id}`)).status).toBe(404);
  });

  it("PATCH needs a name, refuses other fields and a name another template has", async () => {
    const t = await templatesTenant();
    const a = await makeTemplate(t.key, "A");
    await makeTemplate(t.key, "B");
    expect((await api(t.key, "PATCH", `/v3/templates/${a.id}`, {})).body).toEqual(
      err("name", "name is required."),
    );
    expect(
      (await api(t.key, "PATCH", `/v3/templates/${a.id}`, { name: "C", generation: "legacy" })).body,
    ).toEqual(err("generation", "generation is not a field of this request."));
    const clash = await api(t.key, "PATCH", `/v3/templates/${a.id}`, { name: "B" });
    expect(clash.status).toBe(400);
    expect(clash.body).toEqual(err("name", "A template with this name already exists."));
    // Its own name is not a clash.
    expect((await api(t.key, "PATCH", `/v3/templates/${a.id}`, { name: "A" })).status).toBe(200);
    expect((await api(t.key, "PATCH", `/v3/templates/d-${"0".repeat(32)}`, { name: "Z" })).body).toEqual(
      NOT_FOUND,
    );
  });
});

describe("POST /v3/templates/{id} (duplicate)", () => {
  it("copies the template and its versions under new ids, active version included", async () => {
    const t = await templatesTenant();
    const src = await makeTemplate(t.key, "Newsletter");
    const v1 = await makeVersion(t.key, src.id, { name: "one", test_data: '{"name":"Ann"}' });
    const v2 = await makeVersion(t.key, src.id, { name: "two", active: 1, editor: "design" });

    const dup = await api(t.key, "POST", `/v3/templates/${src.id}`);
    expect(dup.status, dup.text).toBe(201);
    expect(dup.body.id).toMatch(DYNAMIC_ID);
    expect(dup.body.id).not.toBe(src.id);
    expect(dup.body.name).toBe("Newsletter (copy)");
    expect(dup.body.generation).toBe("dynamic");
    const copies = dup.body.versions as Record<string, unknown>[];
    expect(copies.map((v) => [v.name, v.active, v.editor, v.test_data, v.template_id])).toEqual([
      ["one", 0, "code", '{"name":"Ann"}', dup.body.id],
      ["two", 1, "design", undefined, dup.body.id],
    ]);
    expect(copies.map((v) => v.id)).not.toContain(v1.id);
    expect(copies.map((v) => v.id)).not.toContain(v2.id);
    expect(copies.every((v) => UUID.test(v.id as string))).toBe(true);

    // The copy is a template of its own: reading it gives the same.
    expect((await api(t.key, "GET", `/v3/templates/${dup.body.id}`)).body).toEqual(dup.body);
    // A second copy gets the next free name; a given name is used as is.
    expect((await api(t.key, "POST", `/v3/templates/${src.id}`, {})).body.name).toBe("Newsletter (copy 2)");
    const named = await api(t.key, "POST", `/v3/templates/${src.id}`, { name: "Digest" });
    expect(named.status).toBe(201);
    expect(named.body.name).toBe("Digest");
    expect((await api(t.key, "POST", `/v3/templates/${src.id}`, { name: "Digest" })).body).toEqual(
      err("name", "A template with this name already exists."),
    );
    // The source is untouched.
    expect(
      (await api(t.key, "GET", `/v3/templates/${src.id}`)).body.versions.map((v: { id: string }) => v.id),
    ).toEqual([v1.id, v2.id]);
  });

  it("a legacy template's copy is legacy with a UUID", async () => {
    const t = await templatesTenant();
    const src = await makeTemplate(t.key, "Plain", "legacy");
    const dup = await api(t.key, "POST", `/v3/templates/${src.id}`, { name: "Plain 2" });
    expect(dup.status).toBe(201);
    expect(dup.body.generation).toBe("legacy");
    expect(dup.body.id).toMatch(UUID);
  });
});

describe("GET /v3/templates", () => {
  it("without page_size answers SendGrid's older shape, legacy templates only unless generations says", async () => {
    const t = await templatesTenant();
    const legacy = await makeTemplate(t.key, "L", "legacy");
    const dynamic = await makeTemplate(t.key, "D", "dynamic");
    await makeVersion(t.key, dynamic.id, { name: "v" });

    const plain = await api(t.key, "GET", "/v3/templates");
    expect(plain.status).toBe(200);
    expect(Object.keys(plain.body)).toEqual(["templates"]);
    expect(plain.body.templates.map((x: { id: string }) => x.id)).toEqual([legacy.id]);

    const dyn = await api(t.key, "GET", "/v3/templates?generations=dynamic");
    expect(dyn.body.templates.map((x: { id: string }) => x.id)).toEqual([dynamic.id]);
    // Lean versions: no content in a list.
    expect(dyn.body.templates[0].versions).toEqual([
      {
        id: expect.stringMatching(UUID),
        template_id: dynamic.id,
        active: 1,
        name: "v",
        subject: "Hello {{name}}",
        updated_at: expect.stringMatching(SENDGRID_TIME),
        generate_plain_content: true,
        editor: "code",
      },
    ]);
    for (const q of [
      "generations=legacy,dynamic",
      "generations=dynamic,legacy",
      "generations[]=legacy&generations[]=dynamic",
    ]) {
      const both = await api(t.key, "GET", `/v3/templates?${q}`);
      expect(
        both.body.templates.map((x: { id: string }) => x.id),
        q,
      ).toEqual([dynamic.id, legacy.id]);
    }
  });

  it("pages with page_size and page_token: _metadata self, next, prev and count", async () => {
    const t = await templatesTenant();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await makeTemplate(t.key, `T${i}`, "dynamic")).id);
    await makeTemplate(t.key, "legacy one", "legacy"); // not in the dynamic list, not counted
    // The documented order: newest first, ties (same millisecond) by id.
    const ordered = await env.DB.prepare(
      "SELECT id FROM templates WHERE tenant_id = ? AND generation = 'dynamic' ORDER BY created_at DESC, id DESC",
    )
      .bind(t.tenantId)
      .all<{ id: string }>();
    const newestFirst = ordered.results.map((r) => r.id);
    expect([...newestFirst].sort()).toEqual([...ids].sort());

    const p1 = await api(t.key, "GET", "/v3/templates?generations=dynamic&page_size=2");
    expect(p1.status, p1.text).toBe(200);
    expect(Object.keys(p1.body)).toEqual(["result", "_metadata"]);
    expect(p1.body.result.map((x: { id: string }) => x.id)).toEqual(newestFirst.slice(0, 2));
    expect(p1.body._metadata).toEqual({
      self: "https://edge.test/v3/templates?generations=dynamic&page_size=2",
      next: expect.stringMatching(
        /^https:\/\/edge\.test\/v3\/templates\?generations=dynamic&page_size=2&page_token=[\w-]+$/,
      ),
      count: 5,
    });

    const p2 = await api(t.key, "GET", p1.body._metadata.next.replace("https://edge.test", ""));
    expect(p2.body.result.map((x: { id: string }) => x.id)).toEqual(newestFirst.slice(2, 4));
    expect(p2.body._metadata.self).toBe(p1.body._metadata.next);
    expect(p2.body._metadata.prev).toBeDefined();
    expect(p2.body._metadata.next).toBeDefined();
    expect(p2.body._metadata.count).toBe(5);

    const p3 = await api(t.key, "GET", p2.body._metadata.next.replace("https://edge.test", ""));
    expect(p3.body.result.map((x: { id: string }) => x.id)).toEqual(newestFirst.slice(4));
    expect(p3.body._metadata.next).toBeUndefined();

    const back = await api(t.key, "GET", p3.body._metadata.prev.replace("https://edge.test", ""));
    expect(back.body.result.map((x: { id: string }) => x.id)).toEqual(newestFirst.slice(2, 4));
    const first = await api(t.key, "GET", back.body._metadata.prev.replace("https://edge.test", ""));
    expect(first.body.result.map((x: { id: string }) => x.id)).toEqual(newestFirst.slice(0, 2));
    expect(first.body._metadata.prev).toBeUndefined();

    // A template created while paging does not shift the pages after the cursor.
    await makeTemplate(t.key, "late", "dynamic");
    const again = await api(t.key, "GET", p1.body._metadata.next.replace("https://edge.test", ""));
    expect(again.body.result.map((x: { id: string }) => x.id)).toEqual(newestFirst.slice(2, 4));
    expect(again.body._metadata.count).toBe(6);
  });

  it("refuses bad paging parameters with 400, naming them", async () => {
    const t = await templatesTenant();
    const cases: [string, string, string][] = [
      ["page_size=0", "page_size", "page_size must be an integer from 1 to 200."],
      ["page_size=201", "page_size", "page_size must be an integer from 1 to 200."],
      ["page_size=abc", "page_size", "page_size must be an integer from 1 to 200."],
      ["page_size=10&page_token=nonsense", "page_token", "page_token is not a token this API gave out."],
      ["generations=modern", "generations", "generations must be legacy, dynamic or legacy,dynamic."],
      ["generations=", "generations", "generations must be legacy, dynamic or legacy,dynamic."],
      ["sort=name", "sort", "sort is not a parameter of this request."],
    ];
    for (const [q, field, message] of cases) {
      const r = await api(t.key, "GET", `/v3/templates?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body, q).toEqual(err(field, message));
    }
    const p = await api(t.key, "GET", "/v3/templates?page_size=1");
    expect(p.status).toBe(200);
    await makeTemplate(t.key, "a", "legacy");
    await makeTemplate(t.key, "b", "legacy");
    const token = new URL(
      (await api(t.key, "GET", "/v3/templates?page_size=1")).body._metadata.next,
    ).searchParams.get("page_token");
    const noSize = await api(t.key, "GET", `/v3/templates?page_token=${token}`);
    expect(noSize.body).toEqual(err("page_size", "page_size is required with page_token."));
    expect((await api(t.key, "GET", "/v3/templates?page_size=200")).status).toBe(200);
  });
});

describe("tenant isolation", () => {
  it("another tenant's template is 404 on every route, and absent from its lists", async () => {
    const owner = await templatesTenant();
    const other = await templatesTenant();
    const tpl = await makeTemplate(owner.key, "Private", "dynamic");
    const v = await makeVersion(owner.key, tpl.id, { name: "v1" });
    const v2 = await makeVersion(owner.key, tpl.id, { name: "v2" });

    const probes: [string, string, unknown?][] = [
      ["GET", `/v3/templates/${tpl.id}`],
      ["PATCH", `/v3/templates/${tpl.id}`, { name: "Mine now" }],
      ["POST", `/v3/templates/${tpl.id}`, { name: "Stolen" }],
      ["DELETE", `/v3/templates/${tpl.id}`],
      ["GET", `/v3/templates/${tpl.id}/versions`],
      ["POST", `/v3/templates/${tpl.id}/versions`, { name: "x", subject: "y" }],
      ["GET", `/v3/templates/${tpl.id}/versions/${v.id}`],
      ["PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, { name: "x" }],
      ["DELETE", `/v3/templates/${tpl.id}/versions/${v2.id}`],
      ["POST", `/v3/templates/${tpl.id}/versions/${v2.id}/activate`],
    ];
    for (const [method, path, body] of probes) {
      const r = await api(other.key, method, path, body);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.body, `${method} ${path}`).toEqual(NOT_FOUND);
    }
    for (const q of ["", "?generations=legacy,dynamic", "?generations=dynamic&page_size=200"]) {
      const list = await api(other.key, "GET", `/v3/templates${q}`);
      expect(JSON.stringify(list.body)).not.toContain(tpl.id);
    }
    // Nothing changed for the owner.
    const mine = await api(owner.key, "GET", `/v3/templates/${tpl.id}`);
    expect(mine.body.name).toBe("Private");
    expect(mine.body.versions.map((x: { name: string; active: number }) => [x.name, x.active])).toEqual([
      ["v1", 1],
      ["v2", 0],
    ]);
  });

  it("the operator token is not a credential here: templates belong to a tenant's keys", async () => {
    const r = await call("/v3/templates", { headers: operatorHeaders() });
    expect(r.status).toBe(401);
    expect(await r.json()).toEqual({ detail: "Invalid API key" });
  });
});

describe("scopes", () => {
  it("reads need templates.read, changes templates.write, deletes templates.delete", async () => {
    const full = await templatesTenant();
    const tpl = await makeTemplate(full.key, `S-${uid()}`);
    const v = await makeVersion(full.key, tpl.id, { name: "v1" });
    const v2 = await makeVersion(full.key, tpl.id, { name: "v2" });
    const { createApiKey } = await import("./helpers.ts");
    const keyWith = async (
      scopes: ("templates.read" | "templates.write" | "templates.delete" | "mail.send")[],
    ) => (await createApiKey(full.tenantId, { scopes })).key;
    const readOnly = await keyWith(["templates.read"]);
    const writeOnly = await keyWith(["templates.write"]);
    const mailOnly = await keyWith(["mail.send"]);

    const routes: [string, string, string, unknown?][] = [
      ["templates.read", "GET", "/v3/templates"],
      ["templates.read", "GET", `/v3/templates/${tpl.id}`],
      ["templates.read", "GET", `/v3/templates/${tpl.id}/versions`],
      ["templates.read", "GET", `/v3/templates/${tpl.id}/versions/${v.id}`],
      ["templates.write", "POST", "/v3/templates", { name: "new" }],
      ["templates.write", "PATCH", `/v3/templates/${tpl.id}`, { name: "renamed" }],
      ["templates.write", "POST", `/v3/templates/${tpl.id}`, { name: "dup" }],
      ["templates.write", "POST", `/v3/templates/${tpl.id}/versions`, { name: "v3", subject: "s" }],
      ["templates.write", "PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, { name: "v1b" }],
      ["templates.write", "POST", `/v3/templates/${tpl.id}/versions/${v2.id}/activate`],
      ["templates.delete", "DELETE", `/v3/templates/${tpl.id}/versions/${v2.id}`],
      ["templates.delete", "DELETE", `/v3/templates/${tpl.id}`],
    ];
    for (const [scope, method, path, body] of routes) {
      for (const key of [mailOnly, scope === "templates.read" ? writeOnly : readOnly]) {
        const r = await api(key, method, path, body);
        expect(r.status, `${method} ${path}`).toBe(403);
        expect(r.body, `${method} ${path}`).toEqual({ detail: `Missing required scope: ${scope}` });
      }
    }
    // Refused calls changed nothing.
    const after = await api(full.key, "GET", `/v3/templates/${tpl.id}`);
    expect(after.body.name).toBe(tpl.name);
    expect(after.body.versions.map((x: { name: string; active: number }) => [x.name, x.active])).toEqual([
      ["v1", 1],
      ["v2", 0],
    ]);
    expect((await api(readOnly, "GET", `/v3/templates/${tpl.id}`)).status).toBe(200);
    expect((await api(writeOnly, "POST", "/v3/templates", { name: "by writer" })).status).toBe(201);
  });

  it("is rate-limited per API key: X-RateLimit-* headers on every answer", async () => {
    const t = await templatesTenant();
    const r = await call("/v3/templates", { headers: { Authorization: `Bearer ${t.key}` } });
    expect(r.status).toBe(200);
    expect(r.headers.get("x-ratelimit-limit")).toBe("100");
    expect(Number(r.headers.get("x-ratelimit-remaining"))).toBeLessThan(100);
    expect(Number(r.headers.get("x-ratelimit-reset"))).toBeGreaterThan(Date.now() / 1000 - 5);
  });

  it("no credentials → 401", async () => {
    const r = await call("/v3/templates");
    expect(r.status).toBe(401);
    expect(await r.json()).toEqual({ detail: "Missing Authorization header" });
  });
});
