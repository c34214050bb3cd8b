/**
 * Deleting a sender domain and changing its DMARC settings from its dashboard page
 * (docs/dashboard.md#pages), in workerd, through the admin API's own PATCH and DELETE code: the admin
 * API reads back what the page did; the delete needs the domain's name typed on its confirmation
 * page, and live mail from the domain is refused at once afterwards; domains.read sees neither form
 * and is refused anyway; CSRF and Origin refusals change nothing; another tenant's session gets 404
 * and leaves the domain as it was.
 */
import { describe, expect, it } from "vitest";
import {
  call,
  createDomain,
  mailBody,
  operatorHeaders,
  setupTenant,
  uid,
  type DomainView,
} from "./helpers.ts";
import { Browser, createLogin, createRole } from "./dashboard.helpers.ts";

type View = DomainView;

async function adminView(tenantId: string, id: string): Promise<{ status: number; data?: View }> {
  const res = await call(`/api/admin/domains/${id}?tenant_id=${tenantId}`, { headers: operatorHeaders() });
  return { status: res.status, ...(res.status === 200 ? ((await res.json()) as { data: View }) : {}) };
}

const dmarcValue = (v: View) => v.dns_records.find((r) => r.host.startsWith("_dmarc."))?.value;

async function liveSend(key: string, from: string): Promise<number> {
  const res = await call("/v3/mail/send", {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(mailBody(from)),
  });
  await res.body?.cancel();
  return res.status;
}

describe("dashboard: a domain's DMARC settings", () => {
  it("policy and report address saved as the admin API's PATCH saves them; its refusals shown", async () => {
    const t = await setupTenant();
    const name = `dmarc-${uid()}.example.com`;
    const d = await createDomain(t.tenantId, name);
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    const page = await b.get(`/app/domains/${d.id}`);
    expect(page.text).toContain(`action="/app/domains/${d.id}/dmarc"`);
    expect(page.text).toMatch(/<option value="none" selected/);

    const saved = await b.post(`/app/domains/${d.id}/dmarc`, {
      dmarc_policy: "quarantine",
      dmarc_rua_email: "reports@example.org",
    });
    expect(saved.status, saved.text).toBe(200);
    expect(saved.text).toContain("DMARC settings saved");
    expect(saved.text).toMatch(/<option value="quarantine" selected/);
    const after = (await adminView(t.tenantId, d.id)).data!;
    expect(after).toMatchObject({ dmarc_policy: "quarantine", dmarc_rua_email: "reports@example.org" });
    // The record the page lists is the API's, with the new policy.
    expect(dmarcValue(after)).toContain("p=quarantine");
    expect(dmarcValue(after)).toContain("rua=mailto:reports@example.org");
    expect(saved.text).toContain(dmarcValue(after)!);

    // An empty report address drops rua= (the API's null).
    expect(
      (await b.post(`/app/domains/${d.id}/dmarc`, { dmarc_policy: "reject", dmarc_rua_email: "" })).status,
    ).toBe(200);
    const cleared = (await adminView(t.tenantId, d.id)).data!;
    expect(cleared).toMatchObject({ dmarc_policy: "reject", dmarc_rua_email: null });
    expect(dmarcValue(cleared)).not.toContain("rua=");

    // The API's refusals, and a field the form does not take: 400, nothing changes.
    const badPolicy = await b.post(`/app/domains/${d.id}/dmarc`, { dmarc_policy: "strict" });
    expect(badPolicy.status).toBe(400);
    expect(badPolicy.text).toContain(
      "Invalid dmarc_policy &quot;strict&quot;: use none, quarantine or reject",
    );
    expect((await b.post(`/app/domains/${d.id}/dmarc`, { dmarc_rua_email: "not-an-address" })).status).toBe(
      400,
    );
    expect(
      (await b.post(`/app/domains/${d.id}/dmarc`, { dmarc_policy: "none", is_active: "false" })).status,
    ).toBe(400);
    expect((await adminView(t.tenantId, d.id)).data).toMatchObject({
      dmarc_policy: "reject",
      dmarc_rua_email: null,
      is_active: true,
    });
  });
});

