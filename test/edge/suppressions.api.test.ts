/**
 * /v3/suppression/* and /v3/asm/* through the Worker (docs/api/sendgrid.md#suppressions): SendGrid's
 * bodies and codes, the errors in its `{"errors":[…]}` shape, scopes, tenant isolation, paging and
 * filters, CSV import and export.
 */
import { describe, expect, it } from "vitest";
import { bearer, call, createApiKey, createTenant } from "./helpers.ts";

interface Tenant {
  id: string;
  key: string;
  readOnly: string;
  noScope: string;
}

async function tenant(): Promise<Tenant> {
  const id = await createTenant();
  const rw = await createApiKey(id, { scopes: ["suppressions.read", "suppressions.write"] });
  const ro = await createApiKey(id, { scopes: ["suppressions.read"] });
  const none = await createApiKey(id, { scopes: ["mail.send"] });
  return { id, key: rw.key, readOnly: ro.key, noScope: none.key };
}

async function req(
  key: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await call(path, {
    method,
    headers: bearer(key, headers),
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text === "" ? null : JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json as any, text, headers: res.headers };
}

const LISTS = ["bounces", "blocks", "invalid_emails", "spam_reports"] as const;

describe("/v3/suppression lists", () => {
  it.each(LISTS)("%s: add, get, list (bare array), delete one, delete many, delete_all", async (list) => {
    const t = await tenant();
    const base = `/v3/suppression/${list}`;
    for (const email of ["A@Example.com", "b@example.com", "c@example.com"]) {
      const r = await req(t.key, "POST", base, { email });
      expect(r.status, r.text).toBe(201);
      expect(r.body.email).toBe(email.toLowerCase());
      expect(typeof r.body.created).toBe("number");
    }
    const listed = await req(t.key, "GET", base);
    expect(listed.status).toBe(200);
    expect(Array.isArray(listed.body)).toBe(true);
    expect(listed.body.map((x: { email: string }) => x.email).sort()).toEqual([
      "a@example.com",
      "b@example.com",
      "c@example.com",
    ]);
    const keys = Object.keys(listed.body[0]).sort();
    const expected = {
      bounces: ["bounce_type", "created", "email", "reason", "status"],
      blocks: ["created", "email", "reason", "status"],
      invalid_emails: ["created", "email", "reason"],
      spam_reports: ["created", "email", "ip"],
    }[list];
    expect(keys).toEqual(expected);

    const one = await req(t.key, "GET", `${base}/a@example.com`);
    expect(one.status).toBe(200);
    expect(one.body).toHaveLength(1);
    expect(one.body[0].email).toBe("a@example.com");

    expect((await req(t.key, "DELETE", `${base}/a@example.com`)).status).toBe(204);
    expect((await req(t.key, "GET", `${base}/a@example.com`)).status).toBe(404);
    expect((await req(t.key, "DELETE", `${base}/a@example.com`)).status).toBe(404);

    expect((await req(t.key, "DELETE", base, { emails: ["b@example.com"] })).status).toBe(204);
    expect((await req(t.key, "GET", base)).body.map((x: { email: string }) => x.email)).toEqual([
      "c@example.com",
    ]);
    expect((await req(t.key, "DELETE", base, { delete_all: true })).status).toBe(204);
    expect((await req(t.key, "GET", base)).body).toEqual([]);
  });

  it("bounces: bounce_type and status are kept; ?delete_all=true works too", async () => {
    const t = await tenant();
    const r = await req(t.key, "POST", "/v3/suppression/bounces", {
      email: "x@example.com",
      bounce_type: "block",
      reason: "550 5.7.1 rejected",
      status: "5.7.1",
    });
    expect(r.body).toMatchObject({
      email: "x@example.com",
      bounce_type: "block",
      reason: "550 5.7.1 rejected",
      status: "5.7.1",
    });
    expect((await req(t.key, "DELETE", "/v3/suppression/bounces?delete_all=true")).status).toBe(204);
    expect((await req(t.key, "GET", "/v3/suppression/bounces")).body).toEqual([]);
  });

  it("limit, offset, email prefix and the time range", async () => {
    const t = await tenant();
    const emails = Array.from({ length: 7 }, (_, i) => `user${i}@example.com`);
    for (const email of emails) await req(t.key, "POST", "/v3/suppression/invalid_emails", { email });
    await req(t.key, "POST", "/v3/suppression/invalid_emails", { email: "other@example.org" });
    const page1 = await req(t.key, "GET", "/v3/suppression/invalid_emails?limit=3&offset=0&email=user");
    const page2 = await req(t.key, "GET", "/v3/suppression/invalid_emails?limit=3&offset=3&email=user");
    const page3 = await req(t.key, "GET", "/v3/suppression/invalid_emails?limit=3&offset=6&email=user");
    const seen = [...page1.body, ...page2.body, ...page3.body].map((x: { email: string }) => x.email);
    expect(page1.body).toHaveLength(3);
    expect(page3.body).toHaveLength(1);
    expect(seen.sort()).toEqual(emails);
    const now = Math.floor(Date.now() / 1000);
    expect(
      (
        await req(
          t.key,
          "GET",
          `/v3/suppression/invalid_emails?start_time=${now - 60}&end_time=${now + 60}&limit=500`,
        )
      ).body,
    ).toHaveLength(8);
    expect((await req(t.key, "GET", `/v3/suppression/invalid_emails?start_time=${now + 60}`)).body).toEqual(
      [],
    );
    expect((await req(t.key, "GET", `/v3/suppression/invalid_emails?end_time=${now - 3600}`)).body).toEqual(
      [],
    );
  });

  it.each([
    ["GET", "/v3/suppression/bounces?limit=0", undefined, 400, "limit"],
    ["GET", "/v3/suppression/bounces?limit=501", undefined, 400, "limit"],
    ["GET", "/v3/suppression/bounces?offset=-1", undefined, 400, "offset"],
    ["GET", "/v3/suppression/bounces?start_time=abc", undefined, 400, "start_time"],
    ["GET", "/v3/suppression/bounces?start_time=10&end_time=5", undefined, 400, "end_time"],
    ["GET", "/v3/suppression/bounces?colour=red", undefined, 400, "colour"],
    ["GET", "/v3/suppression/nonsense", undefined, 404, null],
    ["GET", "/v3/suppression/bounces/not-an-email", undefined, 400, "email"],
    ["POST", "/v3/suppression/bounces", { email: "nope" }, 400, "email"],
    ["POST", "/v3/suppression/bounces", { email: "a@b.co", bounce_type: "medium" }, 400, "bounce_type"],
    ["POST", "/v3/suppression/bounces", { email: "a@b.co", status: "five" }, 400, "status"],
    ["POST", "/v3/suppression/bounces", { email: "a@b.co", colour: "red" }, 400, "colour"],
    ["POST", "/v3/suppression/spam_reports", { email: "a@b.co", reason: "x" }, 400, "reason"],
    ["POST", "/v3/suppression/bounces", "{not json", 400, null],
    ["POST", "/v3/suppression/unsubscribes", { email: "a@b.co" }, 405, null],
    ["DELETE", "/v3/suppression/bounces", undefined, 400, null],
    ["DELETE", "/v3/suppression/bounces", {}, 400, null],
    ["DELETE", "/v3/suppression/bounces", { delete_all: true, emails: ["a@b.co"] }, 400, null],
    ["DELETE", "/v3/suppression/bounces", { delete_all: false }, 400, "delete_all"],
    ["DELETE", "/v3/suppression/bounces", { emails: [] }, 400, "emails"],
    ["DELETE", "/v3/suppression/bounces", { emails: ["bad"] }, 400, "emails.0"],
    ["DELETE", "/v3/suppression/bounces?delete_all=yes", undefined, 400, "delete_all"],
    ["DELETE", "/v3/suppression/unsubscribes/a@b.co", undefined, 405, null],
  ] as const)("%s %s %j → %i (field %s)", async (method, path, body, status, field) => {
    const t = await tenant();
    const r = await req(t.key, method, path, body);
    expect(r.status, r.text).toBe(status);
    if (status !== 404 || path.includes("nonsense")) {
      expect(Array.isArray(r.body.errors), r.text).toBe(true);
      expect(typeof r.body.errors[0].message).toBe("string");
      if (field !== null) expect(r.body.errors[0].field).toBe(field);
    }
  });

  it("scopes: a read key reads and cannot write; a key without suppressions scopes gets 403", async () => {
    const t = await tenant();
    expect((await req(t.readOnly, "GET", "/v3/suppression/bounces")).status).toBe(200);
    expect((await req(t.readOnly, "POST", "/v3/suppression/bounces", { email: "a@b.co" })).status).toBe(403);
    expect((await req(t.readOnly, "DELETE", "/v3/suppression/bounces", { delete_all: true })).status).toBe(
      403,
    );
    expect((await req(t.noScope, "GET", "/v3/suppression/bounces")).status).toBe(403);
    expect((await req(t.noScope, "GET", "/v3/asm/groups")).status).toBe(403);
    expect((await call("/v3/suppression/bounces")).status).toBe(401);
  });

  it("tenant isolation: another tenant's suppressions are invisible and untouchable", async () => {
    const a = await tenant();
    const b = await tenant();
    await req(a.key, "POST", "/v3/suppression/bounces", { email: "shared@example.com" });
    expect((await req(b.key, "GET", "/v3/suppression/bounces")).body).toEqual([]);
    expect((await req(b.key, "GET", "/v3/suppression/bounces/shared@example.com")).status).toBe(404);
    expect((await req(b.key, "DELETE", "/v3/suppression/bounces/shared@example.com")).status).toBe(404);
    await req(b.key, "DELETE", "/v3/suppression/bounces", { delete_all: true });
    expect((await req(a.key, "GET", "/v3/suppression/bounces")).body).toHaveLength(1);
  });
});

describe("CSV import and export", () => {
  it("imports email and reason, skips bad rows with their row numbers, exports the list", async () => {
    const t = await tenant();
    const csv = [
      "email,reason",
      "one@example.com,550 5.1.1 unknown",
      '"Two@Example.com","a reason, with a comma"',
      "not-an-email,whatever",
      "one@example.com,duplicate",
      '=cmd@example.com,"=HYPERLINK(""x"")"',
      "",
    ].join("\r\n");
    const r = await req(t.key, "POST", "/v3/suppression/bounces/import", csv, { "Content-Type": "text/csv" });
    expect(r.status, r.text).toBe(200);
    expect(r.body.imported).toBe(3);
    expect(r.body.skipped).toBe(2);
    expect(r.body.errors.map((e: { row: number }) => e.row)).toEqual([4, 5]);
    const two = await req(t.key, "GET", "/v3/suppression/bounces/two@example.com");
    expect(two.body[0]).toMatchObject({ reason: "a reason, with a comma", bounce_type: "hard" });

    const exp = await call("/v3/suppression/bounces/export", { headers: bearer(t.key) });
    expect(exp.status).toBe(200);
    expect(exp.headers.get("content-type")).toMatch(/^text\/csv/);
    const lines = (await exp.text()).trimEnd().split("\r\n");
    expect(lines[0]).toBe("email,created,reason,status,bounce_type");
    expect(lines).toHaveLength(4);
    expect(
      lines.some((l) => l.startsWith("two@example.com,") && l.includes('"a reason, with a comma"')),
    ).toBe(true);
    // A formula in a cell is defused.
    expect(lines.some((l) => l.includes(`"'=HYPERLINK(""x"")"`))).toBe(true);
  });

  it.each([
    ["text/plain", "email\na@b.co", 415],
    ["text/csv", "", 400],
    ["text/csv", "address\na@b.co", 400],
    ["text/csv", "email,colour\na@b.co,red", 400],
    ["text/csv", 'email\n"a@b.co', 400],
  ])("import with %s %j → %i", async (type, body, status) => {
    const t = await tenant();
    const r = await req(t.key, "POST", "/v3/suppression/bounces/import", body, { "Content-Type": type });
    expect(r.status, r.text).toBe(status);
    expect(Array.isArray(r.body.errors)).toBe(true);
  });
});

describe("/v3/asm groups", () => {
  it("create 201, list, get, PATCH 201, delete 204; names unique; one default", async () => {
    const t = await tenant();
    const c1 = await req(t.key, "POST", "/v3/asm/groups", {
      name: "Newsletter",
      description: "Weekly",
      is_default: true,
    });
    expect(c1.status, c1.text).toBe(201);
    expect(c1.body).toEqual({
      id: expect.any(Number),
      name: "Newsletter",
      description: "Weekly",
      is_default: true,
    });
    const c2 = await req(t.key, "POST", "/v3/asm/groups", {
      name: "Product",
      description: "Updates",
      is_default: true,
    });
    expect((await req(t.key, "POST", "/v3/asm/groups", { name: "Newsletter" })).status).toBe(400);

    const all = await req(t.key, "GET", "/v3/asm/groups");
    expect(all.body).toEqual([
      {
        id: c1.body.id,
        name: "Newsletter",
        description: "Weekly",
        last_email_sent_at: null,
        is_default: false,
        unsubscribes: 0,
      },
      {
        id: c2.body.id,
        name: "Product",
        description: "Updates",
        last_email_sent_at: null,
        is_default: true,
        unsubscribes: 0,
      },
    ]);
    expect(
      (await req(t.key, "GET", `/v3/asm/groups?id=${c2.body.id}`)).body.map((g: { id: number }) => g.id),
    ).toEqual([c2.body.id]);

    const p = await req(t.key, "PATCH", `/v3/asm/groups/${c1.body.id}`, { name: "Weekly news" });
    expect(p.status).toBe(201);
    expect(p.body).toMatchObject({ id: c1.body.id, name: "Weekly news", description: "Weekly" });
    expect((await req(t.key, "PATCH", `/v3/asm/groups/${c1.body.id}`, { name: "Product" })).status).toBe(400);
    const got = await req(t.key, "GET", `/v3/asm/groups/${c1.body.id}`);
    expect(got.body).toMatchObject({ name: "Weekly news", unsubscribes: 0 });

    expect((await req(t.key, "DELETE", `/v3/asm/groups/${c1.body.id}`)).status).toBe(204);
    expect((await req(t.key, "GET", `/v3/asm/groups/${c1.body.id}`)).status).toBe(404);
    expect((await req(t.key, "DELETE", `/v3/asm/groups/${c1.body.id}`)).status).toBe(404);
  });

  it("group suppressions: add 201 echo, list bare strings, search, delete, counts, all-groups views", async () => {
    const t = await tenant();
    const g = (await req(t.key, "POST", "/v3/asm/groups", { name: "Promos", description: "Offers" })).body;
    const h = (await req(t.key, "POST", "/v3/asm/groups", { name: "Digest", description: "" })).body;
    const add = await req(t.key, "POST", `/v3/asm/groups/${g.id}/suppressions`, {
      recipient_emails: ["One@example.com", "two@example.com"],
    });
    expect(add.status).toBe(201);
    expect(add.body).toEqual({ recipient_emails: ["one@example.com", "two@example.com"] });
    expect((await req(t.key, "GET", `/v3/asm/groups/${g.id}/suppressions`)).body.sort()).toEqual([
      "one@example.com",
      "two@example.com",
    ]);
    const search = await req(t.key, "POST", `/v3/asm/groups/${g.id}/suppressions/search`, {
      recipient_emails: ["two@example.com", "three@example.com"],
    });
    expect(search.status).toBe(200);
    expect(search.body).toEqual(["two@example.com"]);
    expect((await req(t.key, "GET", `/v3/asm/groups/${g.id}`)).body.unsubscribes).toBe(2);

    const all = await req(t.key, "GET", "/v3/asm/suppressions");
    expect(
      all.body
        .map((s: { email: string; group_id: number; group_name: string }) => [
          s.email,
          s.group_id,
          s.group_name,
        ])
        .sort(),
    ).toEqual([
      ["one@example.com", g.id, "Promos"],
      ["two@example.com", g.id, "Promos"],
    ]);
    expect(typeof all.body[0].created_at).toBe("number");
    const byEmail = await req(t.key, "GET", "/v3/asm/suppressions/one@example.com");
    expect(byEmail.body).toEqual({
      suppressions: [
        { id: g.id, name: "Promos", description: "Offers", is_default: false, suppressed: true },
        { id: h.id, name: "Digest", description: "", is_default: false, suppressed: false },
      ],
    });

    expect((await req(t.key, "DELETE", `/v3/asm/groups/${g.id}/suppressions/one@example.com`)).status).toBe(
      204,
    );
    expect((await req(t.key, "DELETE", `/v3/asm/groups/${g.id}/suppressions/one@example.com`)).status).toBe(
      404,
    );
    expect((await req(t.key, "GET", `/v3/asm/groups/${g.id}/suppressions`)).body).toEqual([
      "two@example.com",
    ]);
  });

  it("global unsubscribes: add 201, {} when absent, delete 204, listed under /v3/suppression/unsubscribes", async () => {
    const t = await tenant();
    expect((await req(t.key, "GET", "/v3/asm/suppressions/global/g@example.com")).body).toEqual({});
    const add = await req(t.key, "POST", "/v3/asm/suppressions/global", {
      recipient_emails: ["G@example.com", "h@example.com"],
    });
    expect(add.status).toBe(201);
    expect(add.body).toEqual({ recipient_emails: ["g@example.com", "h@example.com"] });
    const got = await req(t.key, "GET", "/v3/asm/suppressions/global/G@example.com");
    expect(got.status).toBe(200);
    expect(got.body).toEqual({ recipient_email: "g@example.com" });
    const listed = await req(t.key, "GET", "/v3/suppression/unsubscribes");
    expect(listed.body.map((x: { email: string }) => x.email).sort()).toEqual([
      "g@example.com",
      "h@example.com",
    ]);
    expect(Object.keys(listed.body[0]).sort()).toEqual(["created", "email"]);
    expect((await req(t.key, "DELETE", "/v3/asm/suppressions/global/g@example.com")).status).toBe(204);
    expect((await req(t.key, "GET", "/v3/asm/suppressions/global/g@example.com")).body).toEqual({});
    expect((await req(t.key, "DELETE", "/v3/asm/suppressions/global/g@example.com")).status).toBe(404);
  });

  it.each([
    ["POST", "/v3/asm/groups", {}, 400, "name"],
    ["POST", "/v3/asm/groups", { name: "x".repeat(31) }, 400, "name"],
    ["POST", "/v3/asm/groups", { name: "ok", description: "d".repeat(101) }, 400, "description"],
    ["POST", "/v3/asm/groups", { name: "ok", is_default: "yes" }, 400, "is_default"],
    ["POST", "/v3/asm/groups", { name: "ok", colour: "red" }, 400, "colour"],
    ["GET", "/v3/asm/groups?id=abc", undefined, 400, "id"],
    ["GET", "/v3/asm/groups/abc", undefined, 404, null],
    ["GET", "/v3/asm/groups/999999999", undefined, 404, null],
    ["POST", "/v3/asm/suppressions/global", {}, 400, "recipient_emails"],
    ["POST", "/v3/asm/suppressions/global", { recipient_emails: ["nope"] }, 400, "recipient_emails.0"],
    [
      "POST",
      "/v3/asm/suppressions/global",
      { recipient_emails: Array.from({ length: 1001 }, (_, i) => `a${i}@b.co`) },
      400,
      "recipient_emails",
    ],
    ["GET", "/v3/asm/suppressions/global/nope", undefined, 400, "email"],
  ] as const)("%s %s %j → %i", async (method, path, body, status, field) => {
    const t = await tenant();
    const r = await req(t.key, method, path, body);
    expect(r.status, r.text).toBe(status);
    expect(Array.isArray(r.body.errors), r.text).toBe(true);
    if (field !== null) expect(r.body.errors[0].field).toBe(field);
  });

  it("tenant isolation: another tenant's group id is a 404 on every route", async () => {
    const a = await tenant();
    const b = await tenant();
    const g = (await req(a.key, "POST", "/v3/asm/groups", { name: "Mine" })).body;
    await req(a.key, "POST", `/v3/asm/groups/${g.id}/suppressions`, { recipient_emails: ["x@example.com"] });
    const routes: [string, string, unknown][] = [
      ["GET", `/v3/asm/groups/${g.id}`, undefined],
      ["PATCH", `/v3/asm/groups/${g.id}`, { name: "Theirs" }],
      ["DELETE", `/v3/asm/groups/${g.id}`, undefined],
      ["GET", `/v3/asm/groups/${g.id}/suppressions`, undefined],
      ["POST", `/v3/asm/groups/${g.id}/suppressions`, { recipient_emails: ["y@example.com"] }],
      ["POST", `/v3/asm/groups/${g.id}/suppressions/search`, { recipient_emails: ["x@example.com"] }],
      ["DELETE", `/v3/asm/groups/${g.id}/suppressions/x@example.com`, undefined],
    ];
    for (const [method, path, body] of routes) {
      const r = await req(b.key, method, path, body);
      expect(r.status, `${method} ${path}: ${r.text}`).toBe(404);
      expect(r.body).toEqual({ errors: [{ field: null, message: "resource not found", help: null }] });
    }
    expect((await req(b.key, "GET", "/v3/asm/groups")).body).toEqual([]);
    expect((await req(b.key, "GET", "/v3/asm/suppressions")).body).toEqual([]);
    expect((await req(a.key, "GET", `/v3/asm/groups/${g.id}`)).body).toMatchObject({
      name: "Mine",
      unsubscribes: 1,
    });
  });
});
