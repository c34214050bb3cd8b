/**
 * The isolate cache of API keys and sender domains (edge/src/services/catalog-cache.ts,
 * docs/configuration.md AUTH_CACHE_TTL_MS): a change made elsewhere (here: written to D1 directly, as
 * another isolate or an operator's SQL would) is seen within the TTL; a change made through this
 * isolate's admin routes is seen at once; unknown keys are cached negatively and bounded.
 * The real app runs through `app.request` in this isolate with the real D1 binding, wrapped to count
 * its calls; the cache's clock is stepped instead of waiting the TTL out.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import {
  REFUSAL_RECHECK_MS,
  TOUCH_INTERVAL_MS,
  catalogCache,
} from "../../edge/src/services/catalog-cache.ts";
import { countingD1, newRoundTrips, type RoundTrips } from "../bench/lib/counting-bindings.ts";
import {
  BASE,
  bearer,
  createDomain,
  mailBody,
  markDomainVerified,
  operatorHeaders,
  setupTenant,
  uid,
} from "./helpers.ts";

const TTL = 10_000;
const app = createApp();

let now = 0;
let trips: RoundTrips;
let bindings: Bindings;

beforeEach(() => {
  now = Date.now();
  catalogCache.clock = () => now;
  catalogCache.clear();
  trips = newRoundTrips();
  bindings = {
    ...(env as unknown as Bindings),
    AUTH_CACHE_TTL_MS: String(TTL),
    DB: countingD1(env.DB, trips),
  } as Bindings;
});

afterEach(() => {
  catalogCache.clock = Date.now;
  catalogCache.clear();
});

async function request(path: string, init: RequestInit, e: Bindings = bindings): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await app.request(`${BASE}${path}`, init, e, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

async function send(key: string, from: string, e: Bindings = bindings): Promise<number> {
  const res = await request(
    "/v3/mail/send",
    { method: "POST", headers: bearer(key), body: JSON.stringify(mailBody(from)) },
    e,
  );
  if (res.status >= 500) throw new Error(`${res.status}: ${await res.text()}`);
  return res.status;
}

const keyReads = () => trips.log.filter((sql) => /from "api_keys"/i.test(sql)).length;
const domainReads = () => trips.log.filter((sql) => /from "sender_domains"/i.test(sql)).length;

describe("an API key changed elsewhere", () => {
  it("a revoked key keeps working until AUTH_CACHE_TTL_MS has passed, then → 401", async () => {
    const t = await setupTenant();
    expect(await send(t.testKey, t.from)).toBe(202);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
      .bind(Date.now(), t.testKeyId)
      .run();

    now += TTL - 1;
    expect(await send(t.testKey, t.from)).toBe(202);
    now += 1;
    expect(await send(t.testKey, t.from)).toBe(401);
    // And stays refused: the refusal was read on the primary and is cached.
    expect(await send(t.testKey, t.from)).toBe(401);
  });

  it("a suspended tenant's key → 403 once the TTL has passed", async () => {
    const t = await setupTenant();
    expect(await send(t.testKey, t.from)).toBe(202);
    await env.DB.prepare("UPDATE tenants SET status = 'suspended' WHERE id = ?").bind(t.tenantId).run();
    expect(await send(t.testKey, t.from)).toBe(202);
    now += TTL;
    expect(await send(t.testKey, t.from)).toBe(403);
  });

  it("AUTH_CACHE_TTL_MS=0 turns the cache off: a revoked key is refused at once", async () => {
    const t = await setupTenant();
    const off = { ...bindings, AUTH_CACHE_TTL_MS: "0" } as Bindings;
    expect(await send(t.testKey, t.from, off)).toBe(202);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
      .bind(Date.now(), t.testKeyId)
      .run();
    expect(await send(t.testKey, t.from, off)).toBe(401);
  });

  it("a warm key costs no D1 read, and reads go through a D1 session", async () => {
    const t = await setupTenant();
    // setupTenant created the key through this isolate, which reads the primary for a while after
    // (services/catalog-cache.ts); start from an isolate that made no change.
    catalogCache.clear();
    expect(await send(t.testKey, t.from)).toBe(202);
    expect(keyReads()).toBe(1);
    expect(trips.d1Sessions["first-unconstrained"]).toBe(1);
    for (let i = 0; i < 5; i++) expect(await send(t.testKey, t.from)).toBe(202);
    expect(keyReads()).toBe(1);
  });

  it("concurrent requests of a cold key share one read", async () => {
    const t = await setupTenant();
    const statuses = await Promise.all(Array.from({ length: 20 }, () => send(t.testKey, t.from)));
    expect(statuses.every((s) => s === 202)).toBe(true);
    expect(keyReads()).toBe(1);
  });

  it("last_used_at is written behind the response, once per interval", async () => {
    const t = await setupTenant();
    for (let i = 0; i < 5; i++) expect(await send(t.testKey, t.from)).toBe(202);
    const touches = () =>
      trips.log.filter((sql) => /^update "api_keys" set "last_used_at"/i.test(sql)).length;
    expect(touches()).toBe(1);
    now += TOUCH_INTERVAL_MS + 1;
    expect(await send(t.testKey, t.from)).toBe(202);
    expect(touches()).toBe(1 + 1);
    const row = await env.DB.prepare("SELECT last_used_at AS at FROM api_keys WHERE id = ?")
      .bind(t.testKeyId)
      .first<{ at: number }>();
    expect(row!.at).toBe(now);
  });
});

describe("unknown API keys", () => {
  it("one unknown key sent again and again is read from D1 once (then cached as unknown)", async () => {
    const key = `sg_live_${"ab".repeat(16)}`;
    for (let i = 0; i < 30; i++) expect(await send(key, "a@example.com")).toBe(401);
    // The first look, then its confirmation on the primary; nothing after.
    expect(keyReads()).toBe(2);
    expect(trips.d1Sessions["first-primary"]).toBe(1);
  });

  it("distinct unknown keys cost one look each, not one per request", async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `sg_live_${i.toString(16).padStart(32, "0")}`);
    for (const round of [1, 2, 3]) {
      const statuses = await Promise.all(keys.map((k) => send(k, "a@example.com")));
      expect(
        statuses.every((s) => s === 401),
        `round ${round}`,
      ).toBe(true);
    }
    expect(keyReads()).toBe(2 * keys.length);
    expect(catalogCache.size().keys.negative).toBe(keys.length);
  });
});

describe("sender domains", () => {
  it("a domain un-verified elsewhere stops live sends once the TTL has passed", async () => {
    const t = await setupTenant();
    expect(await send(t.liveKey, t.from)).toBe(202);
    await env.DB.prepare("UPDATE sender_domains SET verified = 0 WHERE id = ?").bind(t.domainId).run();
    now += TTL - 1;
    expect(await send(t.liveKey, t.from)).toBe(202);
    now += 1;
    expect(await send(t.liveKey, t.from)).toBe(403);
  });

  it("a warm tenant's live send reads no sender domain from D1", async () => {
    const t = await setupTenant();
    expect(await send(t.liveKey, t.from)).toBe(202);
    const before = domainReads();
    expect(before).toBe(1);
    for (let i = 0; i < 5; i++) expect(await send(t.liveKey, t.from)).toBe(202);
    expect(domainReads()).toBe(before);
  });

  it("a domain verified elsewhere works within REFUSAL_RECHECK_MS, and a refused domain costs at most one read per interval", async () => {
    const t = await setupTenant();
    const other = `late-${uid()}.example.com`;
    const d = await createDomain(t.tenantId, other);
    expect(await send(t.liveKey, `x@${other}`)).toBe(403);
    const afterFirst = domainReads();
    for (let i = 0; i < 10; i++) expect(await send(t.liveKey, `x@${other}`)).toBe(403);
    expect(domainReads()).toBe(afterFirst);

    await markDomainVerified(d.id);
    now += REFUSAL_RECHECK_MS - 1;
    expect(await send(t.liveKey, `x@${other}`)).toBe(403);
    now += 1;
    expect(await send(t.liveKey, `x@${other}`)).toBe(202);
  });

  it("a domain un-verified through this isolate's admin route stops live sends at once", async () => {
    const t = await setupTenant();
    expect(await send(t.liveKey, t.from)).toBe(202);
    // Verification against a resolver that refuses connections: every DNS check fails, and outside
    // DEV_MODE a failed verification un-verifies the domain.
    const refusing = { ...bindings, DNS_RESOLVER_URL: "http://127.0.0.1:9/dns-query" } as Bindings;
    const res = await request(
      `/api/admin/domains/${t.domainId}/verify?tenant_id=${t.tenantId}`,
      { method: "POST", headers: operatorHeaders() },
      refusing,
    );
    expect(res.status).toBe(200);
    const row = await env.DB.prepare("SELECT verified FROM sender_domains WHERE id = ?")
      .bind(t.domainId)
      .first<{ verified: number }>();
    expect(row!.verified).toBe(0);
    expect(await send(t.liveKey, t.from)).toBe(403);
  });
});
