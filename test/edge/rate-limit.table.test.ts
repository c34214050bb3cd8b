/**
 * The rate-limit table (edge/src/services/rate-limit-table.ts, docs/api/sendgrid.md#rate-limits) on
 * the real app: every authenticated route spends from exactly one row (its own, or `default`), per
 * tenant or per credential as the row says; X-RateLimit-* on every answer; a tenant's override
 * (PUT /api/admin/tenants/{id}/rate_limits) takes effect at once in the isolate that set it; and under
 * concurrent load (bounded: a few dozen requests) the admitted count stays within the lease bound of
 * edge/src/objects/rate-limiter.ts.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { maxLease } from "../../edge/src/objects/rate-limiter.ts";
import { RATE_LIMITS } from "../../edge/src/services/rate-limit-table.ts";
import { bearer, call, createApiKey, mailBody, operatorHeaders, sendMail, setupTenant } from "./helpers.ts";

const limits = (tenantId: string, init: RequestInit = {}) =>
  call(`/api/admin/tenants/${tenantId}/rate_limits`, { headers: operatorHeaders(), ...init });

async function setOverrides(tenantId: string, rateLimits: Record<string, number | null>) {
  const res = await limits(tenantId, { method: "PUT", body: JSON.stringify({ rate_limits: rateLimits }) });
  expect(res.status, await res.clone().text()).toBe(200);
  return (
    (await res.json()) as {
      data: { rate_limits: { name: string; limit: number; override: number | null }[] };
    }
  ).data;
}

/** What a bucket has left, read without spending (a take of 0 tokens). */
async function bucketLeft(name: string, limit: number, windowMs: number): Promise<number> {
  return (await env.RATE_LIMITER.getByName(name).take(limit, windowMs, 0)).remaining;
}

/**
 * `n` requests at once; resolves to the statuses and how long the burst took. The bound for a
 * burst over T ms on one isolate: limit + limit·T/window (the bucket and its refill) + maxLease
 * (what one isolate may hold in advance).
 */
async function burst(n: number, one: () => Promise<Response>) {
  const started = Date.now();
  const answers = await Promise.all(Array.from({ length: n }, one));
  const ms = Date.now() - started;
  for (const r of answers) {
    if (r.status === 429) {
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(await r.json()).toMatchObject({ detail: "Rate limit exceeded" });
    } else await r.arrayBuffer();
  }
  return { statuses: answers.map((r) => r.status), ms };
}
const bound = (limit: number, windowMs: number, ms: number) =>
  limit + Math.ceil((limit * ms) / windowMs) + maxLease(limit);

describe("the table", () => {
  it("holds ScaiSend's documented rows", () => {
    const row = (r: { name: string; per: string; windowMs: number }) => [r.name, r.per, r.windowMs];
    expect(row(RATE_LIMITS.mailSend)).toEqual(["mail.send", "tenant", 1000]);
    expect(RATE_LIMITS.mailSend.limit({ MAIL_SEND_RATE_LIMIT: 10_000 } as never)).toBe(10_000);
    expect([...row(RATE_LIMITS.webhooksCreate), RATE_LIMITS.webhooksCreate.limit()]).toEqual([
      "webhooks.create",
      "tenant",
      60_000,
      10,
    ]);
    expect([...row(RATE_LIMITS.apiKeysCreate), RATE_LIMITS.apiKeysCreate.limit()]).toEqual([
      "api_keys.create",
      "tenant",
      60_000,
      10,
    ]);
    expect([...row(RATE_LIMITS.messagesList), RATE_LIMITS.messagesList.limit()]).toEqual([
      "messages.list",
      "credential",
      1000,
      100,
    ]);
    expect([...row(RATE_LIMITS.default), RATE_LIMITS.default.limit()]).toEqual([
      "default",
      "credential",
      1000,
      1000,
    ]);
  });
});

