/**
 * The dashboard's webhooks pages (docs/dashboard.md#pages), in workerd: the tenant's endpoints, an
 * endpoint's delivery log showing a real failed delivery made by its WebhookQueue object (the
 * object's clock, outbound fetch and DNS are handed in, as in webhooks.delivery.test.ts), the test
 * POST and its outcome, enable / disable as the API sees it, RBAC, CSRF and tenant binding.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../shared/ids.ts";
import { bearer, call, createApiKey, createTenant } from "./helpers.ts";
import { Browser, createLogin, createRole } from "./dashboard.helpers.ts";
import { alarmAdvancer, inQueue, keyApi } from "./webhooks.helpers.ts";

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
  const api = keyApi(key);
  const advance = alarmAdvancer(tenant, state);
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

  it("shows the SendGrid Event Webhook settings (never a secret), changes them through the API's checks and the SSRF guard, and tests its URL", async () => {
    const r = await rig();
    const seen: { url: string; auth: string | null; body: string }[] = [];
    await inQueue(r.tenant, (q) => {
      q.resolver = async (host) =>
        host === "hooks.example.com" || host === "auth.example.com"
          ? ["93.184.216.34"]
          : host === "internal.example.com"
            ? ["10.1.2.3"]
            : [];
      q.fetcher = async (req) => {
        const body = await req.text();
        seen.push({ url: req.url, auth: req.headers.get("authorization"), body });
        if (req.url === "https://auth.example.com/token")
          return Response.json({ access_token: "tok-1", token_type: "bearer", expires_in: 3600 });
        return new Response("x", { status: r.state.status });
      };
    });
    const admin = await Browser.signIn((await createLogin(r.tenant, ["admin"])).email);
    const empty = await admin.get("/app/webhooks");
    expect(empty.status).toBe(200);
    expect(empty.text).toContain("<dt>URL</dt><dd>not set</dd>");
    expect(empty.text).toContain("<dt>Events</dt><dd>none</dd>");
    expect(empty.text).toContain('action="/app/webhooks/event/settings"');
    // No URL yet: no test button, and the test post says why.
    expect(empty.text).not.toContain('action="/app/webhooks/event/settings/test"');
    const noUrl = await admin.post("/app/webhooks/event/settings/test");
    expect(noUrl.status).toBe(400);
    expect(noUrl.text).toContain("the Event Webhook has no URL: set one first");

    const save = (fields: Record<string, string>) => admin.post("/app/webhooks/event/settings", fields);
    const settings = async () => (await r.api("GET", "/v3/user/webhooks/event/settings")).body;
    expect(
      (
        await save({
          url: "https://hooks.example.com/sg",
          enabled: "true",
          delivered: "true",
          bounce: "true",
        })
      ).status,
    ).toBe(303);
    expect(await settings()).toMatchObject({
      enabled: true,
      url: "https://hooks.example.com/sg",
      delivered: true,
      bounce: true,
      processed: false,
      open: false,
    });
    // The API's signing and OAuth2: the page shows that they are on, never the client secret.
    expect((await r.api("PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: true })).status).toBe(
      200,
    );
    const clientSecret = `client-secret-${crypto.randomUUID()}`;
    expect(
      (
        await r.api("PATCH", "/v3/user/webhooks/event/settings", {
          oauth_client_id: "scaisend-client",
          oauth_client_secret: clientSecret,
          oauth_token_url: "https://auth.example.com/token",
        })
      ).status,
    ).toBe(200);
    const page = await admin.get("/app/webhooks");
    expect(page.text).toContain("<dd>https://hooks.example.com/sg</dd>");
    expect(page.text).toContain("<dt>State</dt><dd>enabled</dd>");
    expect(page.text).toContain("<dt>Events</dt><dd>delivered, bounce</dd>");
    expect(page.text).toContain("<dd>yes (ECDSA P-256, SendGrid&#39;s Signed Event Webhook)</dd>");
    expect(page.text).toContain("client scaisend-client, token URL https://auth.example.com/token");
    expect(page.text).not.toContain(clientSecret);
    expect(page.text).toMatch(/id="ew-delivered" name="delivered" type="checkbox" value="true" checked/);
    expect(page.text).not.toMatch(/id="ew-open" name="open" type="checkbox" value="true" checked/);

    // Test: the sample goes to the saved URL with the saved OAuth2 token, and the outcome is shown.
    r.state.status = 200;
    const tested = await admin.post("/app/webhooks/event/settings/test");
    expect(tested.status).toBe(200);
    expect(tested.text).toMatch(/Delivered: https:\/\/hooks\.example\.com\/sg answered 200 in \d+ ms/);
    const post = seen.find((p) => p.url === "https://hooks.example.com/sg")!;
    expect(post.auth).toBe("Bearer tok-1");
    expect(JSON.parse(post.body)[0]).toMatchObject({ event: "processed", email: "example@test.com" });
    r.state.status = 500;
    expect((await admin.post("/app/webhooks/event/settings/test")).text).toContain(
      "Failed: the test POST to https://hooks.example.com/sg failed: HTTP 500.",
    );

    // The API's refusals, as 400 pages; nothing changes.
    const before = await settings();
    for (const [fields, message] of [
      [{ url: "https://internal.example.com/in", enabled: "true" }, "resolves to a non-public address"],
      [{ url: "ftp://hooks.example.com/x" }, "url must be https://"],
      [{ url: `https://hooks.example.com/${"a".repeat(2100)}` }, "url may be at most 2048 characters"],
      [{ url: "", enabled: "true" }, "url is required to enable the Event Webhook"],
      [{ url: "https://hooks.example.com/sg", delivered: "yes" }, "delivered must be true when given"],
      [{ url: "https://hooks.example.com/sg", secret: "x" }, "Unknown form field: secret"],
      [{ enabled: "true" }, "url is required"],
    ] as [Record<string, string>, string][]) {
      const res = await save(fields);
      expect(res.status, JSON.stringify(fields)).toBe(400);
      expect(res.text, JSON.stringify(fields)).toContain(message);
    }
    expect(await settings()).toEqual(before);
    expect((await save({ url: "https://hooks.example.com/sg" })).status).toBe(303);
    expect(
      (await admin.post("/app/webhooks/event/settings", { url: "x" }, { csrf: "0".repeat(64) })).status,
    ).toBe(403);

    // Saved as shown while auto-disabled: stays off (as a PATCH of the flags alone); ticking Enabled resumes.
    await r.api("PATCH", "/v3/user/webhooks/event/settings", { enabled: true });
    await inQueue(r.tenant, (_q, st) =>
      st.storage.sql.exec(
        "UPDATE endpoint SET disabled_at = ?, failure_count = 10 WHERE id = 'event_settings'",
        r.state.now,
      ),
    );
    const off = await admin.get("/app/webhooks");
    expect(off.text).toContain("<dt>State</dt><dd>disabled after failures (");
    expect(off.text).not.toMatch(/id="ew-enabled" name="enabled" type="checkbox" value="true" checked/);
    expect((await save({ url: "https://hooks.example.com/sg", open: "true" })).status).toBe(303);
    expect(await settings()).toMatchObject({ enabled: false, open: true, delivered: false });
    expect((await admin.get("/app/webhooks")).text).toContain("disabled after failures");
    expect((await save({ url: "https://hooks.example.com/sg", enabled: "true", open: "true" })).status).toBe(
      303,
    );
    expect(await settings()).toMatchObject({ enabled: true, open: true });
    expect((await admin.get("/app/webhooks")).text).toContain("<dt>State</dt><dd>enabled</dd>");
    // A URL the guard refuses now can still be switched off: the unchanged URL is not re-checked.
    await inQueue(r.tenant, (q) => {
      q.resolver = async () => ["10.1.2.3"];
    });
    expect((await save({ url: "https://hooks.example.com/sg", open: "true" })).status).toBe(303);
    expect(await settings()).toMatchObject({ enabled: false, url: "https://hooks.example.com/sg" });

    // webhooks.read sees the settings without the forms, and its posts are 403; another tenant sees none of it.
    const reader = await Browser.signIn(
      (await createLogin(r.tenant, [await createRole(r.tenant, ["webhooks.read"])])).email,
    );
    const read = await reader.get("/app/webhooks");
    expect(read.text).toContain("<dd>https://hooks.example.com/sg</dd>");
    expect(read.text).not.toContain('action="/app/webhooks/event/settings"');
    expect((await reader.post("/app/webhooks/event/settings", { url: "" })).status).toBe(403);
    expect((await reader.post("/app/webhooks/event/settings/test")).status).toBe(403);
    const stranger = await Browser.signIn((await createLogin(await createTenant(), ["admin"])).email);
    expect((await stranger.get("/app/webhooks")).text).not.toContain("hooks.example.com/sg");
    expect((await settings()).url).toBe("https://hooks.example.com/sg");
  });

  it("the Event Webhook's delivery log on the page: a failed delivery is re-sent from it or through the API's settings route", async () => {
    const r = await rig();
    expect(
      (
        await r.api("PATCH", "/v3/user/webhooks/event/settings", {
          enabled: true,
          url: "https://hooks.example.com/sg",
          delivered: true,
        })
      ).status,
    ).toBe(200);
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
    while (r.state.posts.length < 6) expect(await r.advance()).not.toBeNull();
    const log = (await r.api("GET", "/v3/user/webhooks/event/settings/deliveries")).body.deliveries;
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ status: "failed", resend_until: expect.any(String) });
    const d = log[0].id as string;

    const admin = await Browser.signIn((await createLogin(r.tenant, ["admin"])).email);
    const page = await admin.get("/app/webhooks");
    expect(page.text).toContain('id="event-webhook-deliveries"');
    expect(page.text).toContain(`<td>${d}</td><td>failed</td>`);
    const action = `/app/webhooks/event/settings/deliveries/${d}/retry`;
    expect(page.text).toContain(`action="${action}"`);
    // Two clicks at once: one more attempt, which now succeeds.
    r.state.status = 200;
    expect((await Promise.all([admin.post(action), admin.post(action)])).map((x) => x.status)).toEqual([
      303, 303,
    ]);
    await r.advance();
    expect(r.state.posts).toHaveLength(7);
    expect(r.state.posts[6]).toBe("https://hooks.example.com/sg");
    const after = (await r.api("GET", "/v3/user/webhooks/event/settings/deliveries")).body.deliveries[0];
    expect(after).toMatchObject({ id: d, status: "succeeded" });
    expect(after.attempts).toHaveLength(7);
    expect((await admin.get("/app/webhooks")).text).not.toContain(`action="${action}"`);

    // The API's route: SendGrid's error shape; succeeded is a 400, an unknown delivery a 404.
    const again = await r.api("POST", `/v3/user/webhooks/event/settings/deliveries/${d}/retry`);
    expect(again.status).toBe(400);
    expect(again.body.errors[0].message).toMatch(/the delivery has succeeded/);
    expect((await r.api("POST", "/v3/user/webhooks/event/settings/deliveries/whd_nope/retry")).status).toBe(
      404,
    );
    expect((await admin.post("/app/webhooks/event/settings/deliveries/whd_nope/retry")).status).toBe(404);
    // The settings row is not reachable as an endpoint, nor an endpoint's delivery through the settings.
    expect((await r.api("POST", `/v3/user/webhooks/event_settings/deliveries/${d}/retry`)).status).toBe(404);
    const ep = (
      await r.api("POST", "/v3/user/webhooks", { url: "https://hooks.example.com/x", enabled_events: ["*"] })
    ).body.id as string;
    expect((await admin.post(`/app/webhooks/${ep}/deliveries/${d}/retry`)).status).toBe(404);
    // Another tenant's key or session: 404, and A's log is not on its page.
    const other = await createTenant();
    const otherKey = (await createApiKey(other, { scopes: ["webhooks.read", "webhooks.write"] })).key;
    const foreign = await call(`/v3/user/webhooks/event/settings/deliveries/${d}/retry`, {
      method: "POST",
      headers: bearer(otherKey),
    });
    expect(foreign.status).toBe(404);
    const stranger = await Browser.signIn((await createLogin(other, ["admin"])).email);
    expect((await stranger.post(action)).status).toBe(404);
    expect((await stranger.get("/app/webhooks")).text).not.toContain(d);
  });
});
