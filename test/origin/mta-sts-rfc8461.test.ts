/**
 * MTA-STS policy discovery (RFC 8461 §3, §4.1, §5.1) in smtp/mta-sts.ts: the TXT record and policy
 * grammar as pure functions, then the resolver against a real DNS server and a real HTTPS policy
 * server on loopback, with a test CA the resolver is told to trust (as MTA_STS_CA_FILE does).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOriginConfig } from "../../origin/src/config.ts";
import {
  createMtaStsResolver,
  mxMatches,
  parsePolicy,
  parseStsRecord,
  selectStsRecord,
  type MtaStsResolver,
  type MtaStsResolverOptions,
} from "../../origin/src/smtp/mta-sts.ts";
import { startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";
import { startPolicyServer, type TestPolicyServer } from "../helpers/mta-sts-server.ts";
import { createSelfSignedCert } from "../helpers/smtp-servers.ts";
import { createTestCa, type TestCa } from "../helpers/tls-ca.ts";

const RFC_EXAMPLE = [
  "version: STSv1",
  "mode: enforce",
  "mx: mail.example.com",
  "mx: *.example.net",
  "mx: backupmx.example.com",
  "max_age: 604800",
].join("\r\n");

describe("RFC 8461 §3.1 TXT record", () => {
  it("the RFC's example record gives its id", () => {
    expect(parseStsRecord("v=STSv1; id=20160831085700Z;")).toEqual({ ok: true, value: "20160831085700Z" });
    expect(parseStsRecord("v=STSv1;id=abc")).toEqual({ ok: true, value: "abc" });
  });
  it("extensions are allowed, a repeated id keeps the first", () => {
    expect(parseStsRecord("v=STSv1; ext.a=x-1; id=one; id=two")).toEqual({ ok: true, value: "one" });
  });
  it.each([
    ["v=STSv2; id=1", "another version"],
    ["v=stsv1; id=1", "lower-case version"],
    ["v=STSv1; id=", "empty id"],
    ["v=STSv1; id=a_b", "id with an underscore"],
    ["v=STSv1; id=" + "a".repeat(33), "id longer than 32"],
    ["v=STSv1; foo=bar", "no id"],
    ["v=STSv1; ; id=1", "empty field"],
    ["v=STSv1; id=1; bad", "field without ="],
  ])("%s is refused (%s)", (record) => {
    expect(parseStsRecord(record).ok).toBe(false);
  });
  it("records not starting with v=STSv1; are discarded first; two usable ones mean none", () => {
    expect(selectStsRecord([["v=spf1 -all"], ["v=STSv1; ", "id=split"]])).toEqual({
      ok: true,
      value: "split",
    });
    expect(selectStsRecord([["v=STSv1; id=a"], ["v=STSv1; id=b"]]).ok).toBe(false);
    expect(selectStsRecord([]).ok).toBe(false);
  });
});

describe("RFC 8461 §3.2 policy", () => {
  it("parses the RFC's example (CRLF line ends)", () => {
    expect(parsePolicy(RFC_EXAMPLE)).toEqual({
      ok: true,
      value: {
        mode: "enforce",
        mx: ["mail.example.com", "*.example.net", "backupmx.example.com"],
        maxAgeS: 604800,
      },
    });
  });
  it("LF line ends, a trailing newline, blank lines and unknown fields are fine; repeats keep the first", () => {
    const parsed = parsePolicy(
      "version: STSv1\nmode: testing\n\nmode: enforce\nmx: MX.Example.COM.\nfoo_bar: a=b;c\nmax_age:86400\n",
    );
    expect(parsed).toEqual({ ok: true, value: { mode: "testing", mx: ["mx.example.com"], maxAgeS: 86400 } });
  });
  it("mode none needs no mx; max_age above a year is capped to one", () => {
    expect(parsePolicy("version: STSv1\nmode: none\nmax_age: 99999999999".slice(0, -1))).toEqual({
      ok: true,
      value: { mode: "none", mx: [], maxAgeS: 31_557_600 },
    });
  });
  it.each([
    ["version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1", "version"],
    ["mode: enforce\nmx: a.example\nmax_age: 1", "version"],
    ["version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1", "mode"],
    ["version: STSv1\nMode: enforce\nmx: a.example\nmax_age: 1", "mode"],
    ["version: STSv1\nmode: enforce\nmax_age: 1", "mx"],
    ["version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d", "max_age"],
    ["version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901", "max_age"],
    ["version: STSv1\nmode: enforce\nmx: a.example", "max_age"],
    ["version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1", "mx"],
    ["version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1", "mx"],
    ["version: STSv1\nmode: enforce\nmx: -a.example\nmax_age: 1", "mx"],
    ["version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n<html>", "malformed line"],
    ["<html><body>Not found</body></html>", "malformed line"],
  ])("refused: %j (%s)", (body, what) => {
    const parsed = parsePolicy(body);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toContain(what);
  });
});

describe("parsers on hostile input (seeded fuzz)", () => {
  // Bodies and records come from the recipient domain: whatever they hold, parsing returns a
  // verdict and never throws, and whatever it accepts satisfies the grammar's guarantees.
  let seed = 0x5eed;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const names = ["version", "mode", "mx", "max_age", "foo_bar", "Mode", "", "x y"];
  const delims = [": ", ":", ":\t", " : ", ""];
  const values = [
    "STSv1",
    "enforce",
    "testing",
    "none",
    "mx.example.test",
    "*.example.test",
    "*.*.x",
    "a..b",
    "86400",
    "99999999999",
    "-1",
    "é",
    "",
    "x y",
    "\u0000",
    "v=STSv1;",
  ];
  const policyText = () =>
    Array.from(
      { length: 1 + Math.floor(random() * 8) },
      () => `${pick(names)}${pick(delims)}${pick(values)}`,
    ).join(pick(["\n", "\r\n"]));
  const recordText = () =>
    [
      "v=STSv1",
      ...(random() < 0.5 ? ["id=X1"] : []),
      ...Array.from(
        { length: Math.floor(random() * 4) },
        () => `${pick(["id", "ext", "", "i d"])}=${pick(["abc", "", "a_b", "X1", "é", "=;"])}`,
      ),
    ].join(pick(["; ", ";", " ; "]));
  it("10,000 random policies and TXT records: no throw; accepted ones are well formed", () => {
    let accepted = 0;
    let acceptedRecords = 0;
    for (let i = 0; i < 10_000; i++) {
      const text =
        i % 2 === 0
          ? `version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 1\n${policyText()}`
          : policyText();
      const policy = parsePolicy(text);
      if (policy.ok) {
        accepted++;
        expect(["enforce", "testing", "none"]).toContain(policy.value.mode);
        expect(policy.value.maxAgeS).toBeLessThanOrEqual(31_557_600);
        if (policy.value.mode !== "none") expect(policy.value.mx.length).toBeGreaterThan(0);
        for (const mx of policy.value.mx) expect(mx).toMatch(/^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$/);
      }
      const record = parseStsRecord(recordText());
      if (record.ok) {
        acceptedRecords++;
        expect(record.value).toMatch(/^[A-Za-z0-9]{1,32}$/);
      }
    }
    // The checks above ran on real acceptances, not only on refusals.
    expect(accepted).toBeGreaterThan(50);
    expect(acceptedRecords).toBeGreaterThan(50);
  });
});

describe("RFC 8461 §4.1 MX patterns", () => {
  const patterns = ["mail.example.com", "*.example.net"];
  it.each([
    ["mail.example.com", true],
    ["MAIL.example.com.", true],
    ["mx1.example.net", true],
    ["example.net", false],
    ["a.mx1.example.net", false],
    ["other.example.com", false],
    ["*.example.net", false],
  ])("%s → %s", (host, expected) => {
    expect(mxMatches(host, patterns)).toBe(expected);
  });
});

describe("MTA_STS settings", () => {
  const base = {
    EDGE_URL: "https://edge.example",
    ORIGIN_TOKEN: "t".repeat(32),
    VERP_SECRET: "v".repeat(32),
  };
  it("on by default, off with MTA_STS=false; MTA_STS_CA_FILE is optional", () => {
    expect(loadOriginConfig(base).MTA_STS).toBe(true);
    expect(loadOriginConfig(base).MTA_STS_CA_FILE).toBeUndefined();
    expect(loadOriginConfig({ ...base, MTA_STS: "false", MTA_STS_CA_FILE: "/etc/ca.pem" })).toMatchObject({
      MTA_STS: false,
      MTA_STS_CA_FILE: "/etc/ca.pem",
    });
    expect(() => loadOriginConfig({ ...base, MTA_STS: "maybe" })).toThrow(/MTA_STS/);
  });
});

// ---------------------------------------------------------------------------------------------
// The resolver against real servers.

const DOMAINS = [
  "good.test",
  "cached.test",
  "changes.test",
  "expires.test",
  "vanishes.test",
  "broken.test",
  "redirect.test",
  "html.test",
  "huge.test",
  "hangs.test",
  "twice.test",
  "private.test",
  "keeps.test",
  "many.test",
  "none.test",
];
const txt = (id: string) => ({ TXT: [`v=STSv1; id=${id};`] });
const policyHost = (domain: string) => ({ [`mta-sts.${domain}`]: { A: ["127.0.0.1"] } });
const ENFORCE = "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n";

let ca: TestCa;
let dns: TestDnsServer;
let https: TestPolicyServer;
let selfSigned: TestPolicyServer;
const resolvers: MtaStsResolver[] = [];
const zone: DnsZone = {};

beforeAll(async () => {
  ca = createTestCa();
  https = await startPolicyServer(
    ca.issue([...DOMAINS.map((d) => `mta-sts.${d}`), "mta-sts.untrusted.test"]),
  );
  selfSigned = await startPolicyServer(createSelfSignedCert("mta-sts.untrusted.test"));
  for (const domain of DOMAINS)
    Object.assign(zone, { [`_mta-sts.${domain}`]: txt("v1") }, policyHost(domain));
  Object.assign(zone, { "_mta-sts.untrusted.test": txt("v1") }, policyHost("untrusted.test"));
  zone["_mta-sts.twice.test"] = { TXT: ["v=STSv1; id=a;", "v=STSv1; id=b;"] };
  zone["_mta-sts.none.test"] = { TXT: ["v=spf1 -all"] };
  dns = await startDnsServer({ records: zone });
  for (const domain of DOMAINS) https.set(`mta-sts.${domain}`, { body: ENFORCE });
  https.set("mta-sts.untrusted.test", { body: ENFORCE });
  selfSigned.set("mta-sts.untrusted.test", { body: ENFORCE });
});
afterAll(async () => {
  for (const r of resolvers) r.close();
  await Promise.all([https.close(), selfSigned.close(), dns.close()]);
  ca.dispose();
});

function resolverFor(extra: Partial<MtaStsResolverOptions> = {}): MtaStsResolver {
  const resolver = createMtaStsResolver({
    servers: [dns.server],
    allowPrivate: true, // the policy hosts are on loopback here
    ca: ca.cert,
    port: https.port,
    fetchTimeoutMs: 2_000,
    ...extra,
  });
  resolvers.push(resolver);
  return resolver;
}
const fetchesOf = (server: TestPolicyServer, domain: string) =>
  server.requests.filter((r) => r.host === `mta-sts.${domain}`).length;
const txtQueries = (domain: string) =>
  dns.queries.filter((q) => q.name === `_mta-sts.${domain}` && q.type === "TXT").length;

describe("policy discovery against DNS and HTTPS on loopback", () => {
  it("fetches the policy named by the TXT record from https://mta-sts.<domain>/.well-known/mta-sts.txt", async () => {
    const policy = await resolverFor().policyFor("Good.Test.");
    expect(policy).toEqual({
      domain: "good.test",
      id: "v1",
      mode: "enforce",
      mx: ["mx.example.test"],
      maxAgeS: 86400,
    });
    expect(https.requests.filter((r) => r.host === "mta-sts.good.test")).toEqual([
      { host: "mta-sts.good.test", path: "/.well-known/mta-sts.txt" },
    ]);
  });

  it("a domain without a TXT record has no policy, and nothing is fetched", async () => {
    expect(await resolverFor().policyFor("nothing-here.test")).toBeNull();
    expect(fetchesOf(https, "nothing-here.test")).toBe(0);
  });

  it("within the recheck interval neither DNS nor HTTPS is asked again; after it, the same id is not re-fetched", async () => {
    let clock = 1_000_000;
    const resolver = resolverFor({ recheckMs: 60_000, now: () => clock });
    await resolver.policyFor("cached.test");
    const queries = txtQueries("cached.test");
    await resolver.policyFor("cached.test");
    expect(txtQueries("cached.test")).toBe(queries);
    clock += 61_000;
    expect(await resolver.policyFor("cached.test")).toMatchObject({ id: "v1", mode: "enforce" });
    expect(txtQueries("cached.test")).toBe(queries + 1); // id checked again…
    expect(fetchesOf(https, "cached.test")).toBe(1); // …but unchanged, so the cached policy is used
  });

  it("a new id in DNS fetches the policy again (RFC 8461 §5.1)", async () => {
    const resolver = resolverFor({ recheckMs: 0 });
    expect(await resolver.policyFor("changes.test")).toMatchObject({ id: "v1", mode: "enforce" });
    https.set("mta-sts.changes.test", { body: ENFORCE.replace("enforce", "testing") });
    expect(await resolver.policyFor("changes.test")).toMatchObject({ id: "v1", mode: "enforce" }); // same id: cached
    dns.setRecords({ ...zone, "_mta-sts.changes.test": txt("v2") });
    try {
      expect(await resolver.policyFor("changes.test")).toMatchObject({ id: "v2", mode: "testing" });
      expect(fetchesOf(https, "changes.test")).toBe(2);
    } finally {
      dns.setRecords(zone);
    }
  });

  it("a policy past its max_age is fetched again even under the same id", async () => {
    let clock = 5_000_000;
    https.set("mta-sts.expires.test", { body: ENFORCE.replace("86400", "60") });
    const resolver = resolverFor({ recheckMs: 0, now: () => clock });
    expect(await resolver.policyFor("expires.test")).toMatchObject({ maxAgeS: 60 });
    clock += 30_000;
    await resolver.policyFor("expires.test");
    expect(fetchesOf(https, "expires.test")).toBe(1);
    clock += 31_000;
    await resolver.policyFor("expires.test");
    expect(fetchesOf(https, "expires.test")).toBe(2);
  });

  it("a cached policy still applies when the TXT record disappears, until it expires (RFC 8461 §5.1)", async () => {
    let clock = 9_000_000;
    const resolver = resolverFor({ recheckMs: 0, now: () => clock });
    expect(await resolver.policyFor("vanishes.test")).toMatchObject({ mode: "enforce" });
    const { ["_mta-sts.vanishes.test"]: _gone, ...without } = zone;
    dns.setRecords(without);
    try {
      expect(await resolver.policyFor("vanishes.test")).toMatchObject({ mode: "enforce", id: "v1" });
      clock += 86_401_000;
      expect(await resolver.policyFor("vanishes.test")).toBeNull();
    } finally {
      dns.setRecords(zone);
    }
  });

  it("a new id whose policy cannot be fetched keeps the cached policy", async () => {
    const resolver = resolverFor({ recheckMs: 0 });
    expect(await resolver.policyFor("keeps.test")).toMatchObject({ id: "v1", mode: "enforce" });
    dns.setRecords({ ...zone, "_mta-sts.keeps.test": txt("v2") });
    https.set("mta-sts.keeps.test", { status: 500, body: "oops" });
    try {
      expect(await resolver.policyFor("keeps.test")).toMatchObject({ id: "v1", mode: "enforce" });
      expect(fetchesOf(https, "keeps.test")).toBe(2);
    } finally {
      dns.setRecords(zone);
      https.set("mta-sts.keeps.test", { body: ENFORCE });
    }
  });

  it("a malformed policy is no policy (RFC 8461 §3.3: continue as though there were none)", async () => {
    https.set("mta-sts.broken.test", { body: "version: STSv1\nmode: enforce\nmax_age: 86400\n" }); // no mx
    const logs: string[] = [];
    const resolver = resolverFor({
      log: (_level, message, fields) => logs.push(`${message} ${JSON.stringify(fields)}`),
    });
    expect(await resolver.policyFor("broken.test")).toBeNull();
    expect(fetchesOf(https, "broken.test")).toBe(1);
    expect(logs.join("\n")).toMatch(/MTA-STS policy fetch failed.*no mx field/);
  });

  it.each([
    [
      "redirect.test",
      { status: 301, headers: { location: "https://mta-sts.good.test/.well-known/mta-sts.txt" }, body: "" },
      /HTTP 301/,
    ],
    ["html.test", { contentType: "text/html", body: ENFORCE }, /not text\/plain/],
    ["huge.test", { body: ENFORCE + `x-pad: ${"a".repeat(70_000)}\n` }, /larger than 65536/],
  ])("%s: refused", async (domain, answer, reason) => {
    https.set(`mta-sts.${domain}`, answer);
    const goodBefore = fetchesOf(https, "good.test");
    const logs: string[] = [];
    const resolver = resolverFor({
      log: (_level, message, fields) => logs.push(`${message} ${JSON.stringify(fields)}`),
    });
    expect(await resolver.policyFor(domain)).toBeNull();
    expect(logs.join("\n")).toMatch(reason);
    // A redirect is not followed: the host it points at is not asked.
    expect(fetchesOf(https, "good.test")).toBe(goodBefore);
    expect(fetchesOf(https, domain)).toBe(1);
  });

  it("a policy host whose certificate does not chain to a trusted root is not believed", async () => {
    const resolver = resolverFor({ port: selfSigned.port });
    expect(await resolver.policyFor("untrusted.test")).toBeNull();
    expect(fetchesOf(selfSigned, "untrusted.test")).toBe(0); // the TLS handshake was refused first
    // The control: the same policy from a server whose certificate the test CA issued is taken.
    expect(await resolverFor().policyFor("untrusted.test")).toMatchObject({ mode: "enforce" });
  });

  it("a fetch that never answers ends at the fetch timeout with no policy", async () => {
    https.set("mta-sts.hangs.test", { hang: true });
    const resolver = resolverFor({ fetchTimeoutMs: 300 });
    expect(await resolver.policyFor("hangs.test")).toBeNull();
    expect(fetchesOf(https, "hangs.test")).toBe(1);
  });

  it("close() ends a fetch in progress at once (a drain does not wait out the fetch timeout)", async () => {
    https.set("mta-sts.hangs.test", { hang: true });
    const resolver = resolverFor({ fetchTimeoutMs: 60_000 });
    const before = fetchesOf(https, "hangs.test");
    const pending = resolver.policyFor("hangs.test");
    // A deterministic signal that the request is at the server, not a sleep.
    await expect.poll(() => fetchesOf(https, "hangs.test"), { timeout: 5_000 }).toBe(before + 1);
    resolver.close();
    // Without close() ending it, this would wait for the 60 s fetch timeout, past the test's own.
    expect(await pending).toBeNull();
  });

  it("two v=STSv1 records, or none among other TXT records, mean no policy and no fetch", async () => {
    const resolver = resolverFor();
    expect(await resolver.policyFor("twice.test")).toBeNull();
    expect(await resolver.policyFor("none.test")).toBeNull();
    expect(fetchesOf(https, "twice.test") + fetchesOf(https, "none.test")).toBe(0);
  });

  it("a policy host on a non-public address is not fetched unless private addresses are allowed (SSRF)", async () => {
    const logs: string[] = [];
    const guarded = resolverFor({
      allowPrivate: false,
      log: (_l, m, f) => logs.push(`${m} ${JSON.stringify(f)}`),
    });
    expect(await guarded.policyFor("private.test")).toBeNull();
    expect(fetchesOf(https, "private.test")).toBe(0);
    expect(logs.join("\n")).toMatch(/not public.*127\.0\.0\.1 \(loopback/);
    expect(await resolverFor().policyFor("private.test")).toMatchObject({ mode: "enforce" }); // control
  });

  it("concurrent look-ups for one domain share one DNS query and one fetch; the cache is bounded", async () => {
    const resolver = resolverFor({ maxEntries: 2 });
    const before = txtQueries("many.test");
    const all = await Promise.all(Array.from({ length: 5 }, () => resolver.policyFor("many.test")));
    expect(all.every((p) => p?.mode === "enforce")).toBe(true);
    expect(fetchesOf(https, "many.test")).toBe(1);
    expect(txtQueries("many.test") - before).toBe(1);
    await resolver.policyFor("good.test");
    await resolver.policyFor("cached.test");
    expect(resolver.size()).toBe(2);
  });
});
