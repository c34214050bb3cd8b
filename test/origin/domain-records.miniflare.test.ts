/**
 * A sender domain's bounce MX record and its Ed25519 key rotation (docs/api/admin.md#sender-domains),
 * with the real Worker in workerd (Miniflare), a real DNS server on loopback (DoH for the edge,
 * UDP/TCP for mailauth) and the origin's real EdgeLink, JobRunner and composeMessage (only the SMTP
 * hop is left out):
 *
 *  - with BOUNCE_MX_HOST set, `dns_records` lists the MX that brings VERP bounces to the inbound
 *    server, and verification names each way it can be wrong (no MX, NXDOMAIN, another host, another
 *    host preferred, a null MX) without the MX deciding `verified`;
 *  - `rotate-dkim {"algorithm":"ed25519"}` adds `scaisend-ed2` as pending; mail goes on being signed
 *    with `scaisend-ed1` until a verification finds the new record, then with `scaisend-ed2`; the old
 *    record is `retiring`, then `removable` once DKIM_ROTATION_OVERLAP_S (2 s here) has passed.
 */
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { describe, expect, it } from "vitest";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { useDomainEdge, zoneOf } from "../helpers/domain-edge.ts";

const BOUNCE_MX = "mx.bounces.records.test";
const OVERLAP_S = 2;

const fx = useDomainEdge("domain-records-miniflare", {
  DKIM_ROTATION_OVERLAP_S: String(OVERLAP_S),
  BOUNCE_MX_HOST: BOUNCE_MX,
});
const { request, call, startOrigin, tenantKey } = fx;

