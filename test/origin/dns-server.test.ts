// The loopback DNS server is itself test infrastructure the edge's DoH checks and the origin's
// MX code lean on, so it gets its own tests against Node's real resolver.
import { Resolver } from "node:dns/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitTxt, startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";

const longValue = `v=DKIM1; k=rsa; p=${"A".repeat(392)}`; // the length of a 2048-bit key record

const ZONE: DnsZone = {
  "example.com": {
    A: ["192.0.2.1"],
    AAAA: ["2001:db8::1"],
    MX: [{ preference: 10, exchange: "mx.example.com" }],
    TXT: ["v=spf1 -all"],
    ttl: 60,
  },
  "s1._domainkey.example.com": { TXT: [longValue] },
  "multi.example.com": { TXT: [["part one ", "part two"]] },
  "broken.example.com": { servfail: true },
};

let dns: TestDnsServer;
let resolver: Resolver;

beforeAll(async () => {
  dns = await startDnsServer({ records: ZONE });
  resolver = new Resolver({ timeout: 1_000, tries: 1 });
  resolver.setServers([dns.server]);
});
afterAll(() => dns.close());

describe("test DNS server over UDP/TCP", () => {
  it("answers A, AAAA and MX with TTLs", async () => {
    expect(await resolver.resolve4("example.com", { ttl: true })).toEqual([
      { address: "192.0.2.1", ttl: 60 },
    ]);
    expect(await resolver.resolve6("example.com")).toEqual(["2001:db8::1"]);
    expect(await resolver.resolveMx("example.com")).toEqual([{ exchange: "mx.example.com", priority: 10 }]);
  });

  it("splits a TXT value over 255 bytes into 255-byte character-strings", async () => {
    const [record] = await resolver.resolveTxt("s1._domainkey.example.com");
    expect(record?.map((s) => s.length)).toEqual([255, longValue.length - 255]);
    expect(record?.join("")).toBe(longValue);
    expect(splitTxt("x".repeat(600)).map((b) => b.length)).toEqual([255, 255, 90]);
  });

  it("answers records too big for a 512-byte UDP reply (truncation, then TCP or EDNS0)", async () => {
    const huge = "x".repeat(3000);
    dns.setRecords({ "huge.example.com": { TXT: [huge] } });
    try {
      expect((await resolver.resolveTxt("huge.example.com"))[0]?.join("")).toBe(huge);
    } finally {
      dns.setRecords(ZONE);
    }
  });

  it("keeps character-strings given explicitly", async () => {
    expect(await resolver.resolveTxt("multi.example.com")).toEqual([["part one ", "part two"]]);
  });

  it("NXDOMAIN for unknown names, NODATA for missing types, SERVFAIL on request", async () => {
    await expect(resolver.resolveMx("nope.example.com")).rejects.toMatchObject({ code: "ENOTFOUND" });
    await expect(resolver.resolveMx("s1._domainkey.example.com")).rejects.toMatchObject({ code: "ENODATA" });
    await expect(resolver.resolveMx("broken.example.com")).rejects.toMatchObject({ code: "ESERVFAIL" });
  });

  it("setRecords replaces the zone", async () => {
    dns.setRecords({ "new.example.com": { A: ["192.0.2.9"] } });
    try {
      expect(await resolver.resolve4("new.example.com")).toEqual(["192.0.2.9"]);
      await expect(resolver.resolve4("example.com")).rejects.toMatchObject({ code: "ENOTFOUND" });
    } finally {
      dns.setRecords(ZONE);
    }
  });
});

describe("test DNS server over DoH JSON", () => {
  const doh = async (name: string, type: string) => {
    const res = await fetch(`${dns.dohUrl}?name=${encodeURIComponent(name)}&type=${type}`);
    expect(res.headers.get("content-type")).toBe("application/dns-json");
    return (await res.json()) as {
      Status: number;
      Answer?: { name: string; type: number; TTL: number; data: string }[];
    };
  };

  it("quotes TXT data like Cloudflare, one quoted string per character-string", async () => {
    const body = await doh("s1._domainkey.example.com", "TXT");
    expect(body.Status).toBe(0);
    expect(body.Answer).toEqual([
      {
        name: "s1._domainkey.example.com",
        type: 16,
        TTL: 300,
        data: `"${longValue.slice(0, 255)}" "${longValue.slice(255)}"`,
      },
    ]);
  });

  it("accepts numeric types and formats MX data", async () => {
    const body = await doh("example.com", "15");
    expect(body.Answer).toEqual([{ name: "example.com", type: 15, TTL: 60, data: "10 mx.example.com." }]);
  });

  it("reports NXDOMAIN as Status 3 without answers", async () => {
    const body = await doh("nope.example.com", "TXT");
    expect(body.Status).toBe(3);
    expect(body.Answer).toBeUndefined();
  });
});
