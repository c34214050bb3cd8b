/**
 * The `scaisend` CLI's tenants, keys and domains commands (bin/scaisend.mjs → scripts/cli.ts), run
 * as a user runs them against the edge Worker in workerd (Miniflare), with a DNS server on loopback
 * answering the edge's DNS-over-HTTPS lookups. Each command's effect is checked through the API;
 * `--json` output is parsed; failures print the server's reason and exit non-zero. The edge and the
 * runs are the CLI e2e harness's (cli-harness.ts): the edge's URL and the operator token in the
 * environment, as an operator sets them.
 */
import { afterAll, describe, expect, it } from "vitest";
import { startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";
import { useCliEdge } from "./cli-harness.ts";

let dns: TestDnsServer | undefined;
const cli = useCliEdge(undefined, {
  dirPrefix: "e2e-cli-admin-",
  vars: async () => {
    dns = await startDnsServer({});
    return { DNS_RESOLVER_URL: dns.dohUrl };
  },
});

afterAll(async () => {
  await dns?.close();
});

/** `scaisend <args>` with the edge and operator token in the environment, and `env` over them. */
const scaisend = (args: string[], env?: Record<string, string>) =>
  cli.scaisend(args, undefined, env ? { env } : {});
const json = (args: string[], env?: Record<string, string>) => cli.json(args, undefined, env ? { env } : {});

describe("scaisend tenants / keys / domains", () => {
  it("creates, lists, shows and suspends tenants", async () => {
    const created = await json(["tenants", "create", "--name", "Cli Tenant"]);
    expect(created.id).toMatch(/^tnt_/);
    const text = await scaisend(["tenants", "list"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^${created.id} +active +Cli Tenant$`, "m"));
    expect((await json(["tenants", "show", "--tenant", created.id])).name).toBe("Cli Tenant");
    expect((await json(["tenants", "suspend", "--tenant", created.id])).status).toBe("suspended");
    expect((await json(["tenants", "show", "--tenant", created.id])).status).toBe("suspended");
    expect((await json(["tenants", "resume", "--tenant", created.id])).status).toBe("active");
    const missing = await scaisend(["tenants", "show", "--tenant", "tnt_00000000000000000000000000"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^scaisend: get tenant failed: HTTP 404 /);
  });

  it("creates keys with the operator token, lists and revokes them with a tenant key", async () => {
    const t = await json(["tenants", "create", "--name", "Keys"]);
    const admin = await json([
      "keys",
      "create",
      "--tenant",
      t.id,
      "--name",
      "admin",
      "--scopes",
      "admin.api_keys",
    ]);
    expect(admin.api_key).toMatch(/^sg_live_/);
    const other = await json(["keys", "create", "--tenant", t.id, "--name", "ci", "--environment", "test"]);
    const list = await json(["keys", "list"], { SCAISEND_API_KEY: admin.api_key });
    expect(list.map((k: { name: string }) => k.name).sort()).toEqual(["admin", "ci"]);
    const revoked = await scaisend(["keys", "revoke", "--id", other.id, "--api-key", admin.api_key]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout.trim()).toBe(`revoked ${other.id}`);
    const after = await json(["keys", "list"], { SCAISEND_API_KEY: admin.api_key });
    expect(after.map((k: { name: string }) => k.name)).toEqual(["admin"]);
    // Without a tenant key the command says what it needs.
    const none = await scaisend(["keys", "list"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/needs a tenant API key with admin.api_keys: --api-key or SCAISEND_API_KEY/);
  });

  it("lists, shows, verifies, rotates and deletes domains", async () => {
    const t = await json(["tenants", "create", "--name", "Domains"]);
    const boot = await scaisend(["domains", "list", "--tenant", t.id, "--json"]);
    expect(JSON.parse(boot.stdout)).toEqual([]);
    // Created through the API (bootstrap creates tenants too); then everything through the CLI.
    const res = await cli.api("POST", "/api/admin/domains", cli.adminToken, {
      domain: "cli.rotate.test",
      tenant_id: t.id,
    });
    const d = (res.body as { data: { id: string } }).data;
    const listed = await json(["domains", "list", "--tenant", t.id]);
    expect(listed.map((x: { id: string }) => x.id)).toEqual([d.id]);

    const shown = await json(["domains", "show", "--tenant", t.id, "--id", d.id]);
    const failing = await scaisend(["domains", "verify", "--tenant", t.id, "--id", d.id]);
    expect(failing.code).toBe(1);
    expect(failing.stdout).toContain("not verified");
    expect(failing.stdout).toContain(
      "scaisend._domainkey.cli.rotate.test: scaisend._domainkey.cli.rotate.test does not exist (NXDOMAIN): no DKIM record found",
    );
    expect(failing.stdout).toMatch(/^ {4}expected: v=DKIM1; k=rsa; p=/m);

    const zone: DnsZone = {};
    for (const r of shown.dns_records) ((zone[r.host] ??= { TXT: [] }).TXT as string[]).push(r.value);
    dns!.setRecords(zone);
    const ok = await scaisend(["domains", "verify", "--tenant", t.id, "--id", d.id]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout.trim()).toBe("verified");

    const rotated = await scaisend(["domains", "rotate-dkim", "--tenant", t.id, "--id", d.id]);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toContain("scaisend2._domainkey.cli.rotate.test");
    expect(rotated.stdout).toContain(
      '(scaisend2._domainkey.cli.rotate.test is a new DKIM key: it signs once "domain verify" finds it)',
    );
    const pending = await json(["domains", "show", "--tenant", t.id, "--id", d.id]);
    expect(pending.dkim_pending_selector).toBe("scaisend2");
    // Publish the new key's record beside the others.
    const next = pending.dns_records.find((r: { status: string }) => r.status === "pending");
    (zone[next.host] ??= { TXT: [] }).TXT!.push(next.value);
    dns!.setRecords(zone);
    const switched = await scaisend(["domains", "verify", "--tenant", t.id, "--id", d.id]);
    expect(switched.stdout).toContain("signing switched to the new DKIM key (scaisend2)");
    // --dkim picks the key to rotate: rsa (the default) or ed25519, which an RSA-only domain lacks.
    const rotateWith = (dkim: string) =>
      scaisend(["domains", "rotate-dkim", "--tenant", t.id, "--id", d.id, "--dkim", dkim]);
    const badAlgorithm = await rotateWith("dsa");
    expect(badAlgorithm.code).toBe(1);
    expect(badAlgorithm.stderr).toMatch(/--dkim for "domains rotate-dkim" is rsa or ed25519, not "dsa"/);
    const noEd25519 = await rotateWith("ed25519");
    expect(noEd25519.code).toBe(1);
    expect(noEd25519.stderr).toMatch(
      /^scaisend: rotate DKIM key failed: HTTP 409 cli\.rotate\.test has no Ed25519 key to rotate/,
    );

    // Another tenant's id, and a missing one: the server's reason, exit 1.
    const other = await json(["tenants", "create", "--name", "Other"]);
    const foreign = await scaisend(["domains", "delete", "--tenant", other.id, "--id", d.id]);
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toMatch(/^scaisend: delete domain failed: HTTP 404 Domain not found/);
    const missingId = await scaisend(["domains", "show", "--tenant", t.id]);
    expect(missingId.code).toBe(1);
    expect(missingId.stderr).toMatch(/--id is required for "domains show"/);

    const deleted = await scaisend(["domains", "delete", "--tenant", t.id, "--id", d.id]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(await json(["domains", "list", "--tenant", t.id])).toEqual([]);
  });
});