describe("dashboard: deleting a domain", () => {
  it("behind its confirmation page, where the name is typed; then the API has no such domain and live mail from it is refused", async () => {
    const t = await setupTenant();
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    expect(await liveSend(t.liveKey, t.from)).toBe(202);
    const page = await b.get(`/app/domains/${t.domainId}`);
    expect(page.text).toContain(`href="/app/domains/${t.domainId}/delete"`);
    const confirm = await b.get(`/app/domains/${t.domainId}/delete`);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain(`Type the domain&#39;s name, <code>${t.domain}</code>, to confirm`);
    expect(confirm.text).toMatch(/<input id="confirm-domain" name="confirm_domain" required/);

    // A wrong, partial or missing name deletes nothing.
    for (const fields of [
      {},
      { confirm_domain: "" },
      { confirm_domain: "example.com" },
      { confirm_domain: `x${t.domain}` },
    ] as Record<string, string>[]) {
      const res = await b.post(`/app/domains/${t.domainId}/delete`, fields);
      expect(res.status, JSON.stringify(fields)).toBe(400);
      expect(res.text).toContain("nothing was deleted");
    }
    expect(
      (await b.post(`/app/domains/${t.domainId}/delete`, { confirm_domain: t.domain, force: "1" })).status,
    ).toBe(400);
    expect((await adminView(t.tenantId, t.domainId)).status).toBe(200);
    expect(await liveSend(t.liveKey, t.from)).toBe(202);

    // The name as typed by a person: case and surrounding spaces do not matter.
    const deleted = await b.post(`/app/domains/${t.domainId}/delete`, {
      confirm_domain: ` ${t.domain.toUpperCase()} `,
    });
    expect(deleted.status, deleted.text).toBe(303);
    expect(deleted.headers.get("location")).toBe("/app/domains");
    expect((await adminView(t.tenantId, t.domainId)).status).toBe(404);
    expect((await b.get("/app/domains")).text).not.toContain(t.domain);
    expect((await b.get(`/app/domains/${t.domainId}`)).status).toBe(404);
    expect((await b.post(`/app/domains/${t.domainId}/delete`, { confirm_domain: t.domain })).status).toBe(
      404,
    );
    // This isolate's send path refuses it at once, as after the admin API's DELETE.
    expect(await liveSend(t.liveKey, t.from)).toBe(403);
  });

  it("domains.read sees neither form and is refused; CSRF, Origin and another tenant's session change nothing", async () => {
    const t = await setupTenant();
    const reader = await Browser.signIn(
      (await createLogin(t.tenantId, [await createRole(t.tenantId, ["domains.read"])])).email,
    );
    const page = await reader.get(`/app/domains/${t.domainId}`);
    expect(page.status).toBe(200);
    expect(page.text).not.toContain("/delete");
    expect(page.text).not.toContain(`action="/app/domains/${t.domainId}/dmarc"`);
    // The settings are shown, read-only.
    expect(page.text).toMatch(/<dl class="meta" id="dmarc-settings"><dt>Policy<\/dt><dd>none<\/dd>/);
    expect((await reader.get(`/app/domains/${t.domainId}/delete`)).status).toBe(403);
    const writes: [string, Record<string, string>][] = [
      [`/app/domains/${t.domainId}/delete`, { confirm_domain: t.domain }],
      [`/app/domains/${t.domainId}/dmarc`, { dmarc_policy: "reject" }],
    ];
    for (const [path, fields] of writes) expect((await reader.post(path, fields)).status, path).toBe(403);

    const admin = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    await admin.get(`/app/domains/${t.domainId}`);
    for (const opts of [
      { csrf: null },
      { csrf: "0".repeat(64) },
      { origin: "https://evil.example" },
      { origin: null },
    ])
      for (const [path, fields] of writes)
        expect((await admin.post(path, fields, opts)).status, `${path} ${JSON.stringify(opts)}`).toBe(403);

    const other = await setupTenant();
    const b = await Browser.signIn((await createLogin(other.tenantId, ["admin"])).email);
    const confirm = await b.get(`/app/domains/${t.domainId}/delete`);
    expect(confirm.status).toBe(404);
    expect(confirm.text).not.toContain(t.domain);
    for (const [path, fields] of writes) {
      const res = await b.post(path, fields);
      expect(res.status, path).toBe(404);
      expect(res.text).not.toContain(t.domain);
    }
    expect((await adminView(t.tenantId, t.domainId)).data).toMatchObject({
      domain: t.domain,
      dmarc_policy: "none",
    });
    expect(await liveSend(t.liveKey, t.from)).toBe(202);
  });
});
