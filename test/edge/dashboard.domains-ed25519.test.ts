/**
 * The dashboard's sender domain actions beyond verify and RSA rotation (docs/dashboard.md#pages):
 * an Ed25519 key beside the RSA one (dual signing, docs/api/admin.md#dual-signing-ed25519), its
 * overlap rotation and removal, and adding a domain. Each goes through the admin API's own code, so
 * the admin API reports afterwards what the page showed. Also: domains.read sees no buttons and is
 * refused anyway, another tenant's domain is a 404, a post without the CSRF token or from another
 * origin changes nothing.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import type { TxtLookup } from "../../edge/src/services/dns-check.ts";
import { verifyDomain } from "../../edge/src/services/domains.ts";
import { call, createDomain, operatorHeaders, setupTenant, uid, type DomainView } from "./helpers.ts";
import { Browser, createLogin, createRole } from "./dashboard.helpers.ts";

interface DualView extends DomainView {
  dkim_algorithm: "rsa" | "dual";
  dkim_pending_selector: string | null;
  dkim_ed25519_selector: string | null;
  dkim_ed25519_verified_at: string | null;
  dmarc_policy: string;
  dns_records: { purpose: string; type: string; host: string; value: string; status: string }[];
}

async function adminView(tenantId: string, id: string): Promise<DualView> {
  const res = await call(`/api/admin/domains/${id}?tenant_id=${tenantId}`, { headers: operatorHeaders() });
  expect(res.status).toBe(200);
  return ((await res.json()) as { data: DualView }).data;
}

/** DNS as the domain's records say to publish it: the port verifyDomain takes (no resolver in workerd). */
const published =
  (d: DualView): TxtLookup =>
  async (name) =>
    d.dns_records.filter((r) => r.host === name).map((r) => r.value);

/** The <code> text of the value cell on the row whose host is `host`. */
function valueOnPage(html: string, host: string): string | undefined {
  const i = html.indexOf(`>${host}</code>`);
  if (i < 0) return undefined;
  return /<code class="secret" id="value-\d+">([^<]*)<\/code>/.exec(html.slice(i))?.[1];
}

async function adminBrowser(tenantId: string) {
  return Browser.signIn((await createLogin(tenantId, ["admin"])).email);
}

