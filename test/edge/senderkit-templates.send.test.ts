/**
 * The template branch of POST /v1/send on the real app (docs/api/senderkit.md#templates): a test key
 * sends the latest version, a pin sends exactly that version, the message records the slug and the
 * pin, and the refusals (not found, not published, archived, channel mismatch, another workspace's
 * slug) come back in SenderKit's shape before anything is accepted. Responses validated against the
 * OpenAPI.
 */
import { describe, expect, it } from "vitest";
import { expectMatches } from "../helpers/openapi-edge.ts";
import { createTenant } from "./helpers.ts";
import { addVersion, adminOk, createSk, publish, skKey, v1 } from "./senderkit-templates.helpers.ts";

const send = (key: string, body: Record<string, unknown>) => v1(key, "/send", { method: "POST", body });

describe("POST /v1/send with a template", () => {
  it("test mode sends the latest version; a pin sends that one; the message records slug and pin", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "test");
    await createSk(tenant, {
      slug: "Welcome",
      channel: "email",
      content: { subject: "v1 {{name}}", html: "<p>one {{name}}</p>" },
      publish: true,
    });
    await addVersion(tenant, "welcome", { content: { subject: "v2 {{name}}", html: "<p>two {{name}}</p>" } });

    let r = await send(key, { template: "WELCOME", to: "ada@example.com", vars: { name: "Ada" } });
    expectMatches(r.status, r.body, "sendMessage");
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ status: "queued", livemode: false });
    let m = await v1(key, `/messages/${r.body.id}`);
    expectMatches(m.status, m.body, "getMessage");
    expect(m.body).toMatchObject({
      templateSlug: "welcome",
      pinnedVersion: null,
      channel: "email",
      interpolate: false,
    });

    r = await send(key, { template: "welcome", version: 1, to: "ada@example.com", vars: { name: "Ada" } });
    expect(r.status).toBe(202);
    m = await v1(key, `/messages/${r.body.id}`);
    expect(m.body).toMatchObject({ templateSlug: "welcome", pinnedVersion: 1 });
  });

  it("refusals: not found, not published (live), version pin missing, channel mismatch, archived, another workspace", async () => {
    const tenant = await createTenant();
    const other = await createTenant();
    const live = await skKey(tenant, "live");
    const test = await skKey(tenant, "test");
    const otherKey = await skKey(other, "test");
    await createSk(tenant, { slug: "draft-only", channel: "sms", content: { body: "Code {{code}}" } });

    const expectError = async (key: string, body: Record<string, unknown>, status: number, code: string) => {
      const r = await send(key, body);
      expect(r.status, JSON.stringify(r.body)).toBe(status);
      expectMatches(r.status, r.body, "sendMessage");
      expect(r.body.error.code).toBe(code);
      return r;
    };
    await expectError(live, { template: "nope", to: "+15551234567" }, 404, "template_not_found");
    await expectError(live, { template: "draft-only", to: "+15551234567" }, 404, "template_not_published");
    await expectError(
      test,
      { template: "draft-only", version: 2, to: "+15551234567" },
      404,
      "template_not_found",
    );
    await expectError(
      test,
      { template: "draft-only", channel: "email", to: "a@example.com" },
      400,
      "channel_mismatch",
    );
    const leak = await expectError(
      otherKey,
      { template: "draft-only", to: "+15551234567" },
      404,
      "template_not_found",
    );
    expect(JSON.stringify(leak.body)).not.toContain("Code");

    // The test key can send the draft, until it is archived.
    const ok = await send(test, { template: "draft-only", to: "+15551234567", vars: { code: "123" } });
    expect(ok.status, JSON.stringify(ok.body)).toBe(202);
    await publish(tenant, "draft-only");
    await adminOk(tenant, "/draft-only/archive", "POST", {});
    await expectError(live, { template: "draft-only", to: "+15551234567" }, 422, "template_archived");
    await expectError(
      test,
      { template: "draft-only", version: 1, to: "+15551234567" },
      422,
      "template_archived",
    );
  });
});
