/**
 * Behaviours of the edge's configuration that the README states (issue 6, "Tests that test the real
 * thing"): a bad configuration answers 500 with the list of problems, DEV_MODE decides whether a new
 * domain counts as verified, and the cron sweeper logs a failure instead of dropping it (item 12).
 * Each test runs the real app (`createApp()`) or entry point against the real D1 binding with one
 * setting changed, by handing it a copy of the test env.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { loadConfig } from "../../edge/src/env.ts";
import worker from "../../edge/src/index.ts";
import { BASE, operatorHeaders, uid, type DomainView } from "./helpers.ts";

const app = createApp();

/** The test env with some settings replaced (a fresh object, so the config cache does not apply). */
const envWith = (patch: Record<string, unknown>): Bindings => ({ ...env, ...patch }) as Bindings;

async function request(
  e: Bindings,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: unknown; text: string }> {
  const ctx = createExecutionContext();
  const res = await app.request(`${BASE}${path}`, init, e, ctx);
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  return { status: res.status, body: text ? JSON.parse(text) : null, text };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a bad configuration", () => {
  const SHORT_KEY = btoa("sixteen byte key");

  it("answers 500 with every problem in the FastAPI {detail} shape, on every route", async () => {
    const bad = envWith({
      SECRETS_KEY: SHORT_KEY,
      SECRETS_KEY_PREVIOUS: "not base64!",
      DNS_RESOLVER_URL: "http://resolver.example.net/dns-query",
      HUB_SHARDS: "0",
    });
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    for (const path of ["/healthz", "/api/admin/tenants", "/v3/mail/send"]) {
      const res = await request(bad, path, { method: path === "/healthz" ? "GET" : "POST" });
      expect(res.status).toBe(500);
      const body = res.body as { detail: string; problems: string[] };
      expect(body.detail).toBe("Server misconfigured");
      expect(body.problems).toEqual([
        "SECRETS_KEY: SECRETS_KEY must be base64 of exactly 32 bytes",
        "SECRETS_KEY_PREVIOUS: SECRETS_KEY_PREVIOUS must be comma-separated base64 keys of exactly 32 bytes each",
        "DNS_RESOLVER_URL: DNS_RESOLVER_URL must be https:// (http:// only for a loopback resolver)",
        expect.stringMatching(/^HUB_SHARDS: /),
      ]);
      // The values themselves are never echoed.
      expect(res.text).not.toContain(SHORT_KEY);
      expect(res.text).not.toContain("not base64!");
    }
  });

  it("a missing secret is named with how to set it", async () => {
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    const res = await request(envWith({ ADMIN_TOKEN: undefined }), "/healthz");
    expect(res.status).toBe(500);
    expect((res.body as { problems: string[] }).problems).toEqual([
      "ADMIN_TOKEN: ADMIN_TOKEN is not set (wrangler secret put ADMIN_TOKEN, or .dev.vars locally)",
    ]);
  });

  it("DNS_RESOLVER_URL may be https anywhere, or http only on loopback", () => {
    const ok = (url: string) => loadConfig(envWith({ DNS_RESOLVER_URL: url })).ok;
    expect(ok("https://dns.google/resolve")).toBe(true);
    expect(ok("http://127.0.0.1:8053/dns-query")).toBe(true);
    expect(ok("http://[::1]:8053/dns-query")).toBe(true);
    expect(ok("http://localhost:8053/dns-query")).toBe(true);
    expect(ok("http://10.0.0.53/dns-query")).toBe(false);
    expect(ok("http://127.0.0.1.example.net/dns-query")).toBe(false);
    expect(ok("ftp://dns.example.net/")).toBe(false);
  });

  it("SECRETS_KEY_PREVIOUS takes a comma-separated list and defaults to none", () => {
    const keys = [0, 1].map(() => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32)))));
    const loaded = loadConfig(envWith({ SECRETS_KEY_PREVIOUS: ` ${keys[0]}, ${keys[1]} ` }));
    expect(loaded.ok && loaded.config.SECRETS_KEY_PREVIOUS).toEqual(keys);
    const none = loadConfig(envWith({}));
    expect(none.ok && none.config.SECRETS_KEY_PREVIOUS).toEqual([]);
  });
});

describe("DEV_MODE", () => {
  async function newDomain(devMode: string): Promise<DomainView> {
    const e = envWith({ DEV_MODE: devMode });
    const tenant = await request(e, "/api/admin/tenants", {
      method: "POST",
      headers: operatorHeaders(),
      body: JSON.stringify({ name: `tenant-${uid()}` }),
    });
    expect(tenant.status).toBe(201);
    const tenantId = (tenant.body as { data: { id: string } }).data.id;
    const res = await request(e, "/api/admin/domains", {
      method: "POST",
      headers: operatorHeaders(),
      body: JSON.stringify({ domain: `mail-${uid()}.example.com`, tenant_id: tenantId }),
    });
    expect(res.status, res.text).toBe(201);
    return (res.body as { data: DomainView }).data;
  }

  it('"true" makes a new domain count as verified (local development has no DNS to publish to)', async () => {
    const d = await newDomain("true");
    expect(d.verified).toBe(true);
    expect(d.verified_at).not.toBeNull();
    const row = await env.DB.prepare("SELECT verified FROM sender_domains WHERE id = ?")
      .bind(d.id)
      .first<{ verified: number }>();
    expect(row!.verified).toBe(1);
  });

  it('"false" leaves a new domain unverified until its DNS checks pass', async () => {
    const d = await newDomain("false");
    expect(d.verified).toBe(false);
    expect(d.verified_at).toBeNull();
  });

  it("any other value is a configuration error, not silently false", () => {
    const loaded = loadConfig(envWith({ DEV_MODE: "yes" }));
    expect(loaded.ok).toBe(false);
  });
});

describe("the cron sweeper", () => {
  it("logs a failed sweep (here: D1 without its tables) instead of leaving the rejection unhandled", async () => {
    const errors: string[] = [];
    vi.spyOn(console, "error").mockImplementation((line: unknown) => {
      errors.push(String(line));
    });
    const ctx = createExecutionContext();
    await worker.scheduled(
      createScheduledController({ cron: "*/5 * * * *", scheduledTime: Date.now() }),
      envWith({ DB: env.UNMIGRATED_DB }),
      ctx,
    );
    await waitOnExecutionContext(ctx);
    const logged = errors.map((l) => JSON.parse(l) as Record<string, string>);
    // Each cron task fails on its own and says so (their order is the order D1 answered).
    expect(logged.sort((x, y) => x.msg!.localeCompare(y.msg!))).toEqual([
      {
        level: "error",
        msg: "dashboard session sweep failed",
        error: expect.stringContaining('"dashboard_sessions"'),
        cause: expect.stringContaining("no such table: dashboard_sessions"),
      },
      {
        level: "error",
        msg: "sweeper failed",
        error: expect.stringContaining('from "messages"'),
        cause: expect.stringContaining("no such table: messages"),
      },
    ]);
  });
});
