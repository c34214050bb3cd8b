/**
 * DKIM rotation with overlap and precise verification errors, with the real Worker in workerd
 * (Miniflare), a real DNS server on loopback (DoH for the edge, UDP/TCP for mailauth) and the
 * origin's real EdgeLink, JobRunner and composeMessage (only the SMTP hop is left out):
 *
 *  - rotate-dkim adds `scaisend2` as pending beside `scaisend`; mail is still signed with `scaisend`;
 *  - verify without the new record reports it precisely and does not switch;
 *  - verify with it switches: mail is signed with `scaisend2` and verifies; the old record is
 *    `retiring`, then `removable` once DKIM_ROTATION_OVERLAP_S (compressed to 2 s here) has passed;
 *  - each record's failure is named with what was expected and found (NXDOMAIN, two SPF records,
 *    a DKIM key that does not match, an invalid DMARC policy).
 */
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { describe, expect, it } from "vitest";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { useDomainEdge, zoneOf } from "../helpers/domain-edge.ts";

const SENDER = "rotate.link.test";
const OVERLAP_S = 2;

const fx = useDomainEdge("dkim-rotation-miniflare", { DKIM_ROTATION_OVERLAP_S: String(OVERLAP_S) });
const { call, startOrigin, tenantKey } = fx;

interface DnsRecordView {
  purpose: string;
  host: string;
  value: string;
  status: string;
  remove_after?: string;
}
interface DomainView {
  id: string;
  verified: boolean;
  dkim_selector: string;
  dkim_pending_selector: string | null;
  dns_records: DnsRecordView[];
}
interface Check {
  purpose: string;
  host: string;
  ok: boolean;
  message?: string;
  expected?: string;
  found?: string[];
}