interface DnsRecordView {
  purpose: string;
  type: string;
  host: string;
  value: string;
  priority?: number;
  status: string;
  remove_after?: string;
}
interface DomainView {
  id: string;
  domain: string;
  verified: boolean;
  dkim_selector: string;
  dkim_pending_selector: string | null;
  dkim_ed25519_selector: string | null;
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

/** Sends one message and returns the signatures that verify on what the origin composed. */
async function sendAndVerify(key: string, sender: string, composed: Map<string, Buffer>): Promise<string[]> {
  const sent = await call(key, "POST", "/v3/mail/send", {
    personalizations: [{ to: [{ email: "rcpt@example.net" }] }],
    from: { email: `app@${sender}` },
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

const verify = async (key: string, d: DomainView) =>
  (await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data;

describe("the bounce MX record (BOUNCE_MX_HOST)", () => {
  it("is listed after DMARC, verified against the domain's MX, and named precisely when wrong", async () => {
    const key = await tenantKey("Bounce MX");
    const domain = "mx.records.test";
    const d = (await call(key, "POST", "/api/admin/domains", { domain })).data as DomainView;
    expect(d.dns_records.map((r) => [r.purpose, r.type, r.host])).toEqual([
      ["dkim", "TXT", `scaisend._domainkey.${domain}`],
      ["spf", "TXT", domain],
      ["dmarc", "TXT", `_dmarc.${domain}`],
      ["bounce_mx", "MX", domain],
    ]);
    expect(d.dns_records[3]).toEqual({
      purpose: "bounce_mx",
      type: "MX",
      host: domain,
      value: BOUNCE_MX,
      priority: 10,
      status: "required",
    });
    const published = zoneOf(d.dns_records, ["required"]);
    fx.dns.setRecords(published);
    const ok = await verify(key, d);
    expect(ok.verified, JSON.stringify(ok)).toBe(true);
    expect(ok.checks.map((c: Check) => [c.purpose, c.ok])).toEqual([
      ["dkim", true],
      ["spf", true],
      ["dmarc", true],
      ["bounce_mx", true],
    ]);
    expect(ok.errors).toEqual([]);

    const expected = `MX 10 ${BOUNCE_MX}, with no other MX preferred`;
    const withMx = async (mx: { preference: number; exchange: string }[] | undefined) => {
      const zone = { ...published, [domain]: { ...published[domain], MX: mx } };
      if (mx === undefined) delete zone[domain]!.MX;
      fx.dns.setRecords(zone);
      const out = await verify(key, d);
      // The MX is reported, never a reason to stop the domain's mail.
      expect(out.verified).toBe(true);
      return out.checks.find((c: Check) => c.purpose === "bounce_mx") as Check;
    };
    expect(await withMx(undefined)).toEqual({
      purpose: "bounce_mx",
      host: domain,
      ok: false,
      message: "no MX record found",
      expected,
      found: [],
    });
    expect(await withMx([{ preference: 10, exchange: "mx.elsewhere.test" }])).toMatchObject({
      ok: false,
      message: `MX records point elsewhere (mx.elsewhere.test): bounces would not reach ${BOUNCE_MX}`,
      found: ["10 mx.elsewhere.test"],
    });
    expect(
      await withMx([
        { preference: 20, exchange: BOUNCE_MX },
        { preference: 5, exchange: "mx.elsewhere.test" },
      ]),
    ).toMatchObject({
      ok: false,
      message:
        `${BOUNCE_MX} is listed with preference 20, but mx.elsewhere.test (5) takes mail before or ` +
        "beside it: some bounces would not reach it",
    });
    expect(await withMx([{ preference: 0, exchange: "." }])).toMatchObject({
      ok: false,
      message: "null MX record found (RFC 7505): the domain accepts no mail, so bounces cannot arrive",
      found: ["0 ."],
    });
    // A less preferred backup MX beside ours is fine.
    expect(
      await withMx([
        { preference: 10, exchange: BOUNCE_MX.toUpperCase() },
        { preference: 50, exchange: "backup.elsewhere.test" },
      ]),
    ).toEqual({ purpose: "bounce_mx", host: domain, ok: true });

    // A domain name that does not exist at all.
    fx.dns.setRecords({});
    const none = await verify(key, d);
    expect(none.verified).toBe(false);
    expect(none.checks.find((c: Check) => c.purpose === "bounce_mx").message).toBe(
      `${domain} does not exist (NXDOMAIN): no MX record found`,
    );
    expect(none.errors.map((e: { message: string }) => e.message)).toContain(
      `${domain} does not exist (NXDOMAIN): no MX record found`,
    );
  }, 60_000);
});

describe('rotate-dkim with {"algorithm":"ed25519"} (RFC 8463, overlap window)', () => {
  it("keeps signing with the old Ed25519 key until the new record verifies, then retires it", async () => {
    const key = await tenantKey("Rotate Ed25519");
    const sender = "ed.records.test";
    const d = (await call(key, "POST", "/api/admin/domains", { domain: sender, dkim_algorithm: "dual" }))
      .data as DomainView;
    expect(d.dkim_ed25519_selector).toBe("scaisend-ed1");
    fx.dns.setRecords(zoneOf(d.dns_records, ["required", "pending"]));
    expect((await verify(key, d)).verified).toBe(true);

    // What the route refuses: another algorithm, another field.
    const bad = await request(key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`, { algorithm: "dsa" });
    expect(bad).toEqual({
      status: 400,
      body: { detail: 'Invalid algorithm "dsa": use rsa (the default) or ed25519' },
    });
    const extra = await request(key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`, {
      algorithm: "ed25519",
      selector: "x",
    });
    expect(extra).toEqual({
      status: 400,
      body: { detail: 'Unsupported field "selector": rotate-dkim takes only algorithm' },
    });

    const rotated = (
      await call(key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`, { algorithm: "ed25519" })
    ).data as DomainView;
    expect(rotated).toMatchObject({
      verified: true,
      dkim_selector: "scaisend",
      dkim_ed25519_selector: "scaisend-ed1",
      dkim_pending_selector: "scaisend-ed2",
    });
    expect(rotated.dns_records.map((r) => [r.purpose, r.host, r.status])).toEqual([
      ["dkim", `scaisend._domainkey.${sender}`, "required"],
      ["dkim", `scaisend-ed1._domainkey.${sender}`, "required"],
      ["spf", sender, "required"],
      ["dmarc", `_dmarc.${sender}`, "required"],
      ["bounce_mx", sender, "required"],
      ["dkim", `scaisend-ed2._domainkey.${sender}`, "pending"],
    ]);
    const newRecord = rotated.dns_records[5]!;
    expect(newRecord.value).toMatch(/^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    expect(newRecord.value).not.toBe(rotated.dns_records[1]!.value);
    // One rotation at a time, and the Ed25519 key is the rotation's until it switches.
    for (const [method, p, body] of [
      ["POST", "rotate-dkim", { algorithm: "ed25519" }],
      ["POST", "rotate-dkim", {}],
      ["POST", "dkim/ed25519", undefined],
      ["DELETE", "dkim/ed25519", undefined],
    ] as const) {
      expect(
        (await request(key, method, `/api/admin/domains/${d.id}/${p}`, body)).status,
        `${method} ${p}`,
      ).toBe(409);
    }

    const composed = new Map<string, Buffer>();
    const origin = startOrigin(composed);
    try {
      expect(await sendAndVerify(key, sender, composed)).toEqual(["pass:scaisend", "pass:scaisend-ed1"]);
      const notYet = await verify(key, d);
      expect(notYet).toMatchObject({ verified: true, dkim_switched: false });
      expect(notYet.checks.at(-1)).toEqual({
        purpose: "dkim",
        host: newRecord.host,
        ok: false,
        message: `${newRecord.host} does not exist (NXDOMAIN): no DKIM record found`,
        expected: newRecord.value,
        found: [],
      });
      // Published with k=rsa: named, and no switch.
      fx.dns.setRecords({
        ...zoneOf(rotated.dns_records, ["required"]),
        [newRecord.host]: { TXT: [newRecord.value.replace("k=ed25519", "k=rsa")] },
      });
      const wrongK = await verify(key, d);
      expect(wrongK.dkim_switched).toBe(false);
      expect(wrongK.checks.at(-1).message).toBe(
        "DKIM record found with this domain's Ed25519 key, but without k=ed25519 (RFC 8463 §4.2)",
      );
      expect(await sendAndVerify(key, sender, composed)).toEqual(["pass:scaisend", "pass:scaisend-ed1"]);

      fx.dns.setRecords(zoneOf(rotated.dns_records, ["required", "pending"]));
      const switched = await verify(key, d);
      expect(switched, JSON.stringify(switched)).toMatchObject({
        verified: true,
        dkim_switched: true,
        dkim_selector: "scaisend",
        errors: [],
      });
      const after = (await call(key, "GET", `/api/admin/domains/${d.id}`)).data as DomainView;
      expect(after).toMatchObject({ dkim_pending_selector: null, dkim_ed25519_selector: "scaisend-ed2" });
      expect(after.dns_records.map((r) => [r.host, r.status])).toEqual([
        [`scaisend._domainkey.${sender}`, "required"],
        [`scaisend-ed2._domainkey.${sender}`, "required"],
        [sender, "required"],
        [`_dmarc.${sender}`, "required"],
        [sender, "required"],
        [`scaisend-ed1._domainkey.${sender}`, "retiring"],
      ]);
      // The retired record keeps its Ed25519 form, as published.
      expect(after.dns_records[5]!.value).toBe(rotated.dns_records[1]!.value);
      expect(await sendAndVerify(key, sender, composed)).toEqual(["pass:scaisend", "pass:scaisend-ed2"]);

      await new Promise((r) => setTimeout(r, OVERLAP_S * 1000 + 500));
      const later = (await call(key, "GET", `/api/admin/domains/${d.id}`)).data as DomainView;
      expect(later.dns_records[5]).toMatchObject({
        host: `scaisend-ed1._domainkey.${sender}`,
        status: "removable",
      });
      fx.dns.setRecords(zoneOf(later.dns_records, ["required"]));
      expect((await verify(key, d)).verified).toBe(true);
      expect(await sendAndVerify(key, sender, composed)).toEqual(["pass:scaisend", "pass:scaisend-ed2"]);
      // The next Ed25519 key takes a selector never used before, on either route.
      const next = (await call(key, "POST", `/api/admin/domains/${d.id}/dkim/ed25519`)).data as DomainView;
      expect(next.dkim_ed25519_selector).toBe("scaisend-ed3");
    } finally {
      origin.stop();
    }
  }, 90_000);

  it("refuses an Ed25519 rotation on a domain without an Ed25519 key (409)", async () => {
    const key = await tenantKey("RSA only");
    const d = (await call(key, "POST", "/api/admin/domains", { domain: "rsa.records.test" }))
      .data as DomainView;
    const res = await request(key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`, {
      algorithm: "ed25519",
    });
    expect(res).toEqual({
      status: 409,
      body: {
        detail: `rsa.records.test has no Ed25519 key to rotate: add one with POST /api/admin/domains/${d.id}/dkim/ed25519`,
      },
    });
    const after = (await call(key, "GET", `/api/admin/domains/${d.id}`)).data as DomainView;
    expect(after.dkim_pending_selector).toBeNull();
  }, 30_000);
});
