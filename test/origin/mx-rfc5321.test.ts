import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MX_ERROR_CODES } from "../../origin/src/delivery/classify.ts";
import { createMxResolver, MxResolutionError } from "../../origin/src/smtp/mx.ts";
import { startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";

const ZONE: DnsZone = {
  "prio.test": {
    MX: [
      { preference: 20, exchange: "backup.prio.test" },
      { preference: 10, exchange: "primary.prio.test" },
    ],
  },
  "primary.prio.test": { A: ["192.0.2.10"], AAAA: ["2001:db8::10"], ttl: 120 },
  "backup.prio.test": { A: ["192.0.2.20"], ttl: 30 },
  "equal.test": {
    MX: [
      { preference: 10, exchange: "a.equal.test" },
      { preference: 10, exchange: "b.equal.test" },
      { preference: 10, exchange: "c.equal.test" },
    ],
  },
  "a.equal.test": { A: ["192.0.2.1"] },
  "b.equal.test": { A: ["192.0.2.2"] },
  "c.equal.test": { A: ["192.0.2.3"] },
  "implicit.test": { A: ["192.0.2.30"], TXT: ["v=spf1 -all"] },
  "nullmx.test": { MX: [{ preference: 0, exchange: "." }], A: ["192.0.2.40"] },
  "noaddress.test": { TXT: ["only text here"] },
  "dangling.test": { MX: [{ preference: 10, exchange: "missing.dangling.test" }] },
  "partial.test": {
    MX: [
      { preference: 5, exchange: "missing.partial.test" },
      { preference: 10, exchange: "ok.partial.test" },
    ],
  },
  "ok.partial.test": { A: ["192.0.2.50"] },
  "servfail.test": { servfail: true },
  // Non-public MX targets (issue 6, item 14).
  "loopback.test": { MX: [{ preference: 10, exchange: "mx.loopback.test" }] },
  "mx.loopback.test": { A: ["127.0.0.1"] },
  "metadata.test": { MX: [{ preference: 10, exchange: "mx.metadata.test" }] },
  "mx.metadata.test": { A: ["169.254.169.254"], AAAA: ["fd00:ec2::254"] },
  "mapped.test": { AAAA: ["::ffff:127.0.0.1"] },
  "mixed.test": {
    MX: [
      { preference: 5, exchange: "internal.mixed.test" },
      { preference: 10, exchange: "public.mixed.test" },
    ],
  },
  "internal.mixed.test": { A: ["10.1.2.3"] },
  "public.mixed.test": { A: ["10.9.9.9", "198.41.0.4"], AAAA: ["fe80::1", "2001:503:ba3e::2:30"] },
  "partly-down.test": {
    MX: [
      { preference: 5, exchange: "mx.partly-down.test" },
      { preference: 10, exchange: "broken.partly-down.test" },
    ],
  },
  "mx.partly-down.test": { A: ["192.168.1.1"] },
  "broken.partly-down.test": { servfail: true },
};

let dns: TestDnsServer;
beforeAll(async () => {
  dns = await startDnsServer({ records: ZONE });
});
afterAll(() => dns.close());

// The RFC 5737/3849 documentation addresses of this zone are not public either (address-policy.ts):
// the tests of RFC 5321 ordering allow them; the policy tests below use the default.
const resolverWith = (extra: Parameters<typeof createMxResolver>[0] = {}) =>
  createMxResolver({ servers: [dns.server], timeoutMs: 1_000, tries: 1, allowPrivate: true, ...extra });

async function mxError(promise: Promise<unknown>): Promise<MxResolutionError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MxResolutionError);
  return err as MxResolutionError;
}

describe("MX resolution per RFC 5321 §5.1", () => {
  it("sorts MX hosts by preference and resolves each to addresses, IPv4 first", async () => {
    const hosts = await resolverWith().resolve("prio.test");
    expect(hosts).toEqual([
      { exchange: "primary.prio.test", preference: 10, addresses: ["192.0.2.10", "2001:db8::10"] },
      { exchange: "backup.prio.test", preference: 20, addresses: ["192.0.2.20"] },
    ]);
  });

  it("normalizes case and a trailing dot in the domain", async () => {
    const hosts = await resolverWith().resolve("PRIO.test.");
    expect(hosts.map((h) => h.exchange)).toEqual(["primary.prio.test", "backup.prio.test"]);
  });

  it("shuffles hosts of equal preference (SHOULD pick one at random)", async () => {
    // A scripted random source: Fisher-Yates with random()=0 always swaps with the first slot.
    const zero = await resolverWith({ random: () => 0 }).resolve("equal.test");
    const high = await resolverWith({ random: () => 0.999 }).resolve("equal.test");
    expect(zero.map((h) => h.exchange)).toEqual(["b.equal.test", "c.equal.test", "a.equal.test"]);
    expect(high.map((h) => h.exchange)).toEqual(["a.equal.test", "b.equal.test", "c.equal.test"]);
    // And with the real Math.random, several orders show up.
    const resolver = resolverWith();
    const orders = new Set<string>();
    for (let i = 0; i < 30; i++)
      orders.add((await resolver.resolve("equal.test")).map((h) => h.exchange[0]).join(""));
    expect(orders.size).toBeGreaterThan(1);
  });

  it("falls back to the domain's own A/AAAA records when it has no MX (implicit MX)", async () => {
    expect(await resolverWith().resolve("implicit.test")).toEqual([
      { exchange: "implicit.test", preference: 0, addresses: ["192.0.2.30"] },
    ]);
  });

  it("null MX (RFC 7505) is a permanent failure even when A records exist", async () => {
    const err = await mxError(resolverWith().resolve("nullmx.test"));
    expect(err.code).toBe(MX_ERROR_CODES.nullMx);
    expect(err.permanent).toBe(true);
  });

  it("NXDOMAIN is a permanent failure", async () => {
    const err = await mxError(resolverWith().resolve("does-not-exist.test"));
    expect(err.code).toBe(MX_ERROR_CODES.nxDomain);
    expect(err.permanent).toBe(true);
  });

  it("a domain with neither MX nor A/AAAA is a permanent failure", async () => {
    const err = await mxError(resolverWith().resolve("noaddress.test"));
    expect(err.code).toBe(MX_ERROR_CODES.noAddress);
  });

  it("skips MX names without addresses and keeps the rest", async () => {
    expect((await resolverWith().resolve("partial.test")).map((h) => h.exchange)).toEqual([
      "ok.partial.test",
    ]);
  });

  it("MX names that all fail to resolve, and SERVFAIL, are temporary", async () => {
    expect((await mxError(resolverWith().resolve("dangling.test"))).code).toBe(MX_ERROR_CODES.temporary);
    const err = await mxError(resolverWith().resolve("servfail.test"));
    expect(err.code).toBe(MX_ERROR_CODES.temporary);
    expect(err.permanent).toBe(false);
  });

  it("a DNS server that does not answer is temporary", async () => {
    const resolver = createMxResolver({ servers: ["127.0.0.1:9"], timeoutMs: 200, tries: 1 });
    expect((await mxError(resolver.resolve("prio.test"))).code).toBe(MX_ERROR_CODES.temporary);
  });
});