/** Sends one message and returns the selectors whose signatures verify on what the origin composed. */
async function sendAndVerify(key: string, composed: Map<string, Buffer>): Promise<string[]> {
  const sent = await call(key, "POST", "/v3/mail/send", {
    personalizations: [{ to: [{ email: "rcpt@example.net" }] }],
    from: { email: `app@${SENDER}` },
    subject: "Rotation",
    content: [{ type: "text/plain", value: "Signed." }],
  });
  const id = sent.message_id as string;
  const deadline = Date.now() + 30_000;
  while (!composed.has(id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const raw = composed.get(id);
  expect(raw, "the origin composed the message").toBeDefined();
  const { results } = await dkimVerify(raw!, { strict: true, resolver: mailauthResolver(fx.dns.server) });
  return results.map((r) => `${r.status.result}:${r.selector}`);
}

describe("DKIM rotation with overlap (Miniflare, loopback DNS)", () => {
  it("publishes both selectors, switches signing only once the new record verifies, retires the old one after the window", async () => {
    const key = await tenantKey("Rotate");
    const d = (await call(key, "POST", "/api/admin/domains", { domain: SENDER })).data as DomainView;
    fx.dns.setRecords(zoneOf(d.dns_records, ["required"]));
    expect((await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data.verified).toBe(true);

    const rotated = (await call(key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`)).data as DomainView;
    expect(rotated).toMatchObject({
      verified: true,
      dkim_selector: "scaisend",
      dkim_pending_selector: "scaisend2",
    });
    expect(rotated.dns_records.map((r) => [r.host, r.status])).toEqual([
      [`scaisend._domainkey.${SENDER}`, "required"],
      [SENDER, "required"],
      [`_dmarc.${SENDER}`, "required"],
      [`scaisend2._domainkey.${SENDER}`, "pending"],
    ]);
    const newRecord = rotated.dns_records[3]!;
    expect(newRecord.value).toMatch(/^v=DKIM1; k=rsa; p=MII/);
    expect(newRecord.value).not.toBe(rotated.dns_records[0]!.value);
    // A second rotation while one is pending is refused.
    await expect(call(key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`)).rejects.toThrow(/HTTP 409/);

    const composed = new Map<string, Buffer>();
    const origin = startOrigin(composed);
    try {
      // Not published yet: still signed with the old key.
      expect(await sendAndVerify(key, composed)).toEqual(["pass:scaisend"]);
      const notYet = (await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data;
      expect(notYet).toMatchObject({ verified: true, dkim_switched: false, dkim_selector: "scaisend" });
      expect(notYet.checks.find((c: Check) => c.host === newRecord.host)).toEqual({
        purpose: "dkim",
        host: newRecord.host,
        ok: false,
        message: `${newRecord.host} does not exist (NXDOMAIN): no DKIM record found`,
        expected: newRecord.value,
        found: [],
      });
      expect(await sendAndVerify(key, composed)).toEqual(["pass:scaisend"]);

      // Published beside the old one: the verification switches.
      fx.dns.setRecords(zoneOf(rotated.dns_records, ["required", "pending"]));
      const switched = (await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data;
      expect(switched, JSON.stringify(switched)).toMatchObject({
        verified: true,
        dkim_switched: true,
        dkim_selector: "scaisend2",
        errors: [],
      });
      const after = (await call(key, "GET", `/api/admin/domains/${d.id}`)).data as DomainView;
      expect(after.dkim_pending_selector).toBeNull();
      expect(after.dns_records.map((r) => [r.host, r.status])).toEqual([
        [`scaisend2._domainkey.${SENDER}`, "required"],
        [SENDER, "required"],
        [`_dmarc.${SENDER}`, "required"],
        [`scaisend._domainkey.${SENDER}`, "retiring"],
      ]);
      expect(after.dns_records[0]!.value).toBe(newRecord.value);
      expect(Date.parse(after.dns_records[3]!.remove_after!)).toBeGreaterThan(Date.now() - 1000);
      // Mail accepted from now on is signed with the new key only.
      expect(await sendAndVerify(key, composed)).toEqual(["pass:scaisend2"]);
      // Verifying again changes nothing.
      const again = (await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data;
      expect(again).toMatchObject({ verified: true, dkim_switched: false, dkim_selector: "scaisend2" });

      // After the overlap window the old record may go.
      await new Promise((r) => setTimeout(r, OVERLAP_S * 1000 + 500));
      const later = (await call(key, "GET", `/api/admin/domains/${d.id}`)).data as DomainView;
      expect(later.dns_records[3]).toMatchObject({
        host: `scaisend._domainkey.${SENDER}`,
        status: "removable",
      });
      fx.dns.setRecords(zoneOf(later.dns_records, ["required"]));
      expect((await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data.verified).toBe(true);
      expect(await sendAndVerify(key, composed)).toEqual(["pass:scaisend2"]);
      // The next rotation takes a selector never used before.
      const next = (await call(key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`)).data as DomainView;
      expect(next.dkim_pending_selector).toBe("scaisend3");
    } finally {
      origin.stop();
    }
  }, 90_000);

  it("names each failing record with what was expected and what was found", async () => {
    const key = await tenantKey("Errors");
    const domain = `errors.${SENDER}`;
    const d = (await call(key, "POST", "/api/admin/domains", { domain, dmarc_policy: "reject" }))
      .data as DomainView;
    const [dkim, spf, dmarc] = d.dns_records;
    const otherKey = (await call(key, "POST", "/api/admin/domains", { domain: `other.${SENDER}` })).data
      .dns_records[0].value as string;
    fx.dns.setRecords({
      [dkim!.host]: { TXT: [otherKey] },
      [spf!.host]: { TXT: ["v=spf1 mx ~all", "v=spf1 ip4:192.0.2.1 -all"] },
      [dmarc!.host]: { TXT: ["v=DMARC1; p=block"] },
    });
    const out = (await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data;
    expect(out.verified).toBe(false);
    expect(out.checks).toEqual([
      {
        purpose: "dkim",
        host: dkim!.host,
        ok: false,
        message: "DKIM record found but its public key (p=) does not match this domain's key",
        expected: dkim!.value,
        found: [otherKey],
      },
      {
        purpose: "spf",
        host: spf!.host,
        ok: false,
        message:
          "2 SPF records found; more than one is a permanent error (RFC 7208 §4.5): merge them into one",
        expected: `one record with the "mx" term, e.g. ${spf!.value}`,
        found: ["v=spf1 mx ~all", "v=spf1 ip4:192.0.2.1 -all"],
      },
      {
        purpose: "dmarc",
        host: dmarc!.host,
        ok: false,
        message: "DMARC record has an invalid policy p=block (none, quarantine or reject)",
        expected: "v=DMARC1; p=reject",
        found: ["v=DMARC1; p=block"],
      },
    ]);
    expect(out.errors.map((e: { record: string }) => e.record)).toEqual([dkim!.host, spf!.host, dmarc!.host]);

    // The domain name exists but the records do not: NODATA, not NXDOMAIN.
    fx.dns.setRecords({ [domain]: { A: ["192.0.2.10"] } });
    const empty = (await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data;
    expect(empty.checks.map((c: Check) => c.message)).toEqual([
      `${dkim!.host} does not exist (NXDOMAIN): no DKIM record found`,
      "no SPF record found",
      `${dmarc!.host} does not exist (NXDOMAIN): no DMARC record found`,
    ]);
  }, 60_000);
});
