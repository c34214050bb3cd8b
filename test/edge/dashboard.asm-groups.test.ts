/**
 * Unsubscribe groups and "Add an address" on the dashboard's suppressions pages
 * (docs/dashboard.md#pages), in workerd: each change made through a page is read back through the
 * API (`/v3/asm/groups…`, `/v3/asm/suppressions/global/…`, `/v3/suppression/…`); the add textarea
 * reports bad lines by number; delete needs its confirmation; a suppressions.read session sees no
 * write form and is refused every write; CSRF and Origin refusals change nothing; another tenant's
 * session gets 404 on a group's every route and leaves it as it was.
 */
import { describe, expect, it } from "vitest";
import { call, createApiKey, createTenant, uid } from "./helpers.ts";
import { Browser, createLogin, createRole } from "./dashboard.helpers.ts";

async function tenantWithKey() {
  const tenantId = await createTenant();
  const key = await createApiKey(tenantId, { scopes: ["suppressions.read", "suppressions.write"] });
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await call(path, {
      method,
      headers: { Authorization: `Bearer ${key.key}`, "Content-Type": "application/json" },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as unknown) : undefined };
  };
  return { tenantId, api };
}

interface GroupView {
  id: number;
  name: string;
  description: string;
  is_default: boolean;
  unsubscribes: number;
}

const groupIdFrom = (location: string | null) =>
  Number(/\/app\/suppressions\/groups\/(\d+)$/.exec(location ?? "")?.[1]);

