/**
 * SenderKit's /v1 surface (docs/api/senderkit.md) in the bundled Worker, run in workerd through
 * Miniflare (scripts/lib/miniflare-edge.ts): real D1, real OriginHub shards and their alarms. Every
 * /v1 answer is validated against the OpenAPI document with Ajv (test/helpers/openapi.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminClient } from "../../scripts/lib/admin-client.ts";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { freshSecrets, testWorkDir } from "../helpers/miniflare-fixture.ts";
import { OPENAPI_PATH, senderKitContract } from "../helpers/openapi.ts";

let edge: MiniflareEdge;
let workDir: string;
const secrets = freshSecrets();
const sk = senderKitContract();

interface Workspace {
  tenantId: string;
  live: string;
  test: string;
  domain: string;
}

async function mintKey(tenantId: string, environment: "live" | "test"): Promise<string> {
  const res = await fetch(`${edge.url}/api/admin/tenants/${tenantId}/api_keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${secrets.ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: `sk-${environment}`, environment, format: "senderkit" }),
  });
  expect(res.status, await res.clone().text()).toBe(201);
  const key = ((await res.json()) as { data: { api_key: string } }).data.api_key;
  expect(key).toMatch(new RegExp(`^sk_${environment}_[0-9a-f]{32}$`));
  return key;
}

async function workspace(name: string): Promise<Workspace> {
  const admin = new AdminClient(edge.url, secrets.ADMIN_TOKEN);
  const tenant = await admin.createTenant(name);
  const domain = `${name}.example.com`;
  const d = await admin.createDomain(tenant.id, domain);
  expect(d.verified).toBe(true);
  return {
    tenantId: tenant.id,
    live: await mintKey(tenant.id, "live"),
    test: await mintKey(tenant.id, "test"),
    domain,
  };
}

/** A /v1 call whose answer is checked against the OpenAPI; returns status, headers and JSON body. */
async function v1(
  key: string | null,
  method: string,
  p: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(`${edge.url}${p}`, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const h = res.headers;
  const status = res.status;
  return { status, headers: h, body: await sk.check(method, p, res) };
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let a: Workspace;
let b: Workspace;

beforeAll(async () => {
  workDir = testWorkDir("senderkit-api");
  edge = await startMiniflareEdge({
    persistDir: path.join(workDir, "edge"),
    // DEV_MODE: a sender domain counts as verified when added (no DNS to publish to here).
    vars: { ...secrets, DEV_MODE: "true" },
  });
  a = await workspace(`ska${Date.now().toString(36)}`);
  b = await workspace(`skb${Date.now().toString(36)}`);
}, 180_000);

afterAll(async () => {
  await edge?.stop();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

describe("SenderKit /v1", () => {
  it("serves the OpenAPI document as JSON, equal to the YAML contract", async () => {
    const res = await fetch(`${edge.url}/v1/openapi.json`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(parse(fs.readFileSync(OPENAPI_PATH, "utf8")));
  });

  it("refuses missing, malformed, unknown and /v3 keys with 401 unauthorized; unknown routes are 404", async () => {
    for (const key of [null, "nope", `sk_live_${"0".repeat(32)}`, "sg_live_" + "a".repeat(32)]) {
      const r = await v1(key, "GET", "/v1/context");
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe("unauthorized");
    }
    // An sk_ key is not a /v3 credential.
    const v3 = await fetch(`${edge.url}/v3/messages`, { headers: { authorization: `Bearer ${a.live}` } });
    expect(v3.status).toBe(401);
    const res = await fetch(`${edge.url}/v1/nothing-here`, {
      headers: { authorization: `Bearer ${a.live}` },
    });
    expect(res.status).toBe(404);
    expect(((await res.json()) as any).error.code).toBe("not_found");
  });

  it("a SenderKit key stays one when rotated through /v3/api_keys, and the old secret stops working", async () => {
    const admin = new AdminClient(edge.url, secrets.ADMIN_TOKEN);
    const manager = await admin.createApiKey(a.tenantId, {
      name: "keys",
      environment: "live",
      scopes: ["admin.api_keys"],
    });
    const mint = await fetch(`${edge.url}/api/admin/tenants/${a.tenantId}/api_keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${secrets.ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "rotate-me", environment: "test", format: "senderkit" }),
    });
    const old = ((await mint.json()) as { data: { id: string; api_key: string } }).data;
    expect((await v1(old.api_key, "GET", "/v1/context")).status).toBe(200);
    const rotated = await fetch(`${edge.url}/v3/api_keys/${old.id}/rotate`, {
      method: "POST",
      headers: { authorization: `Bearer ${manager.api_key}` },
    });
    expect(rotated.status, await rotated.clone().text()).toBe(200);
    const fresh = ((await rotated.json()) as { api_key: string }).api_key;
    expect(fresh).toMatch(/^sk_test_[0-9a-f]{32}$/);
    expect((await v1(fresh, "GET", "/v1/context")).body.mode).toBe("test");
    expect((await v1(old.api_key, "GET", "/v1/context")).status).toBe(401);
  });

  it("GET /v1/context names the workspace and the key's mode", async () => {
    const live = await v1(a.live, "GET", "/v1/context");
    const test = await v1(a.test, "GET", "/v1/context");
    expect(live.status).toBe(200);
    expect(live.body.mode).toBe("live");
    expect(test.body.mode).toBe("test");
    expect(test.body.workspace).toEqual(live.body.workspace);
    const other = await v1(b.live, "GET", "/v1/context");
    expect(other.body.workspace.id).not.toBe(live.body.workspace.id);
  });

  it("validates sends: E.164, envelope on sms, template and content together, scheduledAt offset and range", async () => {
    const bad = [
      [{ channel: "sms", to: "0612345678", content: { body: "hi" } }, "invalid_request"],
      [
        { channel: "sms", to: "+31612345678", content: { body: "hi", cc: ["x@example.com"] } },
        "envelope_not_supported",
      ],
      [
        { template: "welcome", channel: "email", to: "x@example.com", content: { subject: "s", html: "h" } },
        "invalid_request",
      ],
      [{ channel: "email", to: "x@example.com", content: { subject: "s" } }, "invalid_request"],
      [
        {
          channel: "email",
          to: "x@example.com",
          content: { subject: "s", html: "h" },
          scheduledAt: "2030-01-01T00:00:00",
        },
        "invalid_request",
      ],
      [
        {
          channel: "email",
          to: "x@example.com",
          content: { subject: "s", html: "h" },
          scheduledAt: new Date(Date.now() + 31 * 86400_000).toISOString(),
        },
        "invalid_request",
      ],
      [
        { channel: "email", to: "x@example.com", content: { subject: "s", html: "h" }, unknownField: 1 },
        "invalid_request",
      ],
      [{ channel: "web-push", to: "{}", content: { title: "t", body: "b" } }, "invalid_request"],
      ["{not json", "invalid_request"],
    ] as const;
    for (const [body, code] of bad) {
      const r = await v1(a.test, "POST", "/v1/send", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe(code);
    }
    const e164 = await v1(a.test, "POST", "/v1/send", bad[0][0]);
    expect(e164.body.error.issues[0].path).toEqual(["to"]);
  });

  it("a live send on a channel with no provider connection is 400 provider_not_configured; test mode sends it", async () => {
    const body = { channel: "sms", to: "+31612345678", content: { body: "Your code is 123456" } };
    const live = await v1(a.live, "POST", "/v1/send", body);
    expect(live.status).toBe(400);
    expect(live.body.error.code).toBe("provider_not_configured");
    const test = await v1(a.test, "POST", "/v1/send", body);
    expect(test.status).toBe(202);
    expect(test.body).toMatchObject({ status: "queued", livemode: false });
  });

  it("test mode synthesizes queued → rendered → dispatched → sent → delivered, and keeps modes and workspaces apart", async () => {
    const sent = await v1(a.test, "POST", "/v1/send", {
      channel: "email",
      to: "ada@example.com",
      content: { subject: "Hi {{name}}", html: "<p>Hello {{name}}</p>" },
      interpolate: true,
      vars: { name: "Ada" },
      metadata: { userId: "usr_1", order: 42, vip: true },
    });
    expect(sent.status).toBe(202);
    const id = sent.body.id as string;
    // Read-your-writes at once, then delivered.
    const first = await v1(a.test, "GET", `/v1/messages/${id}`);
    expect(first.status).toBe(200);
    const done = await until("delivered", async () => {
      const r = await v1(a.test, "GET", `/v1/messages/${id}`);
      return r.body.status === "delivered" ? r.body : undefined;
    });
    expect(done.timeline.map((t: { e: string }) => t.e)).toEqual([
      "queued",
      "rendered",
      "dispatched",
      "sent",
      "delivered",
    ]);
    expect(done).toMatchObject({
      publicId: id,
      livemode: false,
      channel: "email",
      interpolate: true,
      recipient: "ada@example.com",
    });
    // The other mode and the other workspace do not see it.
    expect((await v1(a.live, "GET", `/v1/messages/${id}`)).status).toBe(404);
    const foreign = await v1(b.test, "GET", `/v1/messages/${id}`);
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.code).toBe("not_found");
    expect((await v1(b.test, "DELETE", `/v1/messages/${id}`)).status).toBe(404);

    // Metadata containment with coercion, AND-ed; cursor paging.
    const hit = await v1(
      a.test,
      "GET",
      "/v1/messages?metadata[order]=42&metadata[vip]=true&metadata[userId]=usr_1",
    );
    expect(hit.body.data.map((m: { publicId: string }) => m.publicId)).toEqual([id]);
    const miss = await v1(a.test, "GET", "/v1/messages?metadata[order]=43");
    expect(miss.body.data).toEqual([]);
    const bad = await v1(a.test, "GET", "/v1/messages?status=bogus");
    expect(bad.status).toBe(400);
    expect((await v1(a.test, "GET", "/v1/messages?limit=0")).status).toBe(400);
  }, 30_000);

  it("pages with nextCursor, newest first, without repeats", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await v1(b.test, "POST", "/v1/send", {
        channel: "push",
        to: `tok-${i}`,
        content: { title: "t", body: `b${i}` },
      });
      ids.push(r.body.id);
    }
    await until("all in D1", async () => {
      const r = await v1(b.test, "GET", "/v1/messages?channel=push&limit=200");
      return r.body.data.length >= 5 ? true : undefined;
    });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r: { body: { data: { publicId: string }[]; nextCursor: string | null } } = await v1(
        b.test,
        "GET",
        `/v1/messages?channel=push&limit=2${cursor ? `&cursor=${cursor}` : ""}`,
      );
      seen.push(...r.body.data.map((m) => m.publicId));
      cursor = r.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
  });

  it("Idempotency-Key: concurrent duplicates make exactly one message; another body is 422", async () => {
    for (const key of [a.test, a.live]) {
      const idem = `order-${key.slice(3, 7)}-${Date.now()}`;
      const body = {
        channel: "email",
        to: "grace@example.com",
        from: `hello@${a.domain}`,
        content: { subject: "Receipt", html: "<p>Thanks</p>" },
      };
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => v1(key, "POST", "/v1/send", body, { "idempotency-key": idem })),
      );
      expect(answers.map((r) => r.status)).toEqual(Array(8).fill(202));
      expect(new Set(answers.map((r) => r.body.id)).size).toBe(1);
      expect(answers.filter((r) => r.headers.get("idempotent-replayed") === "true").length).toBe(7);
      const other = await v1(
        key,
        "POST",
        "/v1/send",
        { ...body, to: "other@example.com" },
        { "idempotency-key": idem },
      );
      expect(other.status).toBe(422);
      const list = await until("listed", async () => {
        const r = await v1(key, "GET", "/v1/messages?limit=200");
        const mine = r.body.data.filter((m: { idempotencyKey: string | null }) => m.idempotencyKey === idem);
        return mine.length > 0 ? mine : undefined;
      });
      expect(list.length).toBe(1);
    }
  });

  it("cancels a scheduled message once; a second cancel and a delivered message are 409 not_cancelable", async () => {
    for (const key of [a.test, a.live]) {
      const at = new Date(Date.now() + 3600_000).toISOString().replace("Z", "+00:00");
      const r = await v1(key, "POST", "/v1/send", {
        channel: "email",
        to: "linus@example.com",
        from: `hello@${a.domain}`,
        content: { subject: "Later", html: "<p>Later</p>" },
        scheduledAt: at,
      });
      expect(r.body.status).toBe("scheduled");
      const got = await v1(key, "GET", `/v1/messages/${r.body.id}`);
      expect(got.body.status).toBe("scheduled");
      const cancel = await v1(key, "DELETE", `/v1/messages/${r.body.id}`);
      expect(cancel.status).toBe(200);
      expect(cancel.body).toEqual({ id: r.body.id, status: "canceled" });
      const again = await until("canceled read", async () => {
        const x = await v1(key, "GET", `/v1/messages/${r.body.id}`);
        return x.body.status === "canceled" ? x : undefined;
      });
      expect(again.body.status).toBe("canceled");
      const twice = await v1(key, "DELETE", `/v1/messages/${r.body.id}`);
      expect(twice.status).toBe(409);
      expect(twice.body.error.code).toBe("not_cancelable");
      expect(twice.body.error.message).toContain("canceled");
    }
  });

  it("cancel racing the test-mode lifecycle: either canceled for good or 409 with the status it reached", async () => {
    const outcomes = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await v1(a.test, "POST", "/v1/send", {
        channel: "sms",
        to: "+14155550123",
        content: { body: "x" },
      });
      await new Promise((res) => setTimeout(res, i * 40));
      const c = await v1(a.test, "DELETE", `/v1/messages/${r.body.id}`);
      const final = await until("terminal", async () => {
        const x = await v1(a.test, "GET", `/v1/messages/${r.body.id}`);
        return ["canceled", "delivered"].includes(x.body.status) ? x.body : undefined;
      });
      if (c.status === 200) expect(final.status).toBe("canceled");
      else {
        expect(c.status).toBe(409);
        expect(final.status).toBe("delivered");
        expect(final.timeline.map((t: { e: string }) => t.e)).not.toContain("canceled");
      }
      outcomes.add(String(c.status));
    }
    expect(outcomes.has("200")).toBe(true);
  }, 60_000);

  it("?tail=1 streams a backfill, ready, then a message sent after connecting", async () => {
    const ctl = new AbortController();
    const res = await fetch(`${edge.url}/v1/messages?tail=1`, {
      headers: { authorization: `Bearer ${b.test}` },
      signal: ctl.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = "";
    const events: { event: string; data: any }[] = [];
    const next = async (pred: (e: { event: string; data: any }) => boolean) =>
      until("an SSE event", async () => {
        const found = events.find(pred);
        if (found) return found;
        const { value, done } = await reader.read();
        if (done) throw new Error("stream ended");
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
        return undefined;
      });
    await next((e) => e.event === "ready");
    for (const e of events.filter((x) => x.event === "message")) sk.component("Message", e.data);
    const sent = await v1(b.test, "POST", "/v1/send", {
      channel: "sms",
      to: "+14155550199",
      content: { body: "live tail" },
    });
    const live = await next((e) => e.event === "message" && e.data.publicId === sent.body.id);
    sk.component("Message", live.data);
    const delivered = await next(
      (e) => e.event === "message" && e.data.publicId === sent.body.id && e.data.status === "delivered",
    );
    expect(delivered.data.channel).toBe("sms");
    ctl.abort();
  }, 30_000);

  it("the monthly quota: soft limit plus grace for live sends, then 402 message_limit_reached; test sends never count", async () => {
    const q = await workspace(`skq${Date.now().toString(36)}`);
    const put = await fetch(`${edge.url}/api/admin/tenants/${q.tenantId}/senderkit_quota`, {
      method: "PUT",
      headers: { authorization: `Bearer ${secrets.ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ monthly_limit: 5, grace_percent: 20 }),
    });
    expect(put.status, await put.clone().text()).toBe(200);
    expect(((await put.json()) as { data: { cap: number } }).data.cap).toBe(6);
    const body = { channel: "email", to: "q@example.com", content: { subject: "s", html: "<p>h</p>" } };
    // An idempotent replay is charged once.
    const first = await v1(q.live, "POST", "/v1/send", body, { "idempotency-key": "quota-1" });
    const replay = await v1(q.live, "POST", "/v1/send", body, { "idempotency-key": "quota-1" });
    expect([first.status, replay.status, replay.body.id]).toEqual([202, 202, first.body.id]);
    // Concurrent sends cannot overshoot the cap (5 + 20 % = 6): 5 more are accepted.
    const answers = await Promise.all(Array.from({ length: 9 }, () => v1(q.live, "POST", "/v1/send", body)));
    expect(answers.filter((r) => r.status === 202).length).toBe(5);
    const refused = answers.filter((r) => r.status === 402);
    expect(refused.length).toBe(4);
    expect(refused[0]!.body.error.code).toBe("message_limit_reached");
    // Test mode is not charged at all.
    expect((await v1(q.test, "POST", "/v1/send", body)).status).toBe(202);
    const got = await fetch(`${edge.url}/api/admin/tenants/${q.tenantId}/senderkit_quota`, {
      headers: { authorization: `Bearer ${secrets.ADMIN_TOKEN}` },
    });
    expect(((await got.json()) as { data: { used: number } }).data.used).toBe(6);
  });

  it("a live email is accepted by its hub shard and read back at once (queued until an origin takes it)", async () => {
    const r = await v1(a.live, "POST", "/v1/send", {
      channel: "email",
      to: "margaret@example.com",
      content: { subject: "Welcome", html: "<h1>Welcome</h1><p>Glad you are here.</p>", preheader: "Hello" },
      metadata: { plan: "pro" },
    });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ status: "queued", livemode: true });
    const got = await v1(a.live, "GET", `/v1/messages/${r.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({
      status: "queued",
      channel: "email",
      provider: "scaisend",
      metadata: { plan: "pro" },
    });
    const listed = await until("in the catalog", async () => {
      const x = await v1(a.live, "GET", "/v1/messages?metadata[plan]=pro");
      return x.body.data.length === 1 ? x.body.data[0] : undefined;
    });
    expect(listed.publicId).toBe(r.body.id);
    // An unverified From domain is refused.
    const foreign = await v1(a.live, "POST", "/v1/send", {
      channel: "email",
      to: "x@example.com",
      from: "someone@not-ours.example",
      content: { subject: "s", html: "<p>h</p>" },
    });
    expect(foreign.status).toBe(400);
  });
});