describe("dashboard: Ed25519 dual signing on a domain's page", () => {
  it("adds an Ed25519 key: its record with a copy button, pending until verified, then signing; the API agrees", async () => {
    const t = await setupTenant();
    const name = `dual-${uid()}.example.com`;
    const d = await createDomain(t.tenantId, name);
    const b = await adminBrowser(t.tenantId);
    const before = await b.get(`/app/domains/${d.id}`);
    expect(before.text).toContain("off: mail carries the RSA signature only");
    expect(before.text).toContain(`action="/app/domains/${d.id}/dkim/ed25519"`);
    expect(before.text).not.toContain("/dkim/ed25519/remove");

    const added = await b.post(`/app/domains/${d.id}/dkim/ed25519`);
    expect(added.status, added.text).toBe(200);
    const api = await adminView(t.tenantId, d.id);
    expect(api.dkim_algorithm).toBe("dual");
    expect(api.dkim_ed25519_selector).toBe("scaisend-ed1");
    expect(api.dkim_ed25519_verified_at).toBeNull();
    const record = api.dns_records.find((r) => r.host === `scaisend-ed1._domainkey.${name}`)!;
    expect(record).toMatchObject({ purpose: "dkim", status: "pending" });
    expect(record.value).toMatch(/^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    // The page shows the very record the API lists, with its copy buttons and its status.
    expect(valueOnPage(added.text, record.host)).toBe(record.value);
    const idx = /<code id="host-(\d+)">scaisend-ed1\._domainkey\./.exec(added.text)![1];
    expect(added.text).toMatch(new RegExp(`data-copy="value-${idx}"[^>]*aria-label="Copy value of dkim"`));
    expect(added.text).toContain("An Ed25519 key was made (scaisend-ed1)");
    expect(added.text).toContain("scaisend-ed1 is pending");
    expect(added.text).toContain(`action="/app/domains/${d.id}/dkim/ed25519/remove"`);
    expect(added.text).not.toContain(`action="/app/domains/${d.id}/dkim/ed25519"`);

    // Verification that finds the records (the admin API's verify code) turns the key on; the page says so.
    const outcome = await verifyDomain(
      { db: createDb(env.DB), secrets: { current: env.SECRETS_KEY }, devMode: false, now: Date.now },
      published(api),
      t.tenantId,
      d.id,
    );
    expect(outcome.verified).toBe(true);
    const on = await b.get(`/app/domains/${d.id}`);
    const verifiedAt = (await adminView(t.tenantId, d.id)).dkim_ed25519_verified_at;
    expect(verifiedAt).not.toBeNull();
    expect(on.text).toContain(
      `on: scaisend-ed1 signs beside the RSA key (its record was found ${verifiedAt})`,
    );
  });

  it("rotates the Ed25519 key with an overlap (rotate-dkim, algorithm ed25519), then turns dual signing off", async () => {
    const t = await setupTenant();
    const name = `dual-${uid()}.example.com`;
    const d = await createDomain(t.tenantId, name);
    const b = await adminBrowser(t.tenantId);
    await b.get(`/app/domains/${d.id}`);
    expect((await b.post(`/app/domains/${d.id}/dkim/ed25519`)).status).toBe(200);
    const rotated = await b.post(`/app/domains/${d.id}/rotate-dkim`, { algorithm: "ed25519" });
    expect(rotated.status, rotated.text).toBe(200);
    const api = await adminView(t.tenantId, d.id);
    expect(api.dkim_pending_selector).toBe("scaisend-ed2");
    expect(api.dkim_ed25519_selector).toBe("scaisend-ed1");
    expect(rotated.text).toContain("A new DKIM key was made (Ed25519, selector scaisend-ed2)");
    const next = api.dns_records.find((r) => r.host === `scaisend-ed2._domainkey.${name}`)!;
    expect(next.status).toBe("pending");
    expect(valueOnPage(rotated.text, next.host)).toBe(next.value);
    // While that rotation is pending the API refuses removal (409), and so does the page.
    const refused = await b.post(`/app/domains/${d.id}/dkim/ed25519/remove`);
    expect(refused.status).toBe(409);
    expect(refused.text).toContain("An Ed25519 rotation is pending");
    // An algorithm the API does not offer is a 400 naming the choices; so is a field it does not take.
    const bad = await b.post(`/app/domains/${d.id}/rotate-dkim`, { algorithm: "dsa" });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain("algorithm must be rsa (the default) or ed25519");
    expect((await b.post(`/app/domains/${d.id}/rotate-dkim`, { bits: "4096" })).status).toBe(400);

    // Once the new key is found it takes over; then the key can be removed.
    await verifyDomain(
      { db: createDb(env.DB), secrets: { current: env.SECRETS_KEY }, devMode: false, now: Date.now },
      published(api),
      t.tenantId,
      d.id,
    );
    expect((await adminView(t.tenantId, d.id)).dkim_ed25519_selector).toBe("scaisend-ed2");
    await b.get(`/app/domains/${d.id}`);
    const removed = await b.post(`/app/domains/${d.id}/dkim/ed25519/remove`);
    expect(removed.status, removed.text).toBe(200);
    expect(removed.text).toContain("The Ed25519 key was deleted");
    expect(removed.text).toContain("off: mail carries the RSA signature only");
    const after = await adminView(t.tenantId, d.id);
    expect(after.dkim_algorithm).toBe("rsa");
    expect(after.dkim_ed25519_selector).toBeNull();
  });

  it("domains.read sees no buttons and is refused (403); another tenant's domain is a 404; CSRF and Origin are checked", async () => {
    const t = await setupTenant();
    const d = await createDomain(t.tenantId, `dual-${uid()}.example.com`);
    const reader = await Browser.signIn(
      (await createLogin(t.tenantId, [await createRole(t.tenantId, ["domains.read"])])).email,
    );
    const page = await reader.get(`/app/domains/${d.id}`);
    expect(page.status).toBe(200);
    expect(page.text).not.toContain("/dkim/ed25519");
    expect(page.text).not.toContain('<form method="post" action="/app/domains"');
    expect((await reader.get("/app/domains")).text).not.toContain('id="add-domain"');
    expect((await reader.post(`/app/domains/${d.id}/dkim/ed25519`)).status).toBe(403);
    expect((await reader.post(`/app/domains/${d.id}/dkim/ed25519/remove`)).status).toBe(403);
    expect((await reader.post("/app/domains", { domain: `r-${uid()}.example.com` })).status).toBe(403);

    const other = await setupTenant();
    const stranger = await adminBrowser(other.tenantId);
    for (const path of [
      `/app/domains/${d.id}`,
      `/app/domains/${d.id}/dkim/ed25519`,
      `/app/domains/${d.id}/dkim/ed25519/remove`,
    ]) {
      const res = path.endsWith(d.id) ? await stranger.get(path) : await stranger.post(path);
      expect(res.status, path).toBe(404);
      expect(res.text).not.toContain(d.domain);
    }

    const admin = await adminBrowser(t.tenantId);
    await admin.get(`/app/domains/${d.id}`);
    expect((await admin.post(`/app/domains/${d.id}/dkim/ed25519`, {}, { csrf: null })).status).toBe(403);
    expect((await admin.post(`/app/domains/${d.id}/dkim/ed25519`, {}, { csrf: "0".repeat(64) })).status).toBe(
      403,
    );
    expect(
      (await admin.post(`/app/domains/${d.id}/dkim/ed25519`, {}, { origin: "https://evil.example" })).status,
    ).toBe(403);
    expect(
      (await admin.post("/app/domains", { domain: `x-${uid()}.example.com` }, { csrf: null })).status,
    ).toBe(403);
    // Nothing was changed by any of them.
    expect((await adminView(t.tenantId, d.id)).dkim_algorithm).toBe("rsa");
    expect((await adminView(other.tenantId, other.domainId)).dkim_algorithm).toBe("rsa");
  });
});

describe("dashboard: adding a domain", () => {
  it("creates it through the admin API's code: its records shown, the API lists it; bad input is a 400, a duplicate a 409", async () => {
    const t = await setupTenant();
    const b = await adminBrowser(t.tenantId);
    const list = await b.get("/app/domains");
    expect(list.text).toContain('<form method="post" action="/app/domains" id="add-domain">');
    expect(list.text).toMatch(/<label for="domain-name">Domain<\/label>/);
    const name = `New-${uid()}.Example.com`;
    const res = await b.post("/app/domains", {
      domain: name,
      dmarc_policy: "quarantine",
      dmarc_rua_email: "",
      dkim_algorithm: "dual",
    });
    expect(res.status, res.text).toBe(201);
    expect(res.text).toContain("Domain added");
    const listed = await call(`/api/admin/domains?tenant_id=${t.tenantId}`, { headers: operatorHeaders() });
    const rows = ((await listed.json()) as { data: DualView[] }).data;
    const d = rows.find((r) => r.domain === name.toLowerCase())!;
    expect(d).toMatchObject({ verified: false, dmarc_policy: "quarantine", dkim_algorithm: "dual" });
    for (const r of d.dns_records) expect(valueOnPage(res.text, r.host)).toBeDefined();
    expect(valueOnPage(res.text, `_dmarc.${d.domain}`)).toBe("v=DMARC1; p=quarantine");
    expect(valueOnPage(res.text, `scaisend-ed1._domainkey.${d.domain}`)).toMatch(/^v=DKIM1; k=ed25519; p=/);
    expect((await b.get("/app/domains")).text).toContain(`href="/app/domains/${d.id}"`);

    const dup = await b.post("/app/domains", { domain: name });
    expect(dup.status).toBe(409);
    expect(dup.text).toContain(`Domain already exists: ${name.toLowerCase()}`);
    const bad = await b.post("/app/domains", { domain: "not a domain" });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain("must be a domain name such as mail.example.com");
    expect(
      (await b.post("/app/domains", { domain: `a-${uid()}.example.com`, dkim_algorithm: "ed25519" })).status,
    ).toBe(400);
    expect(
      (await b.post("/app/domains", { domain: `a-${uid()}.example.com`, dmarc_policy: "strict" })).status,
    ).toBe(400);
    expect((await b.post("/app/domains", { domain: `a-${uid()}.example.com`, is_default: "1" })).status).toBe(
      400,
    );
    const after = await call(`/api/admin/domains?tenant_id=${t.tenantId}`, { headers: operatorHeaders() });
    // The tenant's fixture domain and the one added: none of the refused posts made one.
    expect(((await after.json()) as { total: number }).total).toBe(2);
  });
});