describe("every authenticated route spends from one row", () => {
  it("a route without a row of its own spends from default, per credential, with the headers", async () => {
    const t = await setupTenant();
    const other = await createApiKey(t.tenantId, { scopes: ["mail.send"] });
    const r = await call("/v3/messages/msg_00000000000000000000000000", { headers: bearer(t.liveKey) });
    // A 404 is an answer like any other: it carries the headers.
    expect(r.status).toBe(404);
    expect(r.headers.get("x-ratelimit-limit")).toBe("1000");
    expect(Number(r.headers.get("x-ratelimit-remaining"))).toBeLessThan(1000);
    expect(Number(r.headers.get("x-ratelimit-reset"))).toBeGreaterThan(Date.now() / 1000 - 5);
    // The bucket is the key's: drained 3 s ahead (a bucket's clock never runs back), this key is
    // refused and another key of the same tenant is not.
    await env.RATE_LIMITER.getByName(`default:${t.liveKeyId}`).take(1000, 1000, 1000, Date.now() + 3000);
    const refused = await call("/v3/messages/msg_00000000000000000000000000", { headers: bearer(t.liveKey) });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get("x-ratelimit-remaining")).toBe("0");
    expect(await refused.json()).toEqual({ detail: "Rate limit exceeded" });
    const fine = await call("/v3/messages/msg_00000000000000000000000000", { headers: bearer(other.key) });
    expect(fine.status).toBe(404);
    expect(fine.headers.get("x-ratelimit-limit")).toBe("1000");
  });

  it("a route with its own row does not also spend from default", async () => {
    const t = await setupTenant();
    const before = await bucketLeft(`default:${t.liveKeyId}`, 1000, 1000);
    const list = await call("/v3/messages", { headers: bearer(t.liveKey) });
    expect(list.status).toBe(200);
    expect(list.headers.get("x-ratelimit-limit")).toBe("100");
    const send = await sendMail(
      t.liveKey,
      mailBody(t.from, { mail_settings: { sandbox_mode: { enable: true } } }),
    );
    expect(send.status).toBe(202);
    expect(send.headers.get("x-ratelimit-limit")).toBe("10000");
    // Untouched (a fresh bucket reads full either way; what matters is no token went).
    expect(await bucketLeft(`default:${t.liveKeyId}`, 1000, 1000)).toBe(before);
    expect(before).toBe(1000);
  });

  it("the operator token on the admin API spends from default too", async () => {
    const t = await setupTenant();
    const r = await limits(t.tenantId);
    expect(r.status).toBe(200);
    expect(r.headers.get("x-ratelimit-limit")).toBe("1000");
  });
});

describe("PUT /api/admin/tenants/{id}/rate_limits", () => {
  it("lists every row with its default, override and limit, and replaces the overrides", async () => {
    const t = await setupTenant();
    const got = await limits(t.tenantId);
    expect(got.status).toBe(200);
    const view = (
      (await got.json()) as { data: { tenant_id: string; rate_limits: Record<string, unknown>[] } }
    ).data;
    expect(view.tenant_id).toBe(t.tenantId);
    expect(view.rate_limits.find((r) => r["name"] === "mail.send")).toEqual({
      name: "mail.send",
      routes: "POST /v3/mail/send",
      per: "tenant",
      window_seconds: 1,
      default: 10_000,
      override: null,
      limit: 10_000,
    });
    const set = await setOverrides(t.tenantId, { "messages.list": 5, default: 50 });
    expect(set.rate_limits.find((r) => r.name === "messages.list")).toMatchObject({ override: 5, limit: 5 });
    // PUT replaces: default is named again, messages.list is not, so it loses its override.
    const again = await setOverrides(t.tenantId, { default: 40 });
    expect(again.rate_limits.find((r) => r.name === "messages.list")).toMatchObject({
      override: null,
      limit: 100,
    });
    expect(again.rate_limits.find((r) => r.name === "default")).toMatchObject({ override: 40, limit: 40 });
  });

  it("refuses an unknown row, a bad limit, another field; a tenant key may read its own and not set", async () => {
    const t = await setupTenant();
    for (const body of [
      { rate_limits: { "no.such.row": 5 } },
      { rate_limits: { default: 0 } },
      { rate_limits: { default: 2.5 } },
      { rate_limits: { default: "10" } },
      { rate_limits: { default: 1_000_001 } },
      { rate_limits: {}, extra: true },
      {},
    ]) {
      const r = await limits(t.tenantId, { method: "PUT", body: JSON.stringify(body) });
      expect(r.status, JSON.stringify(body)).toBe(422);
      expect(((await r.json()) as { detail: unknown }).detail).toBeDefined();
    }
    const admin = await createApiKey(t.tenantId, { scopes: ["admin.settings"] });
    expect(
      (await call(`/api/admin/tenants/${t.tenantId}/rate_limits`, { headers: bearer(admin.key) })).status,
    ).toBe(200);
    const put = await call(`/api/admin/tenants/${t.tenantId}/rate_limits`, {
      method: "PUT",
      headers: bearer(admin.key),
      body: JSON.stringify({ rate_limits: { default: 100_000 } }),
    });
    expect(put.status).toBe(403);
    const other = await setupTenant();
    expect(
      (await call(`/api/admin/tenants/${other.tenantId}/rate_limits`, { headers: bearer(admin.key) })).status,
    ).toBe(404);
    expect((await limits("tnt_00000000000000000000000000")).status).toBe(404);
  });
});

