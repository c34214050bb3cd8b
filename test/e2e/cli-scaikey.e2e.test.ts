/**
 * `scaisend register` and `scaisend sync --full` (docs/scaikey.md) as an operator runs them: the real
 * CLI (bin/scaisend.mjs) against the edge Worker in workerd (Miniflare) and a fake ScaiKey on
 * loopback (test/helpers/fake-scaikey.ts: discovery, RFC 7591 registration, webhook subscriptions,
 * paged listings of a few hundred records). Checked through the admin API: the registration is
 * stored (secrets sealed, never shown), re-running changes nothing, the subscription's secret
 * verifies ScaiKey's own webhook delivery, a full sync mirrors everything and prunes what ScaiKey
 * no longer has, and network, token and malformed-page failures exit non-zero with a clear message.
 * The edge and the runs are the CLI e2e harness's (cli-harness.ts), the fake ScaiKey started first.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminClient } from "../../scripts/lib/admin-client.ts";
import { serveFakeScaiKey, type FakeScaiKey } from "../helpers/fake-scaikey.ts";
import { useCliEdge } from "./cli-harness.ts";

let fake: { scaikey: FakeScaiKey; url: string; close: () => Promise<void> };
let tokenFile: string;
let admin: AdminClient;

const cli = useCliEdge(undefined, {
  dirPrefix: "e2e-cli-scaikey-",
  // A full sync of a few hundred records prints its progress as it goes.
  timeoutMs: 120_000,
  maxBuffer: 16 * 1024 * 1024,
  vars: async () => {
    fake = await serveFakeScaiKey("scaisend-e2e");
    return {
      // JWTs and the login: the client itself is the one `scaisend register` stores.
      SCAIKEY_ISSUER: fake.url,
      SCAIKEY_JWKS_URL: `${fake.url}/.well-known/jwks.json`,
      SCAIKEY_AUDIENCE: "scaisend-e2e",
    };
  },
});
const scaisend = (args: string[]) => cli.scaisend(args);

const get = <T = any>(p: string) =>
  admin.request<{ data: T }>("GET", p, undefined, `GET ${p}`).then((r) => r.data);
const iso = (ms: number) => new Date(ms).toISOString();

// After the harness's beforeAll (hooks run in the order they are declared): the edge is up.
beforeAll(() => {
  tokenFile = path.join(cli.workDir, "scaikey.token");
  fs.writeFileSync(tokenFile, `${fake.scaikey.token}\n`);
  admin = new AdminClient(cli.mf.url, cli.adminToken);
});

afterAll(async () => {
  await fake?.close();
});

describe("scaisend register", () => {
  it("registers the OAuth client and the webhook once, stores them sealed, and ScaiKey's webhook then verifies", async () => {
    const first = await scaisend([
      "register",
      "--issuer",
      fake.url,
      "--initial-access-token-file",
      tokenFile,
    ]);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    const edge = cli.mf.url;
    const redirect = new URL("/v3/auth/callback", edge).href;
    const hook = new URL("/webhooks/scaikey", edge).href;
    expect(first.stdout).toContain(`discovered ${fake.url}`);
    expect(first.stdout).toMatch(/client cli_\w+: registered/);
    expect(first.stdout).toMatch(/webhook whk_\w+: subscribed/);
    expect(fake.scaikey.clients).toHaveLength(1);
    const client = fake.scaikey.clients[0]!;
    expect(client.metadata).toMatchObject({
      redirect_uris: [redirect, new URL("/app/login/scaikey/callback", edge).href],
      grant_types: ["authorization_code", "refresh_token"],
      token_endpoint_auth_method: "client_secret_basic",
    });
    const [webhook] = [...fake.scaikey.webhooks.values()];
    expect(webhook).toMatchObject({ url: hook });
    expect(webhook!.events).toContain("tenant.updated");
    // Neither secret is printed, nor given back by the edge.
    expect(first.stdout).not.toContain(client.client_secret);
    expect(first.stdout).not.toContain(webhook!.secret);
    const stored = await get("/api/admin/scaikey");
    expect(stored).toMatchObject({
      issuer: fake.url,
      client_id: client.client_id,
      has_client_secret: true,
      redirect_uri: redirect,
      webhook_id: webhook!.id,
      webhook_url: hook,
      has_webhook_secret: true,
    });
    expect(JSON.stringify(stored)).not.toContain(webhook!.secret);

    // Idempotent: a second run registers nothing new.
    const again = await scaisend([
      "register",
      "--issuer",
      fake.url,
      "--initial-access-token-file",
      tokenFile,
      "--json",
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      client: "kept",
      webhook: "kept",
      client_id: client.client_id,
    });
    expect(fake.scaikey.clients).toHaveLength(1);
    expect(fake.scaikey.webhooks.size).toBe(1);

    // ScaiKey's own delivery, signed with the subscription's secret, is applied by the edge.
    const tnt = `tnt_hook_${randomBytes(4).toString("hex")}`;
    const delivered = await fake.scaikey.deliver(webhook!.id, "tenant.created", {
      id: tnt,
      name: "From the webhook",
      status: "active",
      updated_at: iso(Date.now()),
    });
    expect(delivered.status, await delivered.clone().text()).toBe(200);
    expect(await get(`/api/admin/tenants/${tnt}`)).toMatchObject({
      scaikey_id: tnt,
      name: "From the webhook",
    });
  }, 120_000);

  it("a user signs in through the registered client: ScaiKey redirects to the edge's callback, which mirrors the user", async () => {
    const tnt = `tnt_login_${randomBytes(4).toString("hex")}`;
    const [webhook] = [...fake.scaikey.webhooks.values()];
    const made = await fake.scaikey.deliver(webhook!.id, "tenant.created", {
      id: tnt,
      name: "Login",
      status: "active",
      updated_at: iso(Date.now()),
    });
    expect(made.status).toBe(200);
    const sub = `usr_login_${randomBytes(4).toString("hex")}`;
    fake.scaikey.issuer.nextLogin = {
      sub,
      tenant_id: tnt,
      email: "lee@example.org",
      name: "Lee",
      groups: ["grp_x"],
    };
    const login = await fetch(new URL("/v3/auth/login", cli.mf.url), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(login.status).toBe(200);
    const { authorization_url } = (await login.json()) as { authorization_url: string };
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    // The browser at ScaiKey's authorize page, then back at the registered redirect URI.
    const visit = await fetch(authorization_url, { redirect: "manual" });
    expect(visit.status).toBe(302);
    const back = visit.headers.get("location")!;
    expect(back.startsWith(new URL("/v3/auth/callback", cli.mf.url).href)).toBe(true);
    const cb = await fetch(back, { headers: { cookie } });
    const tokens = (await cb.json()) as { access_token: string; user: { id: string } };
    expect(cb.status, JSON.stringify(tokens)).toBe(200);
    expect(tokens.user.id).toBe(sub);
    const local = await get(`/api/admin/tenants/${tnt}`);
    expect(await get(`/api/admin/users?tenant_id=${local.id}`)).toMatchObject([
      { scaikey_id: sub, email: "lee@example.org", display_name: "Lee" },
    ]);
    // The access token works as a ScaiKey JWT on the edge.
    const me = await fetch(new URL("/v3/auth/me", cli.mf.url), {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ id: sub, tenant_id: local.id });
  }, 60_000);

  it("a refused initial access token, an unreachable issuer and a missing --issuer fail with a clear message", async () => {
    const wrong = path.join(cli.workDir, "wrong.token");
    fs.writeFileSync(wrong, "not-the-token");
    const refused = await scaisend(["register", "--issuer", fake.url, "--initial-access-token-file", wrong]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refused the token \(HTTP 401\)/);
    const down = await scaisend([
      "register",
      "--issuer",
      "http://127.0.0.1:9",
      "--initial-access-token-file",
      tokenFile,
    ]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach ScaiKey at http:\/\/127\.0\.0\.1:9/);
    const plain = await scaisend([
      "register",
      "--issuer",
      "http://scaikey.example",
      "--initial-access-token-file",
      tokenFile,
    ]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/must be https:\/\//);
    const usage = await scaisend(["register"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("register needs --issuer");
  }, 60_000);
});

describe("scaisend sync --full", () => {
  it("mirrors a few hundred records with progress, then prunes what ScaiKey no longer has", async () => {
    const t0 = Date.now() - 3_600_000;
    const s = fake.scaikey;
    s.partners = Array.from({ length: 3 }, (_, i) => ({
      id: `prt_${i}`,
      name: `Partner ${i}`,
      slug: `partner-${i}`,
      updated_at: iso(t0),
    }));
    s.tenants = Array.from({ length: 120 }, (_, i) => ({
      id: `tnt_sync_${String(i).padStart(3, "0")}`,
      partner_id: `prt_${i % 2}`,
      name: `Tenant ${i}`,
      status: "active",
      updated_at: iso(t0),
      plan: "ignored by ScaiSend",
    }));
    const big = "tnt_sync_000";
    s.users.set(
      big,
      Array.from({ length: 300 }, (_, i) => ({
        id: `usr_${String(i).padStart(3, "0")}`,
        tenant_id: big,
        email: `user${i}@example.org`,
        given_name: `User${i}`,
        updated_at: iso(t0),
      })),
    );
    s.groups.set(big, [{ id: "grp_admins", name: "Admins", members: ["usr_000", "usr_001", "usr_002"] }]);
    // The mapping exists before the users do: their groups make them admins.
    const local = await get(`/api/admin/tenants/${big}`).catch(() => null);
    expect(local).toBeNull();

    const run = await scaisend(["sync", "--full", "--token-file", tokenFile, "--page-size", "50"]);
    expect(run.code, run.stderr + run.stdout).toBe(0);
    expect(run.stderr).toContain("partners 3/3");
    expect(run.stderr).toContain("tenants 50/120");
    expect(run.stderr).toContain("tenants 120/120");
    expect(run.stderr).toMatch(/tenant 1\/120 tnt_sync_000 users 300\/300/);
    expect(run.stdout).toMatch(/^partners: 3 at ScaiKey, 3 applied, 0 unchanged, 0 removed$/m);
    expect(run.stdout).toMatch(/^tenants: 120 at ScaiKey, 120 applied, 0 unchanged, 2 removed$/m);
    expect(run.stdout).toMatch(/^users: 300 at ScaiKey, 300 applied, 0 unchanged, 0 removed$/m);

    const tenant = await get(`/api/admin/tenants/${big}`);
    const partner0 = await get("/api/admin/partners/prt_0");
    expect(tenant).toMatchObject({ name: "Tenant 0", status: "active", partner_id: partner0.id });
    await admin.request(
      "POST",
      `/api/admin/group_mappings?tenant_id=${tenant.id}`,
      { group_id: "grp_admins", role_id: "role_admin" },
      "mapping",
    );
    const users = await get<any[]>(`/api/admin/users?tenant_id=${tenant.id}&limit=500`);
    expect(users).toHaveLength(300);
    const byId = new Map(users.map((u) => [u.scaikey_id, u]));
    expect(byId.get("usr_001")).toMatchObject({
      email: "user1@example.org",
      roles: [{ id: "role_admin", name: "admin" }],
    });
    expect(byId.get("usr_200").roles).toEqual([]);

    // ScaiKey drops ten users, the last tenant and the third partner; one user changes.
    s.users.set(
      big,
      s.users
        .get(big)!
        .slice(10)
        .map((u) => (u.id === "usr_100" ? { ...u, given_name: "Renamed", updated_at: iso(t0 + 1000) } : u)),
    );
    s.tenants = s.tenants.slice(0, 119);
    s.partners = s.partners.slice(0, 2);
    const second = await scaisend([
      "sync",
      "--full",
      "--token-file",
      tokenFile,
      "--page-size",
      "100",
      "--json",
    ]);
    expect(second.code, second.stderr).toBe(0);
    const summary = JSON.parse(second.stdout);
    expect(summary.users).toMatchObject({ seen: 290, applied: 1, unchanged: 289, failed: [] });
    expect(summary.users.removed.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `usr_00${i}`));
    // (The tenants the register tests' webhooks created, not in ScaiKey's listing, went in the first run.)
    expect(summary.tenants.removed).toEqual(["tnt_sync_119"]);
    expect(summary.partners.removed).toEqual(["prt_2"]);
    expect((await get<any[]>(`/api/admin/users?tenant_id=${tenant.id}&limit=500`)).length).toBe(290);
    expect((await get("/api/admin/tenants/tnt_sync_119")).status).toBe("suspended");
    const renamed = (await get<any[]>(`/api/admin/users?tenant_id=${tenant.id}&limit=500`)).find(
      (u) => u.scaikey_id === "usr_100",
    );
    expect(renamed.first_name).toBe("Renamed");
  }, 300_000);

  it("a refused token, a malformed page and an unreachable ScaiKey exit 1 and prune nothing", async () => {
    const wrong = path.join(cli.workDir, "wrong-sync.token");
    fs.writeFileSync(wrong, "nope");
    const refused = await scaisend(["sync", "--full", "--token-file", wrong]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/listing \/partners: ScaiKey refused the token \(HTTP 401\)/);

    fake.scaikey.breakNext.set("/tenants", "malformed");
    const malformed = await scaisend(["sync", "--full", "--token-file", tokenFile]);
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toMatch(/listing \/tenants: ScaiKey's answer is malformed \(.*data/);

    fake.scaikey.breakNext.set("/partners", 503);
    const unavailable = await scaisend(["sync", "--full", "--token-file", tokenFile]);
    expect(unavailable.code).toBe(1);
    expect(unavailable.stderr).toMatch(/listing \/partners: ScaiKey answered HTTP 503/);

    const down = await scaisend([
      "sync",
      "--full",
      "--token-file",
      tokenFile,
      "--issuer",
      "http://127.0.0.1:9",
    ]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach ScaiKey/);
    // Nothing was pruned by the failed runs: the mirror still has every tenant ScaiKey has.
    expect((await get("/api/admin/tenants/tnt_sync_118")).status).toBe("active");
    expect((await scaisend(["sync", "--token-file", tokenFile])).code).toBe(2);
  }, 120_000);
});
