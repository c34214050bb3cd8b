/**
 * The SSRF guard's address rules and the WEBHOOK_ALLOW_PRIVATE setting (edge/src/services/webhook-ssrf.ts,
 * docs/api/webhooks.md#ssrf-guard): which addresses count as non-public, how IPv6 forms that carry an
 * IPv4 address are judged, and what the allowlist lets through.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig, type Bindings } from "../../edge/src/env.ts";
import {
  checkUrl,
  isNonPublic,
  parseAllowlist,
  parseIp,
  type Allowlist,
} from "../../edge/src/services/webhook-ssrf.ts";

const nonPublic = (s: string) => {
  const ip = parseIp(s);
  if (!ip) throw new Error(`not an address: ${s}`);
  return isNonPublic(ip);
};

describe("address rules", () => {
  it("refuses loopback, private, CGNAT, link-local, metadata, multicast and reserved ranges", () => {
    for (const a of [
      "127.0.0.1",
      "127.255.255.254",
      "10.0.0.0",
      "10.255.255.255",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.0.1",
      "169.254.169.254",
      "100.64.0.1",
      "100.100.100.200",
      "0.0.0.0",
      "224.0.0.1",
      "255.255.255.255",
      "198.18.0.1",
      "::",
      "::1",
      "fd00:ec2::254",
      "fc00::1",
      "fe80::1",
      "ff02::1",
      "::ffff:127.0.0.1",
      "::ffff:a9fe:a9fe",
      "64:ff9b::a00:1",
      "2002:c0a8:0101::1",
      "2001:db8::1",
    ]) {
      expect(nonPublic(a), a).toBe(true);
    }
  });

  it("lets public addresses through, including their mapped and 6to4 forms", () => {
    for (const a of [
      "93.184.216.34",
      "8.8.8.8",
      "172.32.0.1",
      "172.15.255.255",
      "100.128.0.1",
      "169.253.1.1",
      "2606:4700:4700::1111",
      "::ffff:8.8.8.8",
      "2002:0808:0808::1",
    ]) {
      expect(nonPublic(a), a).toBe(false);
    }
  });

  it("parses only well-formed addresses", () => {
    for (const bad of [
      "256.1.1.1",
      "1.2.3",
      "01.2.3.4",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "fe80::1%eth0",
      "g::1",
    ]) {
      expect(parseIp(bad), bad).toBeNull();
    }
    expect(parseIp("::ffff:10.0.0.1")).toEqual({ v6: true, bits: (0xffffn << 32n) | 0x0a000001n });
  });
});

describe("WEBHOOK_ALLOW_PRIVATE", () => {
  const resolve = async (h: string) =>
    ({ "box.lan": ["192.168.1.20"], "two.lan": ["192.168.1.20", "10.0.0.1"] })[h] ?? [];
  const guard = (allow: Allowlist) => ({ resolve, allow, allowHttpAnywhere: false });

  it("allows listed names, addresses and ranges, and nothing next to them", async () => {
    const allow = parseAllowlist("127.0.0.1, 192.168.1.0/24, hooks.internal") as Allowlist;
    await expect(checkUrl("http://127.0.0.1:9000/in", guard(allow))).resolves.toBeInstanceOf(URL);
    await expect(checkUrl("https://box.lan/in", guard(allow))).resolves.toBeInstanceOf(URL);
    await expect(checkUrl("http://hooks.internal/in", guard(allow))).resolves.toBeInstanceOf(URL);
    // Every non-public address of a name must be allowed, not just one.
    await expect(checkUrl("https://two.lan/in", guard(allow))).rejects.toThrow(/non-public/);
    await expect(checkUrl("http://127.0.0.2/in", guard(allow))).rejects.toThrow(/non-public/);
    await expect(checkUrl("https://192.168.2.1/in", guard(allow))).rejects.toThrow(/non-public/);
  });

  it("is checked at start-up: a bad entry is a configuration error", () => {
    const envWith = (v: string) => ({ ...env, WEBHOOK_ALLOW_PRIVATE: v }) as Bindings;
    expect(loadConfig(envWith("127.0.0.1,10.0.0.0/8,::1,receiver.test")).ok).toBe(true);
    for (const bad of ["10.0.0.0/33", "not a host", "1.2.3.4/x"]) {
      const r = loadConfig(envWith(bad));
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.problems.join()).toMatch(/WEBHOOK_ALLOW_PRIVATE/);
    }
  });
});
