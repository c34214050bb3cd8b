/**
 * SenderKit's rate budgets (docs/api/senderkit.md#rate-limits) on the real Worker in workerd: per API
 * key, reads and sends counted apart, a 429 in SenderKit's shape (`rate_limited`, `limit`) with
 * Retry-After, validated against the OpenAPI document.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { expectMatches } from "../helpers/openapi-edge.ts";
import { BASE, call, createTenant, operatorHeaders, uid } from "./helpers.ts";

async function senderKitKey(tenantId: string, environment: "live" | "test"): Promise<string> {
  const res = await call(`/api/admin/tenants/${tenantId}/api_keys`, {
    method: "POST",
    headers: operatorHeaders(),
    body: JSON.stringify({ name: `sk-${uid()}`, environment, format: "senderkit" }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { data: { api_key: string } }).data.api_key;
}

describe("SenderKit rate budgets", () => {
  it("a burst of reads past the read budget is 429 rate_limited with Retry-After; sends keep their own budget", async () => {
    const tenantId = await createTenant();
    const key = await senderKitKey(tenantId, "test");
    const other = await senderKitKey(tenantId, "test");
    const limit = 5;
    const bindings = {
      ...(env as unknown as Bindings),
      SENDERKIT_READ_RATE_LIMIT: String(limit),
      SENDERKIT_SEND_RATE_LIMIT: String(limit),
    } as Bindings;
    const app = createApp();
    const request = async (k: string, method: string, path: string, body?: unknown) => {
      const ctx = createExecutionContext();
      const res = await app.request(
        `${BASE}${path}`,
        {
          method,
          headers: { Authorization: `Bearer ${k}`, "Content-Type": "application/json" },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        },
        bindings,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return {
        status: res.status,
        retryAfter: res.headers.get("retry-after"),
        body: (await res.json()) as any,
      };
    };
    const answers = await Promise.all(
      Array.from({ length: 10 * limit }, () => request(key, "GET", "/v1/context")),
    );
    const limited = answers.filter((a) => a.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(answers.filter((a) => a.status === 200).length).toBeLessThan(10 * limit);
    for (const a of [limited[0]!, answers.find((x) => x.status === 200)!])
      expectMatches(a.status, a.body, "getContext");
    expect(limited[0]!.body.error).toMatchObject({ code: "rate_limited", limit });
    expect(Number(limited[0]!.retryAfter)).toBeGreaterThanOrEqual(1);

    // The same key's send budget is untouched: a send is admitted (here refused as invalid, 400, not 429).
    const send = await request(key, "POST", "/v1/send", {
      channel: "sms",
      to: "nope",
      content: { body: "x" },
    });
    expect(send.status).toBe(400);
    expectMatches(send.status, send.body, "sendMessage");
    // Budgets are per key: another key of the same workspace reads on.
    expect((await request(other, "GET", "/v1/context")).status).toBe(200);
  });
});
