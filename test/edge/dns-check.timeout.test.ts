/**
 * Issue 6, item 12: the DNS-over-HTTPS lookup had no timeout, so a resolver that never answers held
 * the verify request until the platform cancelled it. The resolver here is SILENT_DOH, a Worker
 * (vitest.config.ts) that accepts the request and never answers within the test.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import { dohTxtLookup, type DohFetcher } from "../../edge/src/services/dns-check.ts";
import { verifyDomain } from "../../edge/src/services/domains.ts";
import { createDomain, createTenant, uid } from "./helpers.ts";

const silent: DohFetcher = (url, init) => env.SILENT_DOH.fetch(url, init);

describe("DNS-over-HTTPS lookups against a resolver that never answers", () => {
  it("reject with a message naming the timeout and the name looked up", async () => {
    const lookup = dohTxtLookup("https://doh.example.net/dns-query", silent, 100);
    await expect(lookup("_dmarc.example.com")).rejects.toThrow(
      "DNS resolver did not answer within 100 ms for _dmarc.example.com",
    );
  });

  it("make domain verification answer not verified, each check saying why, and record it", async () => {
    const tenantId = await createTenant();
    const domain = `mail-${uid()}.example.com`;
    const d = await createDomain(tenantId, domain);
    const outcome = await verifyDomain(
      { db: createDb(env.DB), secrets: { current: env.SECRETS_KEY }, devMode: false, now: Date.now },
      dohTxtLookup("https://doh.example.net/dns-query", silent, 100),
      tenantId,
      d.id,
    );
    expect(outcome.verified).toBe(false);
    expect(outcome.checks.map((c) => [c.purpose, c.ok])).toEqual([
      ["dkim", false],
      ["spf", false],
      ["dmarc", false],
    ]);
    for (const c of outcome.checks) {
      expect(c.message).toBe(`DNS lookup failed: DNS resolver did not answer within 100 ms for ${c.host}`);
    }
    const row = await env.DB.prepare("SELECT verified, last_errors FROM sender_domains WHERE id = ?")
      .bind(d.id)
      .first<{ verified: number; last_errors: string }>();
    expect(row!.verified).toBe(0);
    expect(JSON.parse(row!.last_errors)).toHaveLength(3);
  });

  it("in DEV_MODE report the failed checks yet count the domain as verified (dev domains need no DNS)", async () => {
    const tenantId = await createTenant();
    const d = await createDomain(tenantId, `mail-${uid()}.example.com`);
    const deps = { db: createDb(env.DB), secrets: { current: env.SECRETS_KEY }, now: Date.now };
    const outcome = await verifyDomain(
      { ...deps, devMode: true },
      dohTxtLookup("https://doh.example.net/dns-query", silent, 100),
      tenantId,
      d.id,
    );
    expect(outcome.checks.every((c) => !c.ok)).toBe(true);
    expect(outcome.verified).toBe(true);
    const row = await env.DB.prepare("SELECT verified FROM sender_domains WHERE id = ?")
      .bind(d.id)
      .first<{ verified: number }>();
    expect(row!.verified).toBe(1);
  });
});
