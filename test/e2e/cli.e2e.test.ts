/**
 * The `scaisend` CLI (bin/scaisend.mjs → scripts/cli.ts), run as a user runs it, against the edge
 * Worker in workerd (Miniflare) configured as in production: `domain verify` checks the records the
 * CLI printed over DNS-over-HTTPS, against a DNS server on loopback where the test publishes them.
 * Each command's effect is checked through the API. One edge for the file (starting one costs
 * a Worker bundle), through the CLI e2e harness (cli-harness.ts) with `edgeEnv: false`: the CLI gets
 * the edge and the operator token from `--edge` / `--admin-token`, or from the environment only in
 * the test that says so.
 */
import { afterAll, describe, expect, it } from "vitest";
import { startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";
import { useCliEdge } from "./cli-harness.ts";

let dns: TestDnsServer | undefined;
const cli = useCliEdge(undefined, {
  dirPrefix: "e2e-cli-",
  edgeEnv: false,
  // As in production: domains are verified over DNS-over-HTTPS (a resolver on loopback here).
  vars: async () => {
    dns = await startDnsServer({ records: {} });
    return { DNS_RESOLVER_URL: dns.dohUrl };
  },
});

afterAll(async () => {
  await dns?.close();
});

/** Runs `scaisend <args>` with Node 22 from node_modules/.bin, as `npx scaisend` would. */
const scaisend = (args: string[], env: Record<string, string> = {}) => cli.scaisend(args, undefined, { env });

interface Bootstrapped {
  tenantId: string;
  domainId: string;
  verified: boolean;
  liveKey: string;
  testKey: string;
  records: { type: string; host: string; value: string }[];
}

/** The records block `bootstrap` and `domain show` print: "  TXT  host\n       value". */
function parseRecords(stdout: string): Bootstrapped["records"] {
  const records: Bootstrapped["records"] = [];
  const lines = stdout.split("\n");
  for (let i = 0; i < lines.length - 1; i++) {
    const head = /^ {2}(\S+)\s+(\S+)$/.exec(lines[i]!);
    const value = /^ {7}(.+)$/.exec(lines[i + 1]!);
    if (head && value) records.push({ type: head[1]!, host: head[2]!, value: value[1]! });
  }
  return records;
}

function parseBootstrap(stdout: string): Bootstrapped {
  const field = (re: RegExp) => {
    const m = re.exec(stdout);
    if (!m) throw new Error(`bootstrap output lacks ${re}:\n${stdout}`);
    return m;
  };
  const domain = field(/^domain {3}(dom_\S+) \((\S+), verified: (true|false)\)$/m);
  return {
    tenantId: field(/^tenant {3}(tnt_\S+)$/m)[1]!,
    domainId: domain[1]!,
    verified: domain[3] === "true",
    liveKey: field(/^live key (sg_live_\S+)$/m)[1]!,
    testKey: field(/^test key (sg_test_\S+)$/m)[1]!,
    records: parseRecords(stdout),
  };
}

/** The edge as the tests call it: a send from `from`, and a GET, with a tenant's key. */
const edge = {
  get mf() {
    return cli.mf;
  },
  get adminToken() {
    return cli.adminToken;
  },
  send: (key: string, from: string) =>
    cli.api("POST", "/v3/mail/send", key, {
      personalizations: [{ to: [{ email: "someone@example.net" }] }],
      from: { email: from },
      subject: "from the CLI test",
      content: [{ type: "text/plain", value: "hello" }],
    }),
  get: (key: string, pathname: string) => cli.api("GET", pathname, key),
};

describe("scaisend without an edge", () => {
  it("prints its usage for --help or no command, and refuses an unknown command or a missing edge", async () => {
    for (const args of [[], ["--help"]]) {
      const r = await scaisend(args);
      expect(r.code).toBe(0);
      for (const command of ["bootstrap", "domain show", "domain verify", "key create"]) {
        expect(r.stdout).toContain(`scaisend ${command}`);
      }
    }
    const missing = await scaisend(["bootstrap", "--tenant", "Acme", "--domain", "acme.test"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--edge and --admin-token .* are required/);

    const unknown = await scaisend(["frobnicate", "--edge", "http://127.0.0.1:9", "--admin-token", "x"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });
});

describe("scaisend against a running edge", () => {
  let boot: Bootstrapped;
  const DOMAIN = "mail.cli.test";
  const flags = () => ["--edge", edge.mf.url, "--admin-token", edge.adminToken];

  it("bootstrap creates a tenant, a live and a test key that work, and an unverified sender domain with its records", async () => {
    const r = await scaisend([
      "bootstrap",
      ...flags(),
      "--tenant",
      "Acme",
      "--domain",
      DOMAIN,
      "--dmarc-policy",
      "quarantine",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    boot = parseBootstrap(r.stdout);
    expect(boot.verified).toBe(false);
    expect(boot.records.map((rec) => `${rec.type} ${rec.host}`)).toEqual([
      `TXT scaisend._domainkey.${DOMAIN}`,
      `TXT ${DOMAIN}`,
      `TXT _dmarc.${DOMAIN}`,
    ]);
    expect(boot.records[2]!.value).toBe("v=DMARC1; p=quarantine");

    // The test key sends (sandbox) at once; the live key is accepted as a key, and refused only
    // because the domain is not verified yet.
    const test = await edge.send(boot.testKey, `app@${DOMAIN}`);
    expect(test.status).toBe(202);
    const testMessage = await edge.get(boot.testKey, `/v3/messages/${test.body.message_id}`);
    expect(testMessage.body).toMatchObject({ mode: "sandbox", status: "sandbox" });
    const live = await edge.send(boot.liveKey, `app@${DOMAIN}`);
    expect(live.status).toBe(403);
    expect(live.body.errors[0].message).toMatch(/^Sender domain not verified/);

    // Both keys carry every permission: they can read the domain the CLI made.
    const domain = await edge.get(boot.liveKey, `/api/admin/domains/${boot.domainId}`);
    expect(domain.status).toBe(200);
    expect(domain.body.data).toMatchObject({ id: boot.domainId, domain: DOMAIN, verified: false });
  });

  it("domain show prints the records the edge holds for the domain", async () => {
    const r = await scaisend([
      "domain",
      "show",
      ...flags(),
      "--tenant",
      boot.tenantId,
      "--id",
      boot.domainId,
    ]);
    expect(r.code).toBe(0);
    const domain = await edge.get(boot.liveKey, `/api/admin/domains/${boot.domainId}`);
    const expected = (domain.body.data.dns_records as { type: string; host: string; value: string }[]).map(
      ({ type, host, value }) => ({ type, host, value }),
    );
    expect(parseRecords(r.stdout)).toEqual(expected);
    expect(r.stdout).toContain(`Publish these DNS records for ${DOMAIN}`);
  });

  it("domain verify fails, naming each missing record, until the printed records are published, then passes", async () => {
    const verify = ["domain", "verify", ...flags(), "--tenant", boot.tenantId, "--id", boot.domainId];
    const before = await scaisend(verify);
    expect(before.code).toBe(1);
    expect(before.stdout).toMatch(/^not verified$/m);
    for (const host of [`scaisend._domainkey.${DOMAIN}`, DOMAIN, `_dmarc.${DOMAIN}`]) {
      expect(before.stdout).toContain(`  ${host}: `);
    }

    // Publish exactly what the CLI printed.
    const zone: DnsZone = {};
    for (const rec of boot.records) ((zone[rec.host] ??= {}).TXT ??= []).push(rec.value);
    dns!.setRecords(zone);

    const after = await scaisend(verify);
    expect(after.stdout).toBe("verified\n");
    expect(after.code).toBe(0);
    const domain = await edge.get(boot.liveKey, `/api/admin/domains/${boot.domainId}`);
    expect(domain.body.data.verified).toBe(true);
    const live = await edge.send(boot.liveKey, `app@${DOMAIN}`);
    expect(live.status).toBe(202);
    const liveMessage = await edge.get(boot.liveKey, `/v3/messages/${live.body.message_id}`);
    expect(liveMessage.body).toMatchObject({ mode: "live", status: "queued" });
  });

  it("domain ed25519 add prints the Ed25519 record beside the RSA one, add again rotates its selector, remove ends dual signing", async () => {
    const ed = (verb: string) =>
      scaisend(["domain", "ed25519", verb, ...flags(), "--tenant", boot.tenantId, "--id", boot.domainId]);
    const added = await ed("add");
    expect(added.stderr).toBe("");
    expect(added.code).toBe(0);
    const edRecord = parseRecords(added.stdout).find((r) => r.value.includes("k=ed25519"));
    expect(edRecord?.host).toBe(`scaisend-ed1._domainkey.${DOMAIN}`);
    // RFC 8463 §4.2: the raw 32-byte public key, base64 (44 characters with padding).
    expect(edRecord?.value).toMatch(/^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    const view = await edge.get(boot.liveKey, `/api/admin/domains/${boot.domainId}`);
    expect(view.body.data).toMatchObject({ dkim_algorithm: "dual", dkim_ed25519_selector: "scaisend-ed1" });

    const rotated = await ed("add");
    expect(rotated.code).toBe(0);
    const next = parseRecords(rotated.stdout).find((r) => r.value.includes("k=ed25519"));
    expect(next?.host).toBe(`scaisend-ed2._domainkey.${DOMAIN}`);
    expect(next?.value).not.toBe(edRecord?.value);

    const removed = await ed("remove");
    expect(removed.code).toBe(0);
    expect(parseRecords(removed.stdout).some((r) => r.value.includes("k=ed25519"))).toBe(false);
    const after = await edge.get(boot.liveKey, `/api/admin/domains/${boot.domainId}`);
    expect(after.body.data.dkim_algorithm).toBe("rsa");
    // The RSA record the domain was verified with is untouched.
    expect(parseRecords(removed.stdout)[0]).toEqual(boot.records[0]);
  });

  it("key create prints a new key with the scopes asked for, and only those (edge and token from the environment)", async () => {
    const r = await scaisend(
      [
        "key",
        "create",
        "--tenant",
        boot.tenantId,
        "--name",
        "ci",
        "--environment",
        "test",
        "--scopes",
        "mail.send",
      ],
      { SCAISEND_EDGE_URL: edge.mf.url, SCAISEND_ADMIN_TOKEN: edge.adminToken },
    );
    expect(r.code).toBe(0);
    const key = /^(sg_test_\S+)$/m.exec(r.stdout)?.[1];
    expect(key, r.stdout).toBeDefined();
    expect(r.stdout).toContain("scopes: mail.send)");

    expect((await edge.send(key!, `app@${DOMAIN}`)).status).toBe(202);
    // No domains.read: the domain is not readable with it.
    expect((await edge.get(key!, `/api/admin/domains/${boot.domainId}`)).status).toBe(403);
  });

  it("exits 1 with the edge's answer when the operator token is wrong", async () => {
    const r = await scaisend([
      "domain",
      "show",
      "--edge",
      edge.mf.url,
      "--admin-token",
      "not-the-operator-token-0123456789abcdef",
      "--tenant",
      boot.tenantId,
      "--id",
      boot.domainId,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^scaisend: get domain failed: HTTP 401 /);
  });
});
