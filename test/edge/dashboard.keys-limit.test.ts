/**
 * Key creation from the dashboard is limited per tenant as POST /v3/api_keys is
 * (docs/dashboard.md#pages): the same api_keys.create bucket, 10 a minute, shared by both ways in;
 * beyond it a 429 page with Retry-After, and no key made. Another tenant is not touched.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { bearer, call, createApiKey, setupTenant, uid } from "./helpers.ts";
import { Browser, createLogin } from "./dashboard.helpers.ts";

const keyCount = async (tenantId: string) =>
  (await env.DB.prepare("SELECT count(*) AS n FROM api_keys WHERE tenant_id = ?")
    .bind(tenantId)
    .first<{ n: number }>())!.n;

describe("key creation from the dashboard", () => {
  it("10 a minute per tenant, from the API's bucket: the 11th is a 429 page there and at /v3/api_keys", async () => {
    const t = await setupTenant();
    const apiKey = (await createApiKey(t.tenantId, { scopes: ["admin.api_keys", "mail.send"] })).key;
    const b = await Browser.signIn((await createLogin(t.tenantId, ["admin"])).email);
    await b.get("/app/keys");
    const before = await keyCount(t.tenantId);
    // Sequential, in a minute's window: the refill over these few requests is a fraction of a token.
    for (let i = 0; i < 10; i++) {
      const made = await b.post("/app/keys", { name: `dash-${i}-${uid()}`, scopes: "mail.send" });
      expect(made.status, made.text).toBe(201);
      expect(made.headers.get("x-ratelimit-limit")).toBe("10");
    }
    const refused = await b.post("/app/keys", { name: `dash-over-${uid()}`, scopes: "mail.send" });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(refused.text).toContain("Rate limit exceeded");
    expect(refused.text).not.toMatch(/[sS][gG]_live_[0-9a-f]{32}/);
    // The API spends from the same bucket: it is empty there too.
    const viaApi = await call("/v3/api_keys", {
      method: "POST",
      headers: bearer(apiKey),
      body: JSON.stringify({ name: `api-${uid()}`, scopes: ["mail.send"] }),
    });
    expect(viaApi.status).toBe(429);
    expect(await keyCount(t.tenantId)).toBe(before + 10);
    // The list and revoke are not limited by it.
    expect((await b.get("/app/keys")).status).toBe(200);

    const other = await setupTenant();
    const ob = await Browser.signIn((await createLogin(other.tenantId, ["admin"])).email);
    await ob.get("/app/keys");
    expect((await ob.post("/app/keys", { name: `theirs-${uid()}`, scopes: "mail.send" })).status).toBe(201);
  });
});
