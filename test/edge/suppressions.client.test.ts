/**
 * @sendgrid/client 8.1.6, SendGrid's own Node client, driving every suppression and ASM endpoint
 * on the Worker (docs/api/sendgrid.md#suppressions) with the requests its axios sends to
 * api.sendgrid.com (raw `@` in path segments, qs serialised by axios, JSON bodies on DELETE);
 * only the transport is pointed at the Worker (axios's fetch adapter with SELF.fetch).
 */
import { describe, expect, it } from "vitest";
import { createApiKey, createTenant } from "./helpers.ts";
import { clientCall, clientFailure, useKey } from "./sendgrid-client.ts";

async function keyed(): Promise<void> {
  const tenantId = await createTenant();
  const { key } = await createApiKey(tenantId, { scopes: ["suppressions.read", "suppressions.write"] });
  useKey(key);
}

describe("@sendgrid/client against /v3/suppression/*", () => {
  it.each(["bounces", "blocks", "invalid_emails", "spam_reports"])(
    "%s: POST, GET list with qs, GET by email, DELETE by email, DELETE emails, DELETE delete_all",
    async (list) => {
      await keyed();
      for (const email of ["one@example.com", "two@example.com", "three@example.org"])
        expect((await clientCall("POST", `/v3/suppression/${list}`, { email })).status).toBe(201);
      const page = await clientCall("GET", `/v3/suppression/${list}`, undefined, { limit: 2, offset: 0 });
      expect(page.status).toBe(200);
      expect(page.body).toHaveLength(2);
      // SendGrid's `%` wildcard inside the prefix, encoded by axios as %25.
      const filtered = await clientCall("GET", `/v3/suppression/${list}`, undefined, {
        email: "t%example.com",
      });
      expect(filtered.body.map((x: { email: string }) => x.email)).toEqual(["two@example.com"]);
      const one = await clientCall("GET", `/v3/suppression/${list}/one@example.com`);
      expect(one.body).toEqual([
        expect.objectContaining({ email: "one@example.com", created: expect.any(Number) }),
      ]);
      expect((await clientCall("DELETE", `/v3/suppression/${list}/one@example.com`)).status).toBe(204);
      expect((await clientFailure("GET", `/v3/suppression/${list}/one@example.com`)).code).toBe(404);
      expect(
        (await clientCall("DELETE", `/v3/suppression/${list}`, { emails: ["two@example.com"] })).status,
      ).toBe(204);
      expect(
        (await clientCall("GET", `/v3/suppression/${list}`)).body.map((x: { email: string }) => x.email),
      ).toEqual(["three@example.org"]);
      expect((await clientCall("DELETE", `/v3/suppression/${list}`, { delete_all: true })).status).toBe(204);
      expect((await clientCall("GET", `/v3/suppression/${list}`)).body).toEqual([]);
    },
  );

  it("unsubscribes are listed (and read by email) from the global list", async () => {
    await keyed();
    await clientCall("POST", "/v3/asm/suppressions/global", { recipient_emails: ["u@example.com"] });
    const all = await clientCall("GET", "/v3/suppression/unsubscribes", undefined, {
      start_time: 0,
      limit: 10,
    });
    expect(all.body).toEqual([{ email: "u@example.com", created: expect.any(Number) }]);
  });

  it("a 400 comes back as ResponseError with SendGrid's errors[]", async () => {
    await keyed();
    const err = await clientFailure("DELETE", "/v3/suppression/bounces", {
      delete_all: true,
      emails: ["a@b.co"],
    });
    expect(err.code).toBe(400);
    expect(err.response.body).toEqual({ errors: [{ field: null, message: expect.any(String), help: null }] });
  });
});

describe("@sendgrid/client against /v3/asm/*", () => {
  it("groups CRUD, group suppressions, search, all suppressions, by email, global", async () => {
    await keyed();
    const created = await clientCall("POST", "/v3/asm/groups", {
      name: "Product news",
      description: "Monthly",
      is_default: false,
    });
    expect(created.status).toBe(201);
    const id = created.body.id as number;
    expect(Number.isInteger(id)).toBe(true);
    expect((await clientCall("GET", "/v3/asm/groups")).body).toEqual([
      {
        id,
        name: "Product news",
        description: "Monthly",
        last_email_sent_at: null,
        is_default: false,
        unsubscribes: 0,
      },
    ]);
    expect((await clientCall("GET", "/v3/asm/groups", undefined, { id })).body).toHaveLength(1);
    expect((await clientCall("GET", `/v3/asm/groups/${id}`)).body.name).toBe("Product news");
    const patched = await clientCall("PATCH", `/v3/asm/groups/${id}`, { description: "Quarterly" });
    expect(patched.status).toBe(201);
    expect(patched.body).toMatchObject({ id, description: "Quarterly" });

    const added = await clientCall("POST", `/v3/asm/groups/${id}/suppressions`, {
      recipient_emails: ["a@example.com", "b@example.com"],
    });
    expect(added).toEqual({ status: 201, body: { recipient_emails: ["a@example.com", "b@example.com"] } });
    expect((await clientCall("GET", `/v3/asm/groups/${id}/suppressions`)).body.sort()).toEqual([
      "a@example.com",
      "b@example.com",
    ]);
    const found = await clientCall("POST", `/v3/asm/groups/${id}/suppressions/search`, {
      recipient_emails: ["b@example.com", "z@example.com"],
    });
    expect(found).toEqual({ status: 200, body: ["b@example.com"] });
    expect((await clientCall("DELETE", `/v3/asm/groups/${id}/suppressions/a@example.com`)).status).toBe(204);
    const everyGroup = await clientCall("GET", "/v3/asm/suppressions");
    expect(everyGroup.body).toEqual([
      { email: "b@example.com", group_id: id, group_name: "Product news", created_at: expect.any(Number) },
    ]);
    expect((await clientCall("GET", "/v3/asm/suppressions/b@example.com")).body).toEqual({
      suppressions: [
        { id, name: "Product news", description: "Quarterly", is_default: false, suppressed: true },
      ],
    });

    expect(
      (await clientCall("POST", "/v3/asm/suppressions/global", { recipient_emails: ["g@example.com"] }))
        .status,
    ).toBe(201);
    expect((await clientCall("GET", "/v3/asm/suppressions/global/g@example.com")).body).toEqual({
      recipient_email: "g@example.com",
    });
    expect((await clientCall("DELETE", "/v3/asm/suppressions/global/g@example.com")).status).toBe(204);
    expect(await clientCall("GET", "/v3/asm/suppressions/global/g@example.com")).toEqual({
      status: 200,
      body: {},
    });

    expect((await clientCall("DELETE", `/v3/asm/groups/${id}`)).status).toBe(204);
    expect((await clientFailure("GET", `/v3/asm/groups/${id}`)).code).toBe(404);
  });
});
