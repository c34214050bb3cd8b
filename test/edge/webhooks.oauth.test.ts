/**
 * OAuth2 client credentials for webhook POSTs (docs/api/webhooks.md#oauth2): the configuration in
 * both dialects (the secret never shown, sealed at rest), the token request (RFC 6749 §4.4 with HTTP
 * Basic client authentication), the bearer token on the POSTs, kept until it expires, renewed after
 * a 401, and the failures: a token URL that errs, redirects or points at a private address. The
 * tenant's WebhookQueue runs on a fake clock with its fetcher and resolver handed in (as in
 * webhooks.delivery.test.ts): the token endpoint and the receiver are that fetcher.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../shared/ids.ts";
import type { FlushedEvent } from "../../edge/src/services/webhook-events.ts";
import { createApiKey, createTenant } from "./helpers.ts";
import { alarmAdvancer, inQueue, keyApi } from "./webhooks.helpers.ts";

interface Seen {
  url: string;
  headers: Record<string, string>;
  body: string;
}

const OAUTH = {
  oauth_client_id: "client one",
  oauth_client_secret: "s3cr:et+&",
  oauth_token_url: "https://auth.example.com/token",
};

async function rig() {
  const tenant = await createTenant();
  const key = (await createApiKey(tenant, { scopes: ["webhooks.read", "webhooks.write"] })).key;
  const stub = env.WEBHOOK_QUEUE.getByName(tenant);
  const state = {
    now: Date.now() + 30 * 24 * 3600_000,
    token: [] as Seen[],
    posts: [] as Seen[],
    issued: 0,
    tokenAnswer: (): Response =>
      Response.json({ access_token: `tok-${++state.issued}`, token_type: "Bearer", expires_in: 3600 }),
    respond: (_p: Seen): Response => new Response("ok"),
    dns: {
      "hooks.example.com": ["93.184.216.34"],
      "auth.example.com": ["93.184.216.35"],
      "internal.example.com": ["10.0.0.7"],
    } as Record<string, string[]>,
  };
  await inQueue(tenant, (q) => {
    q.clock = () => state.now;
    q.resolver = async (host) => state.dns[host] ?? [];
    q.fetcher = async (req) => {
      const seen = { url: req.url, headers: Object.fromEntries(req.headers), body: await req.text() };
      if (new URL(req.url).hostname === "auth.example.com") {
        state.token.push(seen);
        return state.tokenAnswer();
      }
      state.posts.push(seen);
      return state.respond(seen);
    };
  });
  const api = keyApi(key);
  const advance = alarmAdvancer(tenant, state);
  const event = (over: Partial<FlushedEvent> = {}): FlushedEvent => ({
    id: newId("evt", state.now),
    tenantId: tenant,
    messageId: "msg_01OAUTH",
    eventType: "delivered",
    recipientEmail: `r${state.posts.length}@inbox.test`,
    timestamp: state.now,
    attempt: 1,
    metadata: {},
    ...over,
  });
  return { tenant, stub, state, api, advance, event };
}

describe("webhook OAuth2 client credentials", () => {
  it("asks for a token with the client credentials grant and sends it as a bearer token, kept until it expires", async () => {
    const r = await rig();
    const created = await r.api("POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/in",
      enabled_events: ["delivered"],
      ...OAUTH,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({
      oauth_client_id: "client one",
      oauth_token_url: "https://auth.example.com/token",
    });
    expect(JSON.stringify(created.body)).not.toContain(OAUTH.oauth_client_secret);
    // Sealed at rest: the stored value is not the secret, nor does it contain it.
    const stored = await inQueue(r.tenant, (_q, st) =>
      st.storage.sql
        .exec<{ s: string }>("SELECT oauth_secret AS s FROM endpoint WHERE id = ?", created.body.id)
        .one(),
    );
    expect(stored.s).not.toContain(OAUTH.oauth_client_secret);

    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    expect(r.state.token).toHaveLength(1);
    const t = r.state.token[0]!;
    expect(t.body).toBe("grant_type=client_credentials");
    expect(t.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    // RFC 6749 §2.3.1: each part form-urlencoded, then Basic.
    expect(atob(t.headers["authorization"]!.replace(/^Basic /, ""))).toBe("client+one:s3cr%3Aet%2B%26");
    expect(r.state.posts).toHaveLength(1);
    expect(r.state.posts[0]!.headers["authorization"]).toBe("Bearer tok-1");

    // The same token for the next POST; a new one once it has expired.
    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    expect(r.state.token).toHaveLength(1);
    expect(r.state.posts[1]!.headers["authorization"]).toBe("Bearer tok-1");
    r.state.now += 3600_000;
    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    expect(r.state.token).toHaveLength(2);
    expect(r.state.posts[2]!.headers["authorization"]).toBe("Bearer tok-2");

    // A 401 from the receiver: the retry asks for a fresh token.
    r.state.respond = () => new Response("expired", { status: 401 });
    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    r.state.respond = () => new Response("ok");
    await r.advance();
    expect(r.state.token).toHaveLength(3);
    expect(r.state.posts.at(-1)!.headers["authorization"]).toBe("Bearer tok-3");

    // Removed with three empty values: POSTs go without a token again.
    const cleared = await r.api("PATCH", `/v3/user/webhooks/${created.body.id}`, {
      oauth_client_id: "",
      oauth_client_secret: "",
      oauth_token_url: "",
    });
    expect(cleared.body).toMatchObject({ oauth_client_id: null, oauth_token_url: null });
    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    expect(r.state.posts.at(-1)!.headers["authorization"]).toBeUndefined();
  });

  it("a token URL that fails, redirects or now resolves to a private address fails the attempt; nothing is posted", async () => {
    const r = await rig();
    const created = await r.api("POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/in",
      enabled_events: ["delivered"],
      ...OAUTH,
    });
    const id = created.body.id as string;
    const errors: string[] = [];
    const lastError = async () =>
      (await r.api("GET", `/v3/user/webhooks/${id}/deliveries`)).body.deliveries[0].attempts.at(-1).error;

    r.state.tokenAnswer = () => new Response("no", { status: 500 });
    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    errors.push(await lastError());
    r.state.tokenAnswer = () =>
      new Response(null, { status: 302, headers: { location: "https://evil.example/" } });
    await r.advance();
    errors.push(await lastError());
    r.state.tokenAnswer = () => Response.json({ token_type: "bearer" });
    await r.advance();
    errors.push(await lastError());
    r.state.dns["auth.example.com"] = ["127.0.0.1"];
    await r.advance();
    errors.push(await lastError());
    expect(errors[0]).toBe("oauth: token URL answered HTTP 500");
    expect(errors[1]).toMatch(/^oauth: token URL answered a redirect \(HTTP 302\)/);
    expect(errors[2]).toBe("oauth: token answer has no usable access_token");
    expect(errors[3]).toMatch(/^oauth: token URL auth\.example\.com resolves to a non-public address/);
    expect(r.state.token).toHaveLength(3);
    expect(r.state.posts).toHaveLength(0);
  });

  it("is refused at configuration for a private token URL or an incomplete set, in both dialects", async () => {
    const r = await rig();
    const priv = await r.api("POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/in",
      enabled_events: ["*"],
      ...OAUTH,
      oauth_token_url: "https://internal.example.com/token",
    });
    expect(priv.status).toBe(400);
    expect(priv.body.detail).toMatch(
      /^oauth_token_url: internal\.example\.com resolves to a non-public address/,
    );
    const partial = await r.api("POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/in",
      enabled_events: ["*"],
      oauth_client_id: "x",
      oauth_client_secret: "y",
    });
    expect(partial.status).toBe(400);
    expect(partial.body.detail).toMatch(/^oauth_client_id: .*go together/);

    const sg = await r.api("PATCH", "/v3/user/webhooks/event/settings", {
      enabled: true,
      url: "https://hooks.example.com/sg",
      delivered: true,
      ...OAUTH,
    });
    expect(sg.status).toBe(200);
    expect(sg.body).toMatchObject({
      oauth_client_id: "client one",
      oauth_token_url: "https://auth.example.com/token",
    });
    expect(sg.body).not.toHaveProperty("oauth_client_secret");
    const read = await r.api("GET", "/v3/user/webhooks/event/settings");
    expect(read.body.oauth_client_id).toBe("client one");
    const sgPrivate = await r.api("PATCH", "/v3/user/webhooks/event/settings", {
      ...OAUTH,
      oauth_token_url: "https://internal.example.com/token",
    });
    expect(sgPrivate.status).toBe(400);
    expect(sgPrivate.body.errors[0].field).toBe("oauth_token_url");

    // The SendGrid form is posted with the token too.
    await r.stub.enqueue(r.tenant, [r.event()]);
    await r.advance();
    expect(r.state.posts.at(-1)!.headers["authorization"]).toBe("Bearer tok-1");
    // And the test POST, with the credentials it is given.
    const test = await r.api("POST", "/v3/user/webhooks/event/test", {
      url: "https://hooks.example.com/test",
      ...OAUTH,
    });
    expect(test.status).toBe(204);
    expect(r.state.posts.at(-1)!.headers["authorization"]).toBe("Bearer tok-2");
  });
});
