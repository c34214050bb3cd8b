/**
 * POST /api/admin/domains and GET /api/admin/domains/{id} (docs/api/admin.md#sender-domains): the DNS records to
 * publish, the DKIM key pair (RSA-2048, private half sealed at rest), tenant scoping and the errors.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { keyId, open } from "../../edge/src/lib/secret-box.ts";
import { base64ToBytes } from "../../edge/src/lib/base64.ts";
import type { Permission } from "../../shared/permissions.ts";
import {
  bearer,
  call,
  createApiKey,
  createTenant,
  operatorHeaders,
  uid,
  type DomainView,
} from "./helpers.ts";

function postDomain(headers: Record<string, string>, body: unknown): Promise<Response> {
  return call("/api/admin/domains", { method: "POST", headers, body: JSON.stringify(body) });
}

async function tenantWithKey(scopes: Permission[] = ["domains.read", "domains.write"]) {
  const tenantId = await createTenant();
  const key = await createApiKey(tenantId, { scopes });
  return { tenantId, key: key.key };
}

const newDomain = () => `mail-${uid()}.example.com`;

describe("post /api/admin/domains", () => {
  it("creates an unverified domain and returns the DKIM, SPF and DMARC records to publish", async () => {
    const { tenantId, key } = await tenantWithKey();
    const domain = newDomain();
    const res = await postDomain(bearer(key), {
      domain: domain.toUpperCase(),
      dmarc_policy: "quarantine",
      dmarc_rua_email: "dmarc-reports@example.com",
    });
    expect(res.status).toBe(201);
    const d = ((await res.json()) as { data: DomainView }).data;
    expect(d).toMatchObject({
      tenant_id: tenantId,
      domain,
      verified: false,
      is_active: true,
      dkim_selector: "scaisend",
      dmarc_policy: "quarantine",
      dmarc_rua_email: "dmarc-reports@example.com",
      last_checked_at: null,
      verified_at: null,
      errors: [],
    });
    expect(d.id).toMatch(/^dom_[0-9A-Z]{26}$/);
    expect(d.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);

    const [dkim, spf, dmarc] = d.dns_records;
    expect(d.dns_records).toHaveLength(3);
    expect(dkim).toMatchObject({ purpose: "dkim", type: "TXT", host: `scaisend._domainkey.${domain}` });
    expect(dkim!.value).toMatch(/^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/);
    expect(dkim).toMatchObject({ status: "required" });
    expect(spf).toEqual({
      purpose: "spf",
      type: "TXT",
      host: domain,
      value: "v=spf1 mx ~all",
      status: "required",
    });
    expect(dmarc).toEqual({
      purpose: "dmarc",
      type: "TXT",
      host: `_dmarc.${domain}`,
      value: "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@example.com",
      status: "required",
    });

    // p= is a base64 SubjectPublicKeyInfo of a 2048-bit RSA key.
    const spki = base64ToBytes(dkim!.value.slice("v=DKIM1; k=rsa; p=".length));
    const pub = await crypto.subtle.importKey(
      "spki",
      spki,
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      true,
      ["verify"],
    );
    const rsa = pub.algorithm as unknown as {
      name: string;
      modulusLength: number;
      publicExponent: Uint8Array;
    };
    expect(rsa.name).toBe("RSASSA-PKCS1-v1_5");
    expect(rsa.modulusLength).toBe(2048);
    expect(Array.from(rsa.publicExponent)).toEqual([1, 0, 1]);
  });

  it("defaults the DMARC policy to none without rua", async () => {
    const { key } = await tenantWithKey();
    const domain = newDomain();
    const res = await postDomain(bearer(key), { domain });
    const d = ((await res.json()) as { data: DomainView }).data;
    expect(d.dmarc_policy).toBe("none");
    expect(d.dmarc_rua_email).toBeNull();
    expect(d.dns_records[2]).toEqual({
      purpose: "dmarc",
      type: "TXT",
      host: `_dmarc.${domain}`,
      value: "v=DMARC1; p=none",
      status: "required",
    });
  });

  it("stores the private key sealed (AES-GCM, v2 under SECRETS_KEY's id, bound to the domain id), never as a PEM, and it opens to the key matching p=", async () => {
    const { key } = await tenantWithKey();
    const res = await postDomain(bearer(key), { domain: newDomain() });
    const d = ((await res.json()) as { data: DomainView }).data;
    const row = await env.DB.prepare(
      "SELECT dkim_private_key_enc, dkim_public_key FROM sender_domains WHERE id = ?",
    )
      .bind(d.id)
      .first<{ dkim_private_key_enc: string; dkim_public_key: string }>();
    expect(row!.dkim_private_key_enc).toMatch(/^v2\.[0-9a-f]{16}\.[A-Za-z0-9+/]+=*\.[A-Za-z0-9+/]+=*$/);
    expect(row!.dkim_private_key_enc.split(".")[1]).toBe(await keyId(env.SECRETS_KEY));
    expect(row!.dkim_private_key_enc).not.toContain("PRIVATE KEY");
    expect(JSON.stringify(d)).not.toContain(row!.dkim_private_key_enc);
    expect(d.dns_records[0]!.value).toBe(`v=DKIM1; k=rsa; p=${row!.dkim_public_key}`);

    const pem = await open(env.SECRETS_KEY, row!.dkim_private_key_enc, `dkim:${d.id}`);
    // Bound to this domain: the same value does not open as another domain's key.
    await expect(open(env.SECRETS_KEY, row!.dkim_private_key_enc, "dkim:dom_other")).rejects.toThrow(
      /altered, or it was sealed for another owner/,
    );
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    // Neither the key's DER (as base64, the PEM's body) nor the PEM text itself (as base64) shows in the
    // stored value: a random ciphertext would contain a short fixed string like "MII" now and then.
    const der = pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
    expect(row!.dkim_private_key_enc).not.toContain(der.slice(0, 32));
    expect(row!.dkim_private_key_enc).not.toContain(der.slice(-32));
    expect(row!.dkim_private_key_enc).not.toContain(btoa("-----BEGIN PRIVATE KEY-----").slice(0, 24));
    const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    const priv = await crypto.subtle.importKey(
      "pkcs8",
      base64ToBytes(pem.replace(/-----[A-Z ]+-----|\n/g, "")),
      alg,
      false,
      ["sign"],
    );
    const pub = await crypto.subtle.importKey("spki", base64ToBytes(row!.dkim_public_key), alg, false, [
      "verify",
    ]);
    const data = new TextEncoder().encode("probe");
    expect(await crypto.subtle.verify(alg, pub, await crypto.subtle.sign(alg, priv, data), data)).toBe(true);
  });

  it("gives every domain its own key pair", async () => {
    const { key } = await tenantWithKey();
    const a = (
      (await (await postDomain(bearer(key), { domain: newDomain() })).json()) as { data: DomainView }
    ).data;
    const b = (
      (await (await postDomain(bearer(key), { domain: newDomain() })).json()) as { data: DomainView }
    ).data;
    expect(a.dns_records[0]!.value).not.toBe(b.dns_records[0]!.value);
  });

  it("the operator creates a domain for the tenant it names", async () => {
    const tenantId = await createTenant();
    const domain = newDomain();
    const res = await postDomain(operatorHeaders(), { domain, tenant_id: tenantId });
    expect(res.status).toBe(201);
    expect(((await res.json()) as { data: DomainView }).data).toMatchObject({ tenant_id: tenantId, domain });
  });

  it("an API key's tenant wins over a tenant_id in the body", async () => {
    const mine = await tenantWithKey();
    const other = await createTenant();
    const res = await postDomain(bearer(mine.key), { domain: newDomain(), tenant_id: other });
    expect(res.status).toBe(201);
    expect(((await res.json()) as { data: DomainView }).data.tenant_id).toBe(mine.tenantId);
  });
});

describe("post /api/admin/domains errors", () => {
  it.each(["not a domain", "localhost", "-bad.example.com", "exa_mple.com", "example.com.", ""])(
    "invalid domain %j → 422",
    async (domain) => {
      const { key } = await tenantWithKey();
      const res = await postDomain(bearer(key), { domain });
      expect(res.status).toBe(422);
      expect(await res.json()).toEqual({
        detail: [
          {
            loc: ["body", "domain"],
            msg: "must be a domain name such as mail.example.com",
            type: "value_error",
          },
        ],
      });
    },
  );

  it("missing domain → 422", async () => {
    const { key } = await tenantWithKey();
    const res = await postDomain(bearer(key), {});
    expect(res.status).toBe(422);
    const body = (await res.json()) as { detail: { loc: unknown[] }[] };
    expect(body.detail.map((d) => d.loc)).toEqual([["body", "domain"]]);
  });

  it("invalid dmarc_policy → 400, not a 422 validation error", async () => {
    const { key } = await tenantWithKey();
    const res = await postDomain(bearer(key), { domain: newDomain(), dmarc_policy: "strict" });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      detail: 'Invalid dmarc_policy "strict": use none, quarantine or reject',
    });
  });

  it("malformed JSON → 400", async () => {
    const { key } = await tenantWithKey();
    const res = await call("/api/admin/domains", { method: "POST", headers: bearer(key), body: "{nope" });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ detail: "Request body is not valid JSON" });
  });

  it("the same domain twice in one tenant → 409, case-insensitively", async () => {
    const { key } = await tenantWithKey();
    const domain = newDomain();
    expect((await postDomain(bearer(key), { domain })).status).toBe(201);
    const res = await postDomain(bearer(key), { domain: domain.toUpperCase() });
    expect(res.status).toBe(409);
    expect(await res.json()).toEqual({ detail: `Domain already exists: ${domain}` });
  });

  it("the same domain in two tenants is allowed", async () => {
    const a = await tenantWithKey();
    const b = await tenantWithKey();
    const domain = newDomain();
    expect((await postDomain(bearer(a.key), { domain })).status).toBe(201);
    expect((await postDomain(bearer(b.key), { domain })).status).toBe(201);
  });

  it("an API key without domains.write → 403", async () => {
    const { key } = await tenantWithKey(["domains.read", "mail.send"]);
    const res = await postDomain(bearer(key), { domain: newDomain() });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ detail: "Missing required scope: domains.write" });
  });

  it("the operator must name the tenant → 400", async () => {
    const res = await postDomain(operatorHeaders(), { domain: newDomain() });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ detail: "tenant_id is required with the operator token" });
  });

  it("the operator naming a tenant that does not exist → 404", async () => {
    const res = await postDomain(operatorHeaders(), { domain: newDomain(), tenant_id: "tnt_nope" });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ detail: "Tenant not found: tnt_nope" });
  });

  it("no credentials → 401", async () => {
    const res = await call("/api/admin/domains", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ domain: newDomain() }),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ detail: "Missing Authorization header" });
  });
});

describe("get /api/admin/domains/{id}", () => {
  it("returns the domain with the same records as at creation", async () => {
    const { key } = await tenantWithKey();
    const created = (
      (await (await postDomain(bearer(key), { domain: newDomain() })).json()) as { data: DomainView }
    ).data;
    const res = await call(`/api/admin/domains/${created.id}`, { headers: bearer(key) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ data: created });
  });

  it("a key with only domains.read can read", async () => {
    const { tenantId, key } = await tenantWithKey();
    const created = (
      (await (await postDomain(bearer(key), { domain: newDomain() })).json()) as { data: DomainView }
    ).data;
    const reader = await createApiKey(tenantId, { scopes: ["domains.read"] });
    expect((await call(`/api/admin/domains/${created.id}`, { headers: bearer(reader.key) })).status).toBe(
      200,
    );
  });

  it("another tenant's domain → 404, the same as a missing one", async () => {
    const a = await tenantWithKey();
    const b = await tenantWithKey();
    const created = (
      (await (await postDomain(bearer(a.key), { domain: newDomain() })).json()) as { data: DomainView }
    ).data;
    const res = await call(`/api/admin/domains/${created.id}`, { headers: bearer(b.key) });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ detail: `Domain not found: ${created.id}` });
    // The operator sees it only under the right tenant.
    const asOperatorWrong = await call(`/api/admin/domains/${created.id}?tenant_id=${b.tenantId}`, {
      headers: operatorHeaders(),
    });
    expect(asOperatorWrong.status).toBe(404);
    const asOperator = await call(`/api/admin/domains/${created.id}?tenant_id=${a.tenantId}`, {
      headers: operatorHeaders(),
    });
    expect(asOperator.status).toBe(200);
  });

  it("a key without domains.read → 403", async () => {
    const { tenantId, key } = await tenantWithKey();
    const created = (
      (await (await postDomain(bearer(key), { domain: newDomain() })).json()) as { data: DomainView }
    ).data;
    const sender = await createApiKey(tenantId, { scopes: ["mail.send"] });
    const res = await call(`/api/admin/domains/${created.id}`, { headers: bearer(sender.key) });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ detail: "Missing required scope: domains.read" });
  });
});
