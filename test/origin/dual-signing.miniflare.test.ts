/**
 * Dual signing end to end, with the real Worker in workerd (Miniflare, scripts/lib/miniflare-edge.ts)
 * and the origin's real EdgeLink, JobRunner and composeMessage: a domain created with
 * `dkim_algorithm: "dual"` gets its keys at the edge; the records the API lists are published in a
 * DNS server on loopback, which the edge verifies them against over DNS-over-HTTPS and the
 * receiver side (mailauth through real UDP/TCP DNS, and python3-dkim) checks the signatures with.
 * Only the SMTP hop is left out: `deliver` composes the message the engine would send and keeps it.
 */
import fs from "node:fs";
import path from "node:path";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { describe, expect, it } from "vitest";
import { dkimpyVerdicts } from "../helpers/python-dkim.ts";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { useDomainEdge } from "../helpers/domain-edge.ts";

const SENDER = "dual.link.test";

const fx = useDomainEdge("dual-miniflare", {});
const { secrets, call, startOrigin } = fx;

interface DomainView {
  id: string;
  verified: boolean;
  dkim_algorithm: string;
  dkim_ed25519_selector: string | null;
  dkim_ed25519_verified_at: string | null;
  dns_records: { purpose: string; host: string; value: string }[];
}

describe("dual signing through the edge (Miniflare)", () => {
  it("keys made at the edge, records verified over DoH, both signatures on the delivered message verify", async () => {
    const tenant = (await call(secrets.ADMIN_TOKEN, "POST", "/api/admin/tenants", { name: "Dual" })).data;
    const key = (
      await call(secrets.ADMIN_TOKEN, "POST", `/api/admin/tenants/${tenant.id}/api_keys`, {
        name: "dual",
        environment: "live",
        scopes: ["mail.send", "domains.read", "domains.write"],
      })
    ).data.api_key as string;
    const d = (await call(key, "POST", "/api/admin/domains", { domain: SENDER, dkim_algorithm: "dual" }))
      .data as DomainView;
    expect(d).toMatchObject({
      verified: false,
      dkim_algorithm: "dual",
      dkim_ed25519_selector: "scaisend-ed1",
    });

    // Publish exactly what the API says to publish.
    const zone: Record<string, { TXT: string[] }> = {};
    for (const r of d.dns_records) (zone[r.host] ??= { TXT: [] }).TXT.push(r.value);
    fx.dns.setRecords(zone);
    const verify = (await call(key, "POST", `/api/admin/domains/${d.id}/verify`)).data;
    expect(verify.verified, JSON.stringify(verify)).toBe(true);
    expect(verify.checks.map((c: { host: string; ok: boolean }) => [c.host, c.ok])).toEqual([
      [`scaisend._domainkey.${SENDER}`, true],
      [`scaisend-ed1._domainkey.${SENDER}`, true],
      [SENDER, true],
      [`_dmarc.${SENDER}`, true],
    ]);

    const composed = new Map<string, Buffer>();
    const origin = startOrigin(composed);
    try {
      const sent = await call(key, "POST", "/v3/mail/send", {
        personalizations: [{ to: [{ email: "rcpt@example.net" }] }],
        from: { email: `app@${SENDER}` },
        subject: "Dual",
        content: [{ type: "text/plain", value: "Signed twice." }],
      });
      const id = sent.message_id as string;
      const deadline = Date.now() + 30_000;
      let status = "";
      while (Date.now() < deadline) {
        status = (await call(key, "GET", `/v3/messages/${id}`)).status;
        if (status === "delivered") break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe("delivered");
      const raw = composed.get(id)!;
      // Unfolded: MailComposer folds a header line past 76 characters (RFC 5322 §2.2.3).
      const head = raw
        .subarray(0, raw.indexOf("\r\n\r\n"))
        .toString("latin1")
        .replace(/\r\n[ \t]+/g, " ");
      expect(head).toMatch(
        new RegExp(
          `^Feedback-ID: +${tenant.id}:${SENDER.replace(/\./g, "\\.")}:transactional:scaisend$`,
          "m",
        ),
      );

      const { results } = await dkimVerify(raw, { strict: true, resolver: mailauthResolver(fx.dns.server) });
      expect(results.map((r) => [r.status.result, r.selector, r.status.aligned])).toEqual([
        ["pass", "scaisend", SENDER],
        ["pass", "scaisend-ed1", SENDER],
      ]);
      const file = path.join(fx.workDir, "dual.eml");
      fs.writeFileSync(file, raw);
      const records = Object.fromEntries(d.dns_records.map((r) => [r.host, r.value]));
      expect(dkimpyVerdicts([file], records)[file]).toEqual([true, true]);
    } finally {
      origin.stop();
    }
  }, 60_000);
});