describe("under concurrent load", () => {
  it("per tenant: a minute row's override holds across the tenant's keys within the bound", async () => {
    const t = await setupTenant();
    const keys = [
      (await createApiKey(t.tenantId, { scopes: ["admin.api_keys", "mail.send"] })).key,
      (await createApiKey(t.tenantId, { scopes: ["admin.api_keys", "mail.send"] })).key,
    ];
    const L = 4;
    await setOverrides(t.tenantId, { "api_keys.create": L });
    let i = 0;
    // A minute window: however slow the machine, the refill during the burst is a fraction of a token.
    const { statuses, ms } = await burst(12, () =>
      call("/v3/api_keys", {
        method: "POST",
        headers: bearer(keys[i++ % 2]!),
        body: JSON.stringify({ name: `burst-${i}`, scopes: ["mail.send"] }),
      }),
    );
    const admitted = statuses.filter((s) => s === 201).length;
    expect(
      statuses.every((s) => s === 201 || s === 429),
      statuses.join(","),
    ).toBe(true);
    expect(admitted).toBeGreaterThanOrEqual(Math.min(L, 2));
    expect(admitted).toBeLessThanOrEqual(bound(L, 60_000, ms));
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(12 - bound(L, 60_000, ms));
    // Another tenant is not touched by it.
    const b = await setupTenant();
    const bKey = (await createApiKey(b.tenantId, { scopes: ["admin.api_keys", "mail.send"] })).key;
    const theirs = await call("/v3/api_keys", {
      method: "POST",
      headers: bearer(bKey),
      body: JSON.stringify({ name: "theirs", scopes: ["mail.send"] }),
    });
    expect(theirs.status).toBe(201);
    expect(theirs.headers.get("x-ratelimit-limit")).toBe("10");
  }, 30_000);

  it("per tenant (mail/send): an override takes effect at once; a burst from two keys stays within the bound", async () => {
    const t = await setupTenant();
    const L = 5;
    await setOverrides(t.tenantId, { "mail.send": L });
    const body = mailBody(t.from, { mail_settings: { sandbox_mode: { enable: true } } });
    let i = 0;
    const { statuses, ms } = await burst(40, () => sendMail(i++ % 2 === 0 ? t.liveKey : t.testKey, body));
    const admitted = statuses.filter((s) => s === 202).length;
    expect(statuses.every((s) => s === 202 || s === 429)).toBe(true);
    expect(admitted).toBeGreaterThanOrEqual(Math.floor(L / 2));
    expect(admitted).toBeLessThanOrEqual(bound(L, 1000, ms));
    const next = await sendMail(t.testKey, body);
    expect(next.headers.get("x-ratelimit-limit")).toBe(String(L));
  }, 30_000);

  it("per credential (default row): each key has its own bucket of the tenant's override, within the bound", async () => {
    const t = await setupTenant();
    const second = await createApiKey(t.tenantId, { scopes: ["mail.send"] });
    const L = 3;
    await setOverrides(t.tenantId, { default: L });
    const path = "/v3/messages/msg_00000000000000000000000000";
    let i = 0;
    const keys = [t.liveKey, second.key];
    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 40 }, () => {
        const key = keys[i++ % 2]!;
        return call(path, { headers: bearer(key) }).then(async (r) => {
          await r.arrayBuffer();
          return { key, status: r.status, limit: r.headers.get("x-ratelimit-limit") };
        });
      }),
    );
    const ms = Date.now() - started;
    for (const key of keys) {
      const mine = answers.filter((a) => a.key === key);
      const admitted = mine.filter((a) => a.status === 404).length;
      expect(mine.every((a) => a.status === 404 || a.status === 429)).toBe(true);
      expect(mine.every((a) => a.limit === String(L))).toBe(true);
      expect(admitted).toBeGreaterThanOrEqual(2);
      expect(admitted).toBeLessThanOrEqual(bound(L, 1000, ms));
    }
    // Clearing the override gives the default back at once.
    await setOverrides(t.tenantId, {});
    const back = await call(path, { headers: bearer(t.liveKey) });
    expect(back.headers.get("x-ratelimit-limit")).toBe("1000");
  }, 30_000);
});
