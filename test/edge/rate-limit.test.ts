/**
 * Rate limiting (docs/api/sendgrid.md#rate-limits): X-RateLimit-* headers on answers, the 429 contract, and the
 * RateLimiter Durable Object's token-bucket math with an explicit clock.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { bearer, call, mailBody, sendMail, setupTenant, storedMessageCount, uid } from "./helpers.ts";

const LIMIT = Number(env.MAIL_SEND_RATE_LIMIT);

describe("post /v3/mail/send rate limit headers", () => {
  it("a 202 carries X-RateLimit-Limit, -Remaining and -Reset for the tenant's bucket", async () => {
    expect(LIMIT).toBe(10_000);
    const t = await setupTenant();
    const before = Math.floor(Date.now() / 1000);
    const res = await sendMail(t.testKey, mailBody(t.from));
    expect(res.status).toBe(202);
    expect(res.headers.get("x-ratelimit-limit")).toBe("10000");
    expect(res.headers.get("x-ratelimit-remaining")).toBe("9999");
    const reset = Number(res.headers.get("x-ratelimit-reset"));
    expect(Number.isInteger(reset)).toBe(true);
    // One token at 10,000/s refills in 0.1 ms: the bucket is full again within the current second.
    expect(reset).toBeGreaterThanOrEqual(before);
    expect(reset).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 1);
  });

  it("the bucket is per tenant, shared by the tenant's keys", async () => {
    const a = await setupTenant();
    const b = await setupTenant();
    await env.RATE_LIMITER.getByName(`mail.send:${a.tenantId}`).take(LIMIT, 1000, 5000);
    const fromA = await sendMail(a.testKey, mailBody(a.from));
    const fromAOtherKey = await sendMail(a.liveKey, mailBody(a.from));
    const fromB = await sendMail(b.testKey, mailBody(b.from));
    // A's bucket refills at 10 tokens/ms, so it is at most a little above 5,000, never back at 9,999.
    expect(Number(fromA.headers.get("x-ratelimit-remaining"))).toBeLessThan(9000);
    expect(Number(fromAOtherKey.headers.get("x-ratelimit-remaining"))).toBeLessThan(9000);
    expect(fromB.headers.get("x-ratelimit-remaining")).toBe("9999");
  });

  it("a rejected request still counts and still carries the headers", async () => {
    const t = await setupTenant();
    const res = await sendMail(t.liveKey, mailBody(t.from, { from: { email: "bad" } }));
    expect(res.status).toBe(400);
    expect(res.headers.get("x-ratelimit-limit")).toBe("10000");
    expect(res.headers.get("x-ratelimit-remaining")).toBe("9999");
  });
});

describe("post /v3/mail/send when the bucket is empty", () => {
  it("→ 429 {detail: Rate limit exceeded} with Retry-After and X-RateLimit-*, and nothing is sent", async () => {
    const t = await setupTenant();
    // At 10,000/s a bucket drained "now" has refilled by the time the next request arrives, so drain
    // it at a clock reading 3 s ahead: a bucket's clock never runs backwards, so the request finds it empty.
    const drainedAt = Date.now() + 3000;
    const drained = await env.RATE_LIMITER.getByName(`mail.send:${t.tenantId}`).take(
      LIMIT,
      1000,
      LIMIT,
      drainedAt,
    );
    expect(drained).toMatchObject({ allowed: true, remaining: 0 });

    const res = await sendMail(t.liveKey, mailBody(t.from));
    expect(res.status).toBe(429);
    expect(await res.json()).toEqual({ detail: "Rate limit exceeded" });
    const retryAfter = Number(res.headers.get("retry-after"));
    expect(Number.isInteger(retryAfter)).toBe(true);
    // One token takes 0.1 ms to refill; Retry-After is whole seconds, rounded up.
    expect(retryAfter).toBe(1);
    expect(res.headers.get("x-ratelimit-limit")).toBe("10000");
    expect(res.headers.get("x-ratelimit-reset")).toMatch(/^\d+$/);
    expect(res.headers.get("x-message-id")).toBeNull();

    expect(await storedMessageCount(t.tenantId)).toBe(0);
  });

  it("→ 429 before the body is even looked at (a bad body does not get a 400)", async () => {
    const t = await setupTenant();
    await env.RATE_LIMITER.getByName(`mail.send:${t.tenantId}`).take(LIMIT, 1000, LIMIT, Date.now() + 3000);
    const res = await sendMail(t.liveKey, "{not json");
    expect(res.status).toBe(429);
    expect(await res.json()).toEqual({ detail: "Rate limit exceeded" });
  });

  it("GET /v3/messages has its own per-credential bucket of 100/s", async () => {
    const t = await setupTenant();
    const res = await call("/v3/messages", { headers: bearer(t.liveKey) });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-ratelimit-limit")).toBe("100");
    expect(res.headers.get("x-ratelimit-remaining")).toBe("99");

    await env.RATE_LIMITER.getByName(`messages.list:${t.liveKeyId}`).take(100, 1000, 100, Date.now() + 3000);
    const limited = await call("/v3/messages", { headers: bearer(t.liveKey) });
    expect(limited.status).toBe(429);
    expect(await limited.json()).toEqual({ detail: "Rate limit exceeded" });
    // Another key of the same tenant has its own bucket.
    const other = await call("/v3/messages", { headers: bearer(t.testKey) });
    expect(other.status).toBe(200);
  });
});

describe("RateLimiter token bucket", () => {
  const bucket = () => env.RATE_LIMITER.getByName(`unit:${uid()}`);
  const T0 = 1_800_000_000_000;

  it("treats a clock reading earlier than the last one as no time passed (no negative tokens)", async () => {
    const b = bucket();
    await b.take(10, 1000, 10, T0 + 1000);
    const earlier = await b.take(10, 1000, 1, T0);
    expect(earlier).toMatchObject({ allowed: false, remaining: 0, retryAfter: 1 });
  });

  it("starts full and takes one token per request", async () => {
    const b = bucket();
    expect(await b.take(10, 1000, 1, T0)).toEqual({
      allowed: true,
      limit: 10,
      remaining: 9,
      // One token refills in 100 ms.
      resetAt: Math.ceil((T0 + 100) / 1000),
      retryAfter: 0,
    });
  });

  it("refuses once empty, with Retry-After rounded up to whole seconds (at least 1)", async () => {
    const b = bucket();
    for (let i = 0; i < 10; i++) expect((await b.take(10, 1000, 1, T0)).allowed).toBe(true);
    expect(await b.take(10, 1000, 1, T0)).toEqual({
      allowed: false,
      limit: 10,
      remaining: 0,
      resetAt: Math.ceil((T0 + 1000) / 1000),
      retryAfter: 1,
    });
  });

  it("refills continuously at limit per window", async () => {
    const b = bucket();
    await b.take(10, 1000, 10, T0); // empty
    expect(await b.take(10, 1000, 1, T0 + 99)).toMatchObject({ allowed: false, remaining: 0 });
    // 10 per 1000 ms is 0.01 token/ms: 2.5 tokens by T0 + 250; one is taken, 1.5 left.
    expect(await b.take(10, 1000, 1, T0 + 250)).toMatchObject({ allowed: true, remaining: 1 });
    expect(await b.take(10, 1000, 1, T0 + 250)).toMatchObject({ allowed: true, remaining: 0 });
    expect(await b.take(10, 1000, 1, T0 + 250)).toMatchObject({ allowed: false, retryAfter: 1 });
  });

  it("never holds more than one window's worth", async () => {
    const b = bucket();
    await b.take(10, 1000, 1, T0);
    expect(await b.take(10, 1000, 1, T0 + 3_600_000)).toMatchObject({ allowed: true, remaining: 9 });
  });

  it("computes Retry-After for long windows in seconds", async () => {
    const b = bucket();
    // 10 per minute: one token every 6 s.
    await b.take(10, 60_000, 10, T0);
    expect(await b.take(10, 60_000, 1, T0)).toMatchObject({ allowed: false, retryAfter: 6 });
    expect(await b.take(10, 60_000, 1, T0 + 4_500)).toMatchObject({ allowed: false, retryAfter: 2 });
    expect(await b.take(10, 60_000, 1, T0 + 6_000)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("a cost larger than what is left is refused without taking anything", async () => {
    const b = bucket();
    await b.take(10, 1000, 7, T0);
    expect(await b.take(10, 1000, 5, T0)).toMatchObject({ allowed: false, remaining: 3, retryAfter: 1 });
    expect(await b.take(10, 1000, 3, T0)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("starts a full bucket when the limit changes", async () => {
    const b = bucket();
    await b.take(10, 1000, 10, T0);
    expect(await b.take(20, 1000, 1, T0)).toMatchObject({ allowed: true, limit: 20, remaining: 19 });
  });
});
