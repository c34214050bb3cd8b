/**
 * Re-sending a failed webhook delivery (docs/api/webhooks.md#retry-now), in workerd: a delivery
 * that used up its six attempts keeps its body for WEBHOOK_RESEND_RETENTION_MS (within a per-endpoint
 * cap), `POST …/deliveries/{id}/retry` makes one more attempt of the same delivery through the
 * queue's pump (same id and body, signed afresh), the alarm sweeps expired bodies, and clicks that
 * race, or a click while the attempt is under way, make one POST. The object's clock, outbound fetch
 * and resolver are handed in as in webhooks.delivery.test.ts, so the schedule runs in compressed
 * time through its real alarms.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../shared/ids.ts";
import { loadConfig, type Bindings } from "../../edge/src/env.ts";
import { createApiKey, createTenant } from "./helpers.ts";
import { Browser, createLogin } from "./dashboard.helpers.ts";
import { alarmAdvancer, inQueue, keyApi } from "./webhooks.helpers.ts";

interface Post {
  url: string;
  headers: Record<string, string>;
  body: string;
  at: number;
}

const DAY = 24 * 3600_000;

async function hmacHex(secret: string, data: string): Promise<string> {
  const k = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", k, new TextEncoder().encode(data)));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function rig() {
  const tenant = await createTenant();
  const key = (await createApiKey(tenant, { scopes: ["webhooks.read", "webhooks.write"] })).key;
  const stub = env.WEBHOOK_QUEUE.getByName(tenant);
  const state = {
    // Far ahead of the real clock: alarms set on this clock never fire on their own during a test.
    now: Date.now() + 30 * DAY,
    posts: [] as Post[],
    respond: (_p: Post): Response | Promise<Response> => new Response("down", { status: 503 }),
  };
  await inQueue(tenant, (q) => {
    q.clock = () => state.now;
    q.resolver = async (host) => (host === "hooks.example.com" ? ["93.184.216.34"] : []);
    q.fetcher = async (req) => {
      const post: Post = {
        url: req.url,
        headers: Object.fromEntries(req.headers),
        body: await req.text(),
        at: state.now,
      };
      state.posts.push(post);
      return state.respond(post);
    };
  });
  const api = keyApi(key);
  const advance = alarmAdvancer(tenant, state);
  const endpoint = async () => {
    const created = await api("POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/x",
      enabled_events: ["*"],
    });
    expect(created.status).toBe(201);
    return { id: created.body.id as string, secret: created.body.signing_secret as string };
  };
  /**
   * One delivery of one event, failed after its six attempts (503 each). The endpoint is enabled
   * first, which restarts its count of failures in a row: a second failed delivery would otherwise
   * reach the auto-disable at 10.
   */
  const failedDelivery = async (id: string, who = "rcpt") => {
    expect((await api("PATCH", `/v3/user/webhooks/${id}`, { enabled: true })).status).toBe(200);
    state.respond = () => new Response("down", { status: 503 });
    await stub.enqueue(tenant, [
      {
        id: newId("evt", state.now),
        tenantId: tenant,
        messageId: "msg_01TEST",
        eventType: "delivered",
        recipientEmail: `${who}@inbox.test`,
        timestamp: state.now,
        attempt: 1,
        metadata: {},
      },
    ]);
    const before = state.posts.length;
    while (state.posts.length < before + 6) expect(await advance()).not.toBeNull();
    const log = (await api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries as any[];
    const d = log.find((x) => x.status === "failed" && x.attempts.length === 6);
    expect(d).toBeDefined();
    return d as { id: string; finished_at: string; resend_until: string | null };
  };
  const row = (deliveryId: string) =>
    inQueue(tenant, (_q, st) =>
      st.storage.sql
        .exec<{ state: string; body: string | null; body_until: number | null; next_at: number | null }>(
          "SELECT state, body, body_until, next_at FROM delivery WHERE id = ?",
          deliveryId,
        )
        .one(),
    );
  const deliveries = async (id: string) =>
    (await api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries as any[];
  return { tenant, stub, state, api, advance, endpoint, failedDelivery, row, deliveries };
}

const retryPath = (id: string, d: string) => `/v3/user/webhooks/${id}/deliveries/${d}/retry`;

describe("re-sending a failed delivery", () => {
  it("keeps the body of a failed delivery; a retry is one more attempt of the same delivery, signed afresh, and the log shows it", async () => {
    const r = await rig();
    const ep = await r.endpoint();
    const d = await r.failedDelivery(ep.id);
    const failedAt = Date.parse(d.finished_at);
    expect(d.resend_until).toBe(new Date(failedAt + 3 * DAY).toISOString());
    const kept = await r.row(d.id);
    expect(kept.body).toBe(r.state.posts[0]!.body);
    // The only alarm left is the sweep of that body.
    expect(await r.stub.alarmAt()).toBe(failedAt + 3 * DAY);

    r.state.now += 3600_000;
    r.state.respond = () => new Response("ok");
    const res = await r.api("POST", retryPath(ep.id, d.id));
    expect(res.status).toBe(202);
    const waiting = (await r.deliveries(ep.id))[0];
    expect(waiting).toMatchObject({ id: d.id, status: "pending", finished_at: null, resend_until: null });
    expect(await r.stub.alarmAt()).toBeLessThanOrEqual(r.state.now);
    await r.advance();
    expect(r.state.posts).toHaveLength(7);
    const post = r.state.posts[6]!;
    expect(post.body).toBe(r.state.posts[0]!.body);
    expect(post.headers["x-scaisend-delivery-id"]).toBe(d.id);
    const ts = post.headers["x-scaisend-timestamp"]!;
    expect(ts).toBe(String(Math.floor(r.state.now / 1000)));
    expect(ts).not.toBe(r.state.posts[5]!.headers["x-scaisend-timestamp"]);
    expect(post.headers["x-scaisend-signature"]).toBe(
      `sha256=${await hmacHex(ep.secret, `${ts}.${post.body}`)}`,
    );

    const done = (await r.deliveries(ep.id))[0];
    expect(done).toMatchObject({ id: d.id, status: "succeeded", resend_until: null });
    expect(done.attempts.map((a: any) => a.status_code)).toEqual([503, 503, 503, 503, 503, 503, 200]);
    expect(done.attempts[6].at).toBe(new Date(r.state.now).toISOString());
    // Delivered: its body goes at once, and a second retry is a 400 naming the state.
    expect((await r.row(d.id)).body).toBeNull();
    const again = await r.api("POST", retryPath(ep.id, d.id));
    expect(again.status).toBe(400);
    expect(again.body.detail).toMatch(/the delivery has succeeded/);
    expect(r.state.posts).toHaveLength(7);
  });

  it("a re-send that fails again is failed at once with its retention unchanged; past it the alarm sweeps the body and a retry says it expired", async () => {
    const r = await rig();
    const ep = await r.endpoint();
    const d = await r.failedDelivery(ep.id);
    const until = Date.parse(d.resend_until!);
    r.state.now += DAY;
    expect((await r.api("POST", retryPath(ep.id, d.id))).status).toBe(202);
    await r.advance();
    expect(r.state.posts).toHaveLength(7);
    const failedAgain = (await r.deliveries(ep.id))[0];
    // One attempt, no new schedule: failed again, re-sendable until the same moment.
    expect(failedAgain).toMatchObject({
      status: "failed",
      next_attempt_at: null,
      resend_until: d.resend_until,
    });
    expect(failedAgain.attempts).toHaveLength(7);
    expect(failedAgain.finished_at).toBe(new Date(r.state.now).toISOString());

    // The alarm is the sweep at the retention's end; it drops the body and keeps the log entry.
    expect(await r.stub.alarmAt()).toBe(until);
    expect(await r.advance()).toBe(until);
    expect(await r.row(d.id)).toMatchObject({ state: "failed", body: null });
    expect(await r.stub.alarmAt()).toBeNull();
    const log = (await r.deliveries(ep.id))[0];
    expect(log).toMatchObject({ id: d.id, status: "failed", resend_until: null });
    const expired = await r.api("POST", retryPath(ep.id, d.id));
    expect(expired.status).toBe(400);
    expect(expired.body.detail).toBe(
      "the delivery failed and its body has expired: a failed delivery can be re-sent for 72 h after it failed",
    );
    expect(r.state.posts).toHaveLength(7);
  });

  it("an expired body is refused even before the sweep has run", async () => {
    const r = await rig();
    const ep = await r.endpoint();
    const d = await r.failedDelivery(ep.id);
    r.state.now = Date.parse(d.resend_until!);
    const res = await r.api("POST", retryPath(ep.id, d.id));
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(/its body has expired/);
    // A failure recorded before bodies were kept (no body, no retention) reads the same.
    await inQueue(r.tenant, (_q, st) =>
      st.storage.sql.exec("UPDATE delivery SET body = NULL, body_until = NULL WHERE id = ?", d.id),
    );
    r.state.now -= DAY;
    expect((await r.api("POST", retryPath(ep.id, d.id))).body.detail).toMatch(/its body has expired/);
    expect(r.state.posts).toHaveLength(6);
  });

  it("two retries at once make one attempt; a retry while that attempt's POST is under way makes none", async () => {
    const r = await rig();
    const ep = await r.endpoint();
    const d = await r.failedDelivery(ep.id);
    const [a, b] = await Promise.all([
      r.api("POST", retryPath(ep.id, d.id)),
      r.api("POST", retryPath(ep.id, d.id)),
    ]);
    expect([a.status, b.status]).toEqual([202, 202]);
    // Hold the receiver's answer: the POST is under way while more retries arrive.
    // The promise is made in the object's context, so it is settled from there too (inQueue).
    let release!: (res: Response) => void;
    r.state.respond = () => new Promise<Response>((resolve) => (release = resolve));
    const at = await r.stub.alarmAt();
    r.state.now = Math.max(r.state.now, at!);
    const alarm = runDurableObjectAlarm(r.stub);
    for (let i = 0; i < 100 && r.state.posts.length < 7; i++) await new Promise((s) => setTimeout(s, 10));
    expect(r.state.posts).toHaveLength(7);
    const during = await Promise.all([
      r.api("POST", retryPath(ep.id, d.id)),
      r.api("POST", retryPath(ep.id, d.id)),
    ]);
    expect(during.map((x) => x.status)).toEqual([202, 202]);
    await inQueue(r.tenant, () => release(new Response("ok")));
    await alarm;
    // Whatever is scheduled now, nothing is due: the retries during the POST added no attempt.
    for (let i = 0; i < 3; i++) await r.advance();
    expect(r.state.posts).toHaveLength(7);
    const log = (await r.deliveries(ep.id))[0];
    expect(log).toMatchObject({ id: d.id, status: "succeeded" });
    expect(log.attempts).toHaveLength(7);
  });

  it("an endpoint keeps at most resendCapBytes of failed bodies, the newest first; an older one past the cap says so", async () => {
    const r = await rig();
    const ep = await r.endpoint();
    const first = await r.failedDelivery(ep.id, "first");
    const size = new TextEncoder().encode((await r.row(first.id)).body!).length;
    // Room for one body (and a bit), not two.
    await inQueue(r.tenant, (q) => {
      q.resendCapBytes = size + 10;
    });
    r.state.now += 60_000;
    const second = await r.failedDelivery(ep.id, "second");
    expect(second.id).not.toBe(first.id);
    expect((await r.row(first.id)).body).toBeNull();
    expect((await r.row(second.id)).body).not.toBeNull();
    const log = await r.deliveries(ep.id);
    expect(log.find((x) => x.id === first.id).resend_until).toBeNull();
    expect(log.find((x) => x.id === second.id).resend_until).not.toBeNull();
    const refused = await r.api("POST", retryPath(ep.id, first.id));
    expect(refused.status).toBe(400);
    expect(refused.body.detail).toBe(
      `the delivery failed and its body is no longer kept: an endpoint keeps at most ${size + 10} bytes of failed deliveries for re-sending, the newest first`,
    );
    r.state.respond = () => new Response("ok");
    expect((await r.api("POST", retryPath(ep.id, second.id))).status).toBe(202);
    await r.advance();
    expect(r.state.posts.at(-1)!.body).toContain("second@inbox.test");
  });

  it("a failed delivery of a disabled endpoint is a 400 until the endpoint is enabled, which does not re-send it by itself", async () => {
    const r = await rig();
    const ep = await r.endpoint();
    const d = await r.failedDelivery(ep.id);
    expect((await r.api("PATCH", `/v3/user/webhooks/${ep.id}`, { enabled: false })).status).toBe(200);
    const off = await r.api("POST", retryPath(ep.id, d.id));
    expect(off.status).toBe(400);
    expect(off.body.detail).toMatch(/the endpoint is disabled/);
    expect((await r.api("PATCH", `/v3/user/webhooks/${ep.id}`, { enabled: true })).status).toBe(200);
    r.state.respond = () => new Response("ok");
    // Enabling sends pending deliveries; a failed one stays failed until someone re-sends it.
    const at = await r.stub.alarmAt();
    if (at !== null && at <= r.state.now) await runDurableObjectAlarm(r.stub);
    expect(r.state.posts).toHaveLength(6);
    expect((await r.deliveries(ep.id))[0].status).toBe("failed");
    expect((await r.api("POST", retryPath(ep.id, d.id))).status).toBe(202);
    await r.advance();
    expect(r.state.posts).toHaveLength(7);
    expect((await r.deliveries(ep.id))[0].status).toBe("succeeded");
  });

  it("the dashboard's Re-send button is the same call, shown only while the body is kept", async () => {
    const r = await rig();
    const ep = await r.endpoint();
    const d = await r.failedDelivery(ep.id);
    const b = await Browser.signIn((await createLogin(r.tenant, ["admin"])).email);
    const action = `/app/webhooks/${ep.id}/deliveries/${d.id}/retry`;
    const page = await b.get(`/app/webhooks/${ep.id}`);
    expect(page.text).toContain(`action="${action}"`);
    expect(page.text).toContain(`aria-label="Re-send ${d.id}"`);
    expect(page.text).toContain(`re-sendable until ${d.resend_until}`);
    // Two clicks at once: one attempt.
    r.state.respond = () => new Response("ok");
    const clicks = await Promise.all([b.post(action), b.post(action)]);
    expect(clicks.map((c) => c.status)).toEqual([303, 303]);
    await r.advance();
    expect(r.state.posts).toHaveLength(7);
    const after = await b.get(`/app/webhooks/${ep.id}`);
    expect(after.text).toContain(`<td>${d.id}</td><td>succeeded</td>`);
    expect(after.text).not.toContain(`action="${action}"`);
    // Expired: no button, and the page says why.
    const other = await r.failedDelivery(ep.id, "other");
    r.state.now = Date.parse(other.resend_until!) + 1;
    const late = await b.get(`/app/webhooks/${ep.id}`);
    expect(late.text).not.toContain(`/deliveries/${other.id}/retry`);
    expect(late.text).toContain("body expired; cannot be re-sent");
    const refused = await b.post(`/app/webhooks/${ep.id}/deliveries/${other.id}/retry`);
    expect(refused.status).toBe(400);
    expect(refused.text).toContain("its body has expired");
  });
});

describe("WEBHOOK_RESEND_RETENTION_MS", () => {
  const envWith = (v: string | undefined) => ({ ...env, WEBHOOK_RESEND_RETENTION_MS: v }) as Bindings;
  it("defaults to 3 days and is at most the log's 7 days", () => {
    const def = loadConfig(envWith(undefined));
    expect(def.ok && def.config.WEBHOOK_RESEND_RETENTION_MS).toBe(3 * DAY);
    const one = loadConfig(envWith(String(DAY)));
    expect(one.ok && one.config.WEBHOOK_RESEND_RETENTION_MS).toBe(DAY);
    for (const bad of [String(7 * DAY + 1), "0", "-5", "three days"]) {
      const r = loadConfig(envWith(bad));
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.problems.join(), bad).toMatch(/^WEBHOOK_RESEND_RETENTION_MS: /);
    }
  });
});