describe("dashboard: unsubscribe groups", () => {
  it("create, edit and the default flag as the API answers them; the API's 400s are shown", async () => {
    const t = await tenantWithKey();
    const m = uid().slice(0, 8);
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const empty = await b.get("/app/suppressions/groups");
    expect(empty.status).toBe(200);
    expect(empty.text).toContain("No unsubscribe groups yet.");
    expect(empty.text).toContain('action="/app/suppressions/groups"');
    // The suppressions page links to the groups.
    expect((await b.get("/app/suppressions")).text).toContain('href="/app/suppressions/groups"');

    const first = await b.post("/app/suppressions/groups", { name: `News ${m}`, description: `Weekly ${m}` });
    expect(first.status, first.text).toBe(303);
    const firstId = groupIdFrom(first.headers.get("location"));
    const second = await b.post("/app/suppressions/groups", {
      name: `Offers ${m}`,
      description: "",
      is_default: "true",
    });
    expect(second.status, second.text).toBe(303);
    const secondId = groupIdFrom(second.headers.get("location"));
    const groups = (await t.api("GET", "/v3/asm/groups")).json as GroupView[];
    expect(groups.map((g) => [g.id, g.name, g.description, g.is_default])).toEqual([
      [firstId, `News ${m}`, `Weekly ${m}`, false],
      [secondId, `Offers ${m}`, "", true],
    ]);

    // Edit: the first becomes the default, which clears the flag on the second (as the API's PATCH).
    await b.get(`/app/suppressions/groups/${firstId}`);
    const edited = await b.post(`/app/suppressions/groups/${firstId}/edit`, {
      name: `Newsletter ${m}`,
      description: `Monthly ${m}`,
      is_default: "true",
    });
    expect(edited.status, edited.text).toBe(303);
    expect(edited.headers.get("location")).toBe(`/app/suppressions/groups/${firstId}`);
    expect((await t.api("GET", `/v3/asm/groups/${firstId}`)).json).toMatchObject({
      name: `Newsletter ${m}`,
      description: `Monthly ${m}`,
      is_default: true,
    });
    expect((await t.api("GET", `/v3/asm/groups/${secondId}`)).json).toMatchObject({ is_default: false });
    // An unticked checkbox sends nothing: the default goes off.
    expect(
      (await b.post(`/app/suppressions/groups/${firstId}/edit`, { name: `Newsletter ${m}`, description: "" }))
        .status,
    ).toBe(303);
    expect((await t.api("GET", `/v3/asm/groups/${firstId}`)).json).toMatchObject({
      description: "",
      is_default: false,
    });

    // The API's own refusals, with its reasons on the page; nothing changes.
    const taken = await b.post("/app/suppressions/groups", { name: `Offers ${m}` });
    expect(taken.status).toBe(400);
    expect(taken.text).toContain("Another group with this name already exists.");
    const renameTaken = await b.post(`/app/suppressions/groups/${firstId}/edit`, { name: `Offers ${m}` });
    expect(renameTaken.status).toBe(400);
    expect(renameTaken.text).toContain("Another group with this name already exists.");
    const long = await b.post("/app/suppressions/groups", { name: "x".repeat(31) });
    expect(long.status).toBe(400);
    expect(long.text).toContain("name may be at most 30 characters.");
    expect((await b.post("/app/suppressions/groups", { name: "" })).text).toContain(
      "name is required and must be a non-empty string.",
    );
    expect((await b.post("/app/suppressions/groups", { name: `Other ${m}`, color: "red" })).status).toBe(400);
    expect((await b.post("/app/suppressions/groups", { name: `Other ${m}`, is_default: "yes" })).status).toBe(
      400,
    );
    expect(((await t.api("GET", "/v3/asm/groups")).json as GroupView[]).map((g) => g.name)).toEqual([
      `Newsletter ${m}`,
      `Offers ${m}`,
    ]);

    // The list shows each group with its id, flag and count, as GET /v3/asm/groups.
    expect(
      (
        await t.api("POST", `/v3/asm/groups/${secondId}/suppressions`, {
          recipient_emails: [`a-${m}@example.org`, `b-${m}@example.org`],
        })
      ).status,
    ).toBe(201);
    const list = await b.get("/app/suppressions/groups");
    const rows = [
      ...list.text.matchAll(
        /<tr><td>(\d+)<\/td><td><a href="[^"]+">([^<]+)<\/a><\/td><td>([^<]*)<\/td><td>(yes|no)<\/td><td class="num">(\d+)<\/td><\/tr>/g,
      ),
    ].map((r) => [Number(r[1]), r[2], r[3], r[4], Number(r[5])]);
    expect(rows).toEqual([
      [firstId, `Newsletter ${m}`, "", "no", 0],
      [secondId, `Offers ${m}`, "", "no", 2],
    ]);
  });

  it("a group's addresses: add lines with per-line errors, search by prefix, pages of 100, remove one", async () => {
    const t = await tenantWithKey();
    const m = uid().slice(0, 8);
    const id = ((await t.api("POST", "/v3/asm/groups", { name: `G ${m}` })).json as GroupView).id;
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const page = await b.get(`/app/suppressions/groups/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain(`action="/app/suppressions/groups/${id}/add"`);
    expect(page.text).toContain("no addresses");

    const lines = [
      `alice-${m}@example.org`,
      "",
      `not-an-address-${m}`,
      `Bob-${m}@Example.org`,
      `alice-${m}@EXAMPLE.org`,
      `carol-${m}@example.org,extra`,
      `dave_${m}@example.org`,
    ].join("\r\n");
    const added = await b.post(`/app/suppressions/groups/${id}/add`, { emails: lines });
    expect(added.status, added.text).toBe(200);
    expect(added.text).toContain(`3 addresses unsubscribed from G ${m}; 3 lines not added`);
    const errors = [
      ...added.text.matchAll(/<tr><td>(\d+)<\/td><td>([^<]*)<\/td><td>([^<]*)<\/td><\/tr>/g),
    ].map((r) => [Number(r[1]), r[2], r[3]]);
    expect(errors).toEqual([
      [3, `not-an-address-${m}`, "not a valid email address"],
      [5, `alice-${m}@EXAMPLE.org`, "the address is in the list already"],
      [6, `carol-${m}@example.org`, "expected 1 field, got 2"],
    ]);
    const inGroup = async () =>
      ((await t.api("GET", `/v3/asm/groups/${id}/suppressions`)).json as string[]).sort();
    expect(await inGroup()).toEqual(
      [`alice-${m}@example.org`, `bob-${m}@example.org`, `dave_${m}@example.org`].sort(),
    );
    // Nothing but bad lines: nothing added, the errors listed.
    const bad = await b.post(`/app/suppressions/groups/${id}/add`, { emails: "nope" });
    expect(bad.status).toBe(200);
    expect(bad.text).toContain("0 addresses unsubscribed");
    expect((await b.post(`/app/suppressions/groups/${id}/add`, { emails: " \n " })).status).toBe(400);
    expect(
      (await b.post(`/app/suppressions/groups/${id}/add`, { emails: "x@example.org", n: "1" })).status,
    ).toBe(400);

    // The prefix search, `_` literal as in the lists' search.
    const bobOnly = await b.get(`/app/suppressions/groups/${id}?email=BOB-${m}`);
    expect(bobOnly.text).toContain(`bob-${m}@example.org`);
    expect(bobOnly.text).not.toContain(`alice-${m}@example.org`);
    const underscore = await b.get(`/app/suppressions/groups/${id}?email=dave_`);
    expect(underscore.text).toContain(`dave_${m}@example.org`);
    expect((await b.get(`/app/suppressions/groups/${id}?email=dave%25${m}`)).text).toContain(
      `dave_${m}@example.org`,
    );
    expect((await b.get(`/app/suppressions/groups/${id}?email=davex`)).text).toContain("no addresses");
    expect((await b.get(`/app/suppressions/groups/${id}?sort=x`)).status).toBe(400);

    // Remove one: the API no longer finds it; twice is a 404.
    const removed = await b.post(`/app/suppressions/groups/${id}/remove`, { email: `bob-${m}@example.org` });
    expect(removed.status).toBe(303);
    expect(
      (
        await t.api("POST", `/v3/asm/groups/${id}/suppressions/search`, {
          recipient_emails: [`bob-${m}@example.org`],
        })
      ).json,
    ).toEqual([]);
    expect(
      (await b.post(`/app/suppressions/groups/${id}/remove`, { email: `bob-${m}@example.org` })).status,
    ).toBe(404);

    // 230 addresses through the textarea: three pages, each address on exactly one.
    const many = Array.from({ length: 230 }, (_, i) => `p${String(i).padStart(3, "0")}-${m}@example.org`);
    expect((await b.post(`/app/suppressions/groups/${id}/add`, { emails: many.join("\n") })).text).toContain(
      "230 addresses unsubscribed",
    );
    const seen: string[] = [];
    let href: string | undefined = `/app/suppressions/groups/${id}?email=p`;
    let pages = 0;
    while (href) {
      const p = await b.get(href.replaceAll("&amp;", "&"));
      expect(p.status).toBe(200);
      seen.push(...[...p.text.matchAll(/<td>(p\d{3}-[^<]+)<\/td>/g)].map((r) => r[1]!));
      href = /<a rel="next" href="([^"]+)"/.exec(p.text)?.[1];
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual(many);
    expect((await t.api("GET", `/v3/asm/groups/${id}`)).json).toMatchObject({ unsubscribes: 232 });
  });

  it("delete needs its confirmation; then the API has no such group", async () => {
    const t = await tenantWithKey();
    const m = uid().slice(0, 8);
    const id = ((await t.api("POST", "/v3/asm/groups", { name: `Del ${m}` })).json as GroupView).id;
    await t.api("POST", `/v3/asm/groups/${id}/suppressions`, { recipient_emails: [`x-${m}@example.org`] });
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    expect((await b.get(`/app/suppressions/groups/${id}`)).text).toContain(
      `href="/app/suppressions/groups/${id}/delete"`,
    );
    const confirm = await b.get(`/app/suppressions/groups/${id}/delete`);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain("its 1 unsubscribed address:");
    expect(confirm.text).toMatch(/<input type="checkbox" name="confirm" value="yes" required/);
    // Without the ticked confirmation (or with another value) nothing is deleted.
    for (const fields of [{}, { confirm: "no" }, { confirm: "" }] as Record<string, string>[]) {
      const res = await b.post(`/app/suppressions/groups/${id}/delete`, fields);
      expect(res.status, JSON.stringify(fields)).toBe(400);
      expect(res.text).toContain("nothing was deleted");
    }
    expect((await t.api("GET", `/v3/asm/groups/${id}`)).status).toBe(200);
    const deleted = await b.post(`/app/suppressions/groups/${id}/delete`, { confirm: "yes" });
    expect(deleted.status).toBe(303);
    expect(deleted.headers.get("location")).toBe("/app/suppressions/groups");
    expect((await t.api("GET", `/v3/asm/groups/${id}`)).status).toBe(404);
    expect((await t.api("GET", `/v3/asm/suppressions/x-${m}@example.org`)).json).toEqual({
      suppressions: [],
    });
    expect((await b.get(`/app/suppressions/groups/${id}`)).status).toBe(404);
    expect((await b.post(`/app/suppressions/groups/${id}/delete`, { confirm: "yes" })).status).toBe(404);
  });

  it("suppressions.read sees no write form and is refused every write; CSRF and Origin refusals change nothing", async () => {
    const t = await tenantWithKey();
    const m = uid().slice(0, 8);
    const id = ((await t.api("POST", "/v3/asm/groups", { name: `RO ${m}` })).json as GroupView).id;
    await t.api("POST", `/v3/asm/groups/${id}/suppressions`, { recipient_emails: [`keep-${m}@example.org`] });
    await t.api("POST", "/v3/asm/suppressions/global", { recipient_emails: [`glob-${m}@example.org`] });
    const viewer = await Browser.signIn(
      (await createLogin(t.tenantId, [await createRole(t.tenantId, ["suppressions.read"])])).email,
    );
    const list = await viewer.get("/app/suppressions/groups");
    expect(list.status).toBe(200);
    expect(list.text).toContain(`RO ${m}`);
    expect(list.text).not.toContain('id="create-group"');
    const page = await viewer.get(`/app/suppressions/groups/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain(`keep-${m}@example.org`);
    for (const s of ["/edit", "/add", "/remove", "/delete", "<textarea"]) expect(page.text).not.toContain(s);
    const lists = await viewer.get("/app/suppressions?list=unsubscribes");
    expect(lists.text).toContain(`glob-${m}@example.org`);
    expect(lists.text).not.toContain('id="add-address"');
    expect(lists.text).not.toContain("/remove");
    expect((await viewer.get(`/app/suppressions/groups/${id}/delete`)).status).toBe(403);
    const writes: [string, Record<string, string>][] = [
      ["/app/suppressions/groups", { name: `New ${m}` }],
      [`/app/suppressions/groups/${id}/edit`, { name: `Renamed ${m}` }],
      [`/app/suppressions/groups/${id}/delete`, { confirm: "yes" }],
      [`/app/suppressions/groups/${id}/add`, { emails: `more-${m}@example.org` }],
      [`/app/suppressions/groups/${id}/remove`, { email: `keep-${m}@example.org` }],
      ["/app/suppressions/unsubscribes/add", { email: `more-${m}@example.org` }],
      ["/app/suppressions/unsubscribes/remove", { email: `glob-${m}@example.org` }],
      ["/app/suppressions/bounces/add", { email: `more-${m}@example.org` }],
    ];
    for (const [path, fields] of writes) expect((await viewer.post(path, fields)).status, path).toBe(403);

    // An admin's session without the form's token, with another's, or from another origin: 403.
    const admin = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    for (const opts of [
      { csrf: null },
      { csrf: "0".repeat(64) },
      { origin: "https://evil.example" },
      { origin: null },
    ])
      for (const [path, fields] of writes)
        expect((await admin.post(path, fields, opts)).status, `${path} ${JSON.stringify(opts)}`).toBe(403);

    // Nothing changed.
    expect(
      ((await t.api("GET", "/v3/asm/groups")).json as GroupView[]).map((g) => [g.name, g.unsubscribes]),
    ).toEqual([[`RO ${m}`, 1]]);
    expect((await t.api("GET", `/v3/asm/suppressions/global/more-${m}@example.org`)).json).toEqual({});
    expect((await t.api("GET", `/v3/asm/suppressions/global/glob-${m}@example.org`)).json).toEqual({
      recipient_email: `glob-${m}@example.org`,
    });
    expect((await t.api("GET", `/v3/suppression/bounces/more-${m}@example.org`)).status).toBe(404);
  });

  it("another tenant's session gets 404 on every route of a group and leaves it as it was", async () => {
    const a = await tenantWithKey();
    const m = uid().slice(0, 8);
    const id = (
      (await a.api("POST", "/v3/asm/groups", { name: `Mine ${m}`, description: `secret ${m}` }))
        .json as GroupView
    ).id;
    await a.api("POST", `/v3/asm/groups/${id}/suppressions`, { recipient_emails: [`only-${m}@example.org`] });
    const other = await tenantWithKey();
    const b = await Browser.signIn((await createLogin(other.tenantId, ["admin"])).email);
    const mine = await b.get("/app/suppressions/groups");
    expect(mine.status).toBe(200);
    expect(mine.text).not.toContain(m);
    for (const path of [`/app/suppressions/groups/${id}`, `/app/suppressions/groups/${id}/delete`]) {
      const res = await b.get(path);
      expect(res.status, path).toBe(404);
      expect(res.text).not.toContain(m);
    }
    for (const [path, fields] of [
      [`/app/suppressions/groups/${id}/edit`, { name: `Stolen ${m}` }],
      [`/app/suppressions/groups/${id}/add`, { emails: `planted-${m}@example.org` }],
      [`/app/suppressions/groups/${id}/remove`, { email: `only-${m}@example.org` }],
      [`/app/suppressions/groups/${id}/delete`, { confirm: "yes" }],
    ] as [string, Record<string, string>][]) {
      const res = await b.post(path, fields);
      expect(res.status, path).toBe(404);
      expect(res.text).not.toContain(`Mine ${m}`);
    }
    expect((await a.api("GET", `/v3/asm/groups/${id}`)).json).toMatchObject({
      name: `Mine ${m}`,
      description: `secret ${m}`,
      unsubscribes: 1,
    });
    expect((await a.api("GET", `/v3/asm/groups/${id}/suppressions`)).json).toEqual([`only-${m}@example.org`]);
    expect((await other.api("GET", "/v3/asm/groups")).json).toEqual([]);
  });
});

