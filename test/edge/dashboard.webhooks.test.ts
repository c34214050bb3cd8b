/**
 * The dashboard's webhooks pages (docs/dashboard.md#pages), in workerd: the tenant's endpoints, an
 * endpoint's delivery log showing a real failed delivery made by its WebhookQueue object (the
 * object's clock, outbound fetch and DNS are handed in, as in webhooks.delivery.test.ts), the test
 * POST and its outcome, enable / disable as the API sees it, RBAC, CSRF and tenant binding.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../shared/ids.ts";
import { bearer, call, createApiKey, createTenant } from "./helpers.ts";
import { Browser, createLogin, createRole } from "./dashboard.helpers.ts";
import { inQueue } from "./webhooks.helpers.ts";

async function rig() {
  const tenant = await createTenant();
  const key = (await createApiKey(tenant, { scopes: ["webhooks.read", "webhooks.write"] })).key;
  const stub = env.WEBHOOK_QUEUE.getByName(tenant);
  const state = {
    now: Date.now() + 30 * 24 * 3600_000,
    posts: [] as string[],
    status: 503,
  };
  await inQueue(tenant, (q) => {
    q.clock = () => state.now;
    q.resolver = async (host) => (host === "hooks.example.com" ? ["93.184.216.34"] : []);
    q.fetcher = async (req) => {
      state.posts.push(req.url);
      return new Response("down", { status: state.status });
    };
  });
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await call(path, {
      method,
      headers: bearer(key),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as any) : null };
  };
  const advance = async () => {
    const at = await stub.alarmAt();
    if (at === null) return null;
    state.now = Math.max(state.now, at);
    await runDurableObjectAlarm(stub);
    return at;
  };
  return { tenant, stub, state, api, advance };
}

describe("dashboard webhooks", () => {
  it("lists endpoints without secrets, shows a failed delivery in the log, tests, disables and enables", async () => {
    const r = await rig();
    const created = await r.api("POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/x",
      enabled_events: ["delivered", "bounce"],
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const secret = created.body.signing_secret as string;
    expect(secret).toMatch(/^whsec_/);
    await r.stub.enqueue(r.tenant, [
      {
        id: newId("evt", r.state.now),
        tenantId: r.tenant,
        messageId: "msg_01TEST",
        eventType: "delivered",
        recipientEmail: "rcpt@inbox.test",
        timestamp: r.state.now,
        attempt: 1,
        metadata: {},
      },
    ]);
    expect(await r.advance()).not.toBeNull();
    expect(r.state.posts).toEqual(["https://hooks.example.com/x"]);

    const b = await Browser.signIn((await createLogin(r.tenant, ["admin"])).email);
    const list = await b.get("/app/webhooks");
    expect(list.status).toBe(200);
    expect(list.text).toContain(`href="/app/webhooks/${id}"`);
    expect(list.text).toContain("https://hooks.example.com/x");
    expect(list.text).toContain("delivered, bounce");
    expect(list.text).not.toContain(secret);

    const page = await b.get(`/app/webhooks/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(secret);
    const log = (await r.api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries;
    expect(log).toHaveLength(1);
    expect(page.text).toContain(`<td>${log[0].id}</td><td>pending</td>`);
    expect(page.text).toContain(`${log[0].attempts[0].at}: 503 (HTTP 503)`);
    expect(page.text).toContain(`<dd>1</dd>`); // failures in a row

    // Retry now: the pending delivery's next attempt is due at once (not in 60 s), and the log shows it.
    const retryPath = `/app/webhooks/${id}/deliveries/${log[0].id}/retry`;
    expect(page.text).toContain(`action="${retryPath}"`);
    const before = r.state.now;
    expect((await b.post(retryPath)).status).toBe(303);
    expect(await r.stub.alarmAt()).toBeLessThanOrEqual(before);
    await r.advance();
    expect(r.state.posts).toHaveLength(2);
    const retried = await b.get(`/app/webhooks/${id}`);
    const attempts = (await r.api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries[0].attempts;
    expect(attempts).toHaveLength(2);
    expect(retried.text).toContain(`${attempts[1].at}: 503 (HTTP 503)`);
    // The API's route does the same; a delivery of another endpoint, or none, is 404.
    expect((await r.api("POST", `/v3/user/webhooks/${id}/deliveries/${log[0].id}/retry`)).status).toBe(202);
    await r.advance();
    expect(r.state.posts).toHaveLength(3);
    expect((await r.api("POST", `/v3/user/webhooks/${id}/deliveries/dlv_nope/retry`)).status).toBe(404);
    expect((await b.post(`/app/webhooks/${id}/deliveries/dlv_nope/retry`)).status).toBe(404);
    // A succeeded delivery cannot be retried: 400 naming its state.
    r.state.status = 200;
    expect((await b.post(retryPath)).status).toBe(303);
    await r.advance();
    const done = await r.api("POST", `/v3/user/webhooks/${id}/deliveries/${log[0].id}/retry`);
    expect(done.status).toBe(400);
    expect(JSON.stringify(done.body)).toContain("the delivery has succeeded");
    expect((await b.get(`/app/webhooks/${id}`)).text).not.toContain(`action="${retryPath}"`);
    r.state.status = 503;
    r.state.posts.length = 1;

    // Test: the POST goes out to the endpoint's URL and its outcome is shown.
    const tested = await b.post(`/app/webhooks/${id}/test`);
    expect(tested.status, tested.text).toBe(200);
    expect(tested.text).toContain("Failed: the test POST to https://hooks.example.com/x failed: HTTP 503.");
    expect(r.state.posts).toHaveLength(2);
    r.state.status = 200;
    expect((await b.post(`/app/webhooks/${id}/test`)).text).toMatch(
      /Delivered: https:\/\/hooks\.example\.com\/x answered 200 in \d+ ms/,
    );

    // Disable, then enable: the API sees each change.
    await b.get(`/app/webhooks/${id}`);
    expect((await b.post(`/app/webhooks/${id}/enabled`, { enabled: "false" })).status).toBe(303);
    expect((await r.api("GET", `/v3/user/webhooks/${id}`)).body.enabled).toBe(false);
    const off = await b.get(`/app/webhooks/${id}`);
    expect(off.text).toContain("<dd>disabled</dd>");
    expect((await b.post(`/app/webhooks/${id}/enabled`, { enabled: "true" })).status).toBe(303);
    expect((await r.api("GET", `/v3/user/webhooks/${id}`)).body.enabled).toBe(true);
    expect((await b.post(`/app/webhooks/${id}/enabled`, { enabled: "maybe" })).status).toBe(400);
    expect((await b.post(`/app/webhooks/${id}/enabled`, { enabled: "true", url: "x" })).status).toBe(400);
    expect(
      (await b.post(`/app/webhooks/${id}/enabled`, { enabled: "true" }, { csrf: "0".repeat(64) })).status,
    ).toBe(403);
  });

  it("webhooks.read sees no buttons and its POSTs are 403; another tenant's session gets 404", async () => {
    const r = await rig();
    const id = (
      await r.api("POST", "/v3/user/webhooks", { url: "https://hooks.example.com/y", enabled_events: ["*"] })
    ).body.id as string;
    const reader = await Browser.signIn(
      (await createLogin(r.tenant, [await createRole(r.tenant, ["webhooks.read"])])).email,
    );
    const page = await reader.get(`/app/webhooks/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(`/app/webhooks/${id}/enabled`);
    expect(page.text).not.toContain(`/app/webhooks/${id}/test`);
    expect((await reader.post(`/app/webhooks/${id}/enabled`, { enabled: "false" })).status).toBe(403);
    expect((await reader.post(`/app/webhooks/${id}/test`)).status).toBe(403);
    expect((await reader.post(`/app/webhooks/${id}/deliveries/dlv_x/retry`)).status).toBe(403);
    expect((await r.api("GET", `/v3/user/webhooks/${id}`)).body.enabled).toBe(true);
    expect(r.state.posts).toEqual([]);

    const other = await createTenant();
    const stranger = await Browser.signIn((await createLogin(other, ["admin"])).email);
    expect((await stranger.get("/app/webhooks")).text).not.toContain(id);
    expect((await stranger.get(`/app/webhooks/${id}`)).status).toBe(404);
    expect((await stranger.post(`/app/webhooks/${id}/enabled`, { enabled: "false" })).status).toBe(404);
    expect((await stranger.post(`/app/webhooks/${id}/test`)).status).toBe(404);
    expect((await stranger.get("/app/webhooks/settings")).status).toBe(404);
    expect((await r.api("GET", `/v3/user/webhooks/${id}`)).body.enabled).toBe(true);
  });
});