describe("MX cache", () => {
  const countMx = (name: string) => dns.queries.filter((q) => q.name === name && q.type === "MX").length;

  it("reuses a lookup within the shortest address TTL and asks again after it", async () => {
    let clock = 1_000_000;
    const resolver = resolverWith({ now: () => clock, maxCacheTtlMs: 600_000 });
    const before = countMx("prio.test");
    await resolver.resolve("prio.test");
    await resolver.resolve("prio.test");
    expect(countMx("prio.test")).toBe(before + 1);
    clock += 29_000; // backup.prio.test has TTL 30 s
    await resolver.resolve("prio.test");
    expect(countMx("prio.test")).toBe(before + 1);
    clock += 2_000;
    await resolver.resolve("prio.test");
    expect(countMx("prio.test")).toBe(before + 2);
  });

  it("caps the cache lifetime by config and 0 disables it", async () => {
    let clock = 0;
    const capped = resolverWith({ now: () => clock, maxCacheTtlMs: 5_000 });
    const before = countMx("implicit.test");
    await capped.resolve("implicit.test");
    clock += 6_000; // the A TTL is 300 s, the cap wins
    await capped.resolve("implicit.test");
    expect(countMx("implicit.test")).toBe(before + 2);

    const uncached = resolverWith({ maxCacheTtlMs: 0 });
    await uncached.resolve("implicit.test");
    await uncached.resolve("implicit.test");
    expect(countMx("implicit.test")).toBe(before + 4);
  });

  it("does not cache failures", async () => {
    const resolver = resolverWith();
    const before = countMx("nullmx.test");
    await mxError(resolver.resolve("nullmx.test"));
    await mxError(resolver.resolve("nullmx.test"));
    expect(countMx("nullmx.test")).toBe(before + 2);
  });
});

describe("MX targets that are not public (issue 6, item 14)", () => {
  const strict = () => createMxResolver({ servers: [dns.server], timeoutMs: 1_000, tries: 1 });

  it("an MX resolving to 127.0.0.1 is refused by default → permanent, ENONPUBLICMX", async () => {
    const err = await mxError(strict().resolve("loopback.test"));
    expect(err.code).toBe(MX_ERROR_CODES.nonPublic);
    expect(err.permanent).toBe(true);
    expect(err.message).toContain("mx.loopback.test → 127.0.0.1 (loopback");
  });

  it("the cloud metadata addresses (169.254.169.254, fd00:ec2::254) are refused", async () => {
    const err = await mxError(strict().resolve("metadata.test"));
    expect(err.code).toBe(MX_ERROR_CODES.nonPublic);
    expect(err.message).toContain("169.254.169.254 (cloud instance metadata service)");
    expect(err.message).toContain("fd00:ec2::254 (cloud instance metadata service)");
  });

  it("an implicit MX whose AAAA is IPv4-mapped loopback (::ffff:127.0.0.1) is refused", async () => {
    const err = await mxError(strict().resolve("mapped.test"));
    expect(err.code).toBe(MX_ERROR_CODES.nonPublic);
    expect(err.message).toMatch(/mapped\.test → ::ffff:(127\.0\.0\.1|7f00:1) \(loopback/);
  });

  it("drops private addresses and hosts left without any, keeps the public ones", async () => {
    const hosts = await strict().resolve("mixed.test");
    expect(hosts).toEqual([
      { exchange: "public.mixed.test", preference: 10, addresses: ["198.41.0.4", "2001:503:ba3e::2:30"] },
    ]);
  });

  it("only private addresses plus a host that failed temporarily → temporary, not a bounce", async () => {
    const err = await mxError(strict().resolve("partly-down.test"));
    expect(err.code).toBe(MX_ERROR_CODES.temporary);
  });

  it("allowPrivate (ALLOW_PRIVATE_MX) keeps them", async () => {
    const hosts = await resolverWith().resolve("loopback.test");
    expect(hosts).toEqual([{ exchange: "mx.loopback.test", preference: 10, addresses: ["127.0.0.1"] }]);
    const mapped = await resolverWith().resolve("mapped.test");
    expect(mapped[0]?.addresses).toHaveLength(1);
  });
});
