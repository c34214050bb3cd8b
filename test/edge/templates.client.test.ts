/**
 * @sendgrid/client 8.1.6, SendGrid's own Node client, managing templates on the Worker
 * (docs/api/sendgrid.md#templates): the requests are the ones its axios sends to api.sendgrid.com
 * (JSON content type on every call, an empty body on bodiless POSTs, qs serialised by axios); only
 * the transport is pointed at the Worker (axios's fetch adapter with SELF.fetch).
 */
import client from "@sendgrid/client";
import { describe, expect, it } from "vitest";
import { BASE } from "./helpers.ts";
import { type ClientError, useKey } from "./sendgrid-client.ts";
import { templatesTenant } from "./templates.helpers.ts";

describe("@sendgrid/client against /v3/templates", () => {
  it("creates a template and versions, activates, pages, deletes, and reads a 400 as ResponseError", async () => {
    const t = await templatesTenant();
    useKey(t.key);

    const [created, tpl] = await client.request({
      method: "POST",
      url: "/v3/templates",
      body: { name: "Receipt", generation: "dynamic" },
    });
    expect(created.statusCode).toBe(201);
    const template = tpl as { id: string; name: string; generation: string; versions: unknown[] };
    expect(template).toMatchObject({ name: "Receipt", generation: "dynamic", versions: [] });
    expect(template.id).toMatch(/^d-[0-9a-f]{32}$/);

    const [v1res, v1body] = await client.request({
      method: "POST",
      url: `/v3/templates/${template.id}/versions`,
      body: {
        template_id: template.id,
        name: "v1",
        subject: "Your receipt, {{name}}",
        html_content: "<p>Total: {{total}}</p>",
        editor: "code",
      },
    });
    expect(v1res.statusCode).toBe(201);
    const v1 = v1body as { id: string; active: number; plain_content: string };
    expect(v1.active).toBe(1);
    expect(v1.plain_content).toBe("Total: {{total}}");

    const [, v2body] = await client.request({
      method: "POST",
      url: `/v3/templates/${template.id}/versions`,
      body: { name: "v2", subject: "Receipt", html_content: "<p>{{total}} paid</p>" },
    });
    const v2 = v2body as { id: string; active: number };
    expect(v2.active).toBe(0);

    // Activate: a bodiless POST, which the client sends with Content-Type: application/json.
    const [act, actBody] = await client.request({
      method: "POST",
      url: `/v3/templates/${template.id}/versions/${v2.id}/activate`,
    });
    expect(act.statusCode).toBe(200);
    expect(actBody).toMatchObject({ id: v2.id, active: 1 });
    const [, got] = await client.request({ method: "GET", url: `/v3/templates/${template.id}` });
    expect(
      (got as { versions: { id: string; active: number }[] }).versions.map((v) => [v.id, v.active]),
    ).toEqual([
      [v1.id, 0],
      [v2.id, 1],
    ]);

    // Paging as the client's users write it.
    for (let i = 0; i < 3; i++) {
      await client.request({
        method: "POST",
        url: "/v3/templates",
        body: { name: `Extra ${i}`, generation: "dynamic" },
      });
    }
    const seen: string[] = [];
    const [page1, body1] = await client.request({
      method: "GET",
      url: "/v3/templates",
      qs: { generations: "dynamic", page_size: 3 },
    });
    expect(page1.statusCode).toBe(200);
    const p1 = body1 as { result: { id: string }[]; _metadata: { next?: string; count: number } };
    expect(p1.result).toHaveLength(3);
    expect(p1._metadata.count).toBe(4);
    seen.push(...p1.result.map((r) => r.id));
    const token = new URL(p1._metadata.next!).searchParams.get("page_token")!;
    const [, body2] = await client.request({
      method: "GET",
      url: "/v3/templates",
      qs: { generations: "dynamic", page_size: 3, page_token: token },
    });
    const p2 = body2 as { result: { id: string }[]; _metadata: { next?: string; prev?: string } };
    seen.push(...p2.result.map((r) => r.id));
    expect(p2._metadata.next).toBeUndefined();
    expect(p2._metadata.prev).toBeDefined();
    expect(new Set(seen).size).toBe(4);
    expect(seen).toContain(template.id);
    // The old call, without page_size: {templates}, legacy only.
    const [, old] = await client.request({ method: "GET", url: "/v3/templates" });
    expect(old).toEqual({ templates: [] });

    // A validation error: the client rejects with ResponseError carrying the code and the body.
    const bad = await client
      .request({
        method: "POST",
        url: `/v3/templates/${template.id}/versions`,
        body: { name: "broken", subject: "Hi", html_content: "{{#each items}}<li>{{this}}</li>" },
      })
      .then(
        () => null,
        (e: ClientError) => e,
      );
    expect(bad?.code).toBe(400);
    expect(bad?.message).toBe("Bad Request");
    expect(bad?.response.body).toEqual({
      errors: [
        {
          message:
            "Invalid template syntax in html_content at line 1, column 33: syntax error: unexpected end of template (a block is not closed?)",
          field: "html_content",
          help: null,
        },
      ],
    });

    // Delete: 204 with no body; then a 404 ResponseError.
    const [del, delBody] = await client.request({ method: "DELETE", url: `/v3/templates/${template.id}` });
    expect(del.statusCode).toBe(204);
    expect(delBody).toBe("");
    const gone = await client.request({ method: "GET", url: `/v3/templates/${template.id}` }).then(
      () => null,
      (e: ClientError) => e,
    );
    expect(gone?.code).toBe(404);
    expect(gone?.response.body).toEqual({
      errors: [{ message: "resource not found", field: null, help: null }],
    });
  });
});