describe("dashboard: Add an address to a suppression list", () => {
  it("global unsubscribes through the ASM call; the other lists with the API's fields and checks", async () => {
    const t = await tenantWithKey();
    const m = uid().slice(0, 8);
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const page = await b.get("/app/suppressions?list=unsubscribes");
    expect(page.text).toContain('action="/app/suppressions/unsubscribes/add"');

    const added = await b.post("/app/suppressions/unsubscribes/add", { email: ` Gone-${m}@Example.org ` });
    expect(added.status, added.text).toBe(303);
    expect((await t.api("GET", `/v3/asm/suppressions/global/gone-${m}@example.org`)).json).toEqual({
      recipient_email: `gone-${m}@example.org`,
    });
    const listed = await b.get(added.headers.get("location")!);
    expect(listed.text).toContain(`gone-${m}@example.org`);
    // Global unsubscribes can be removed too (DELETE /v3/asm/suppressions/global/{email}'s call).
    expect(listed.text).toContain('action="/app/suppressions/unsubscribes/remove"');
    expect(
      (await b.post("/app/suppressions/unsubscribes/remove", { email: `gone-${m}@example.org` })).status,
    ).toBe(303);
    expect((await t.api("GET", `/v3/asm/suppressions/global/gone-${m}@example.org`)).json).toEqual({});
    const notAddress = await b.post("/app/suppressions/unsubscribes/add", { email: "nope" });
    expect(notAddress.status).toBe(400);
    expect(notAddress.text).toContain("Must be a valid email address.");
    // The global list takes only an address (as POST /v3/asm/suppressions/global).
    expect(
      (await b.post("/app/suppressions/unsubscribes/add", { email: `x-${m}@example.org`, reason: "r" }))
        .status,
    ).toBe(400);

    // Bounces: the form has the API's fields; what is stored is what the API shows.
    const bounces = await b.get("/app/suppressions?list=bounces");
    for (const f of ["email", "bounce_type", "reason", "status"])
      expect(bounces.text).toContain(`name="${f}"`);
    expect(
      (
        await b.post("/app/suppressions/bounces/add", {
          email: `b-${m}@example.org`,
          bounce_type: "soft",
          reason: `mailbox full ${m}`,
          status: "4.2.2",
        })
      ).status,
    ).toBe(303);
    const [row] = (await t.api("GET", `/v3/suppression/bounces/b-${m}@example.org`)).json as Record<
      string,
      unknown
    >[];
    expect(row).toMatchObject({
      email: `b-${m}@example.org`,
      bounce_type: "soft",
      reason: `mailbox full ${m}`,
      status: "4.2.2",
    });
    // Empty optional fields are not sent: the API's defaults apply.
    expect(
      (await b.post("/app/suppressions/blocks/add", { email: `c-${m}@example.org`, reason: "", status: "" }))
        .status,
    ).toBe(303);
    expect((await t.api("GET", `/v3/suppression/blocks/c-${m}@example.org`)).json).toMatchObject([
      { email: `c-${m}@example.org`, reason: "", status: "" },
    ]);
    // The API's refusals, its reason shown.
    const badStatus = await b.post("/app/suppressions/bounces/add", {
      email: `d-${m}@example.org`,
      status: "550",
    });
    expect(badStatus.status).toBe(400);
    expect(badStatus.text).toContain("status must be an enhanced status code such as &quot;5.1.1&quot;.");
    expect(
      (await b.post("/app/suppressions/bounces/add", { email: `d-${m}@example.org`, bounce_type: "odd" }))
        .status,
    ).toBe(400);
    // spam_reports takes ip, not reason: a field the list does not keep is refused.
    expect(
      (await b.post("/app/suppressions/spam_reports/add", { email: `d-${m}@example.org`, reason: "x" }))
        .status,
    ).toBe(400);
    expect((await b.post("/app/suppressions/nope/add", { email: `d-${m}@example.org` })).status).toBe(404);
    expect((await t.api("GET", `/v3/suppression/bounces/d-${m}@example.org`)).status).toBe(404);
    expect((await t.api("GET", `/v3/suppression/spam_reports/d-${m}@example.org`)).status).toBe(404);
  });
});
