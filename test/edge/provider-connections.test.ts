/**
 * Provider connections (docs/channels.md#provider-connections, docs/api/admin.md#provider-connections)
 * on the real app, real D1 and the real OriginHub in workerd: the admin API (validation of every
 * provider's credentials, secrets never answered, one default per channel, rotation, rename,
 * delete), sealing at rest bound to the connection, the SECRETS_KEY re-seal, tenant isolation, a
 * SenderKit template's override, and a live `/v1/send` on sms / push / web-push: 400
 * provider_not_configured without a connection, otherwise one message in the hub that an origin link
 * receives as a channel job with the connection's credentials opened, whose outcome becomes the
 * SenderKit status and timeline. Every /v1 answer is validated against SenderKit's OpenAPI document.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { ChannelJob } from "../../shared/link/channel-job.ts";
import { createDb } from "../../edge/src/db/client.ts";
import { open, seal } from "../../edge/src/lib/secret-box.ts";
import { resealConnectionsPage } from "../../edge/src/services/provider-connections.ts";
import { expectMatches } from "../helpers/openapi-edge.ts";
import {
  bearer,
  call,
  createApiKey,
  createTenant,
  eventually,
  openLink,
  operatorHeaders,
  resetHub,
} from "./helpers.ts";
import { adminOk as skAdminOk, createSk, publish, skKey, v1 } from "./senderkit-templates.helpers.ts";

const TOKEN = "twilio-auth-token-0123456789abcdef";

interface Connection {
  id: string;
  channel: string;
  provider: string;
  name: string;
  is_default: boolean;
  credentials: Record<string, string>;
  credential_hints: Record<string, string>;
  created_at: string;
  updated_at: string;
}

function pc(tenantId: string, path = "", method = "GET", body?: unknown, headers = operatorHeaders()) {
  return call(`/api/admin/tenants/${tenantId}/provider-connections${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

async function pcOk<T = Connection>(
  tenantId: string,
  path: string,
  method = "GET",
  body?: unknown,
  status = 200,
) {
  const res = await pc(tenantId, path, method, body);
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return { data: (JSON.parse(text) as { data: T }).data, text };
}

const twilio = (tenantId: string, name = "main", extra: Record<string, unknown> = {}) =>
  pcOk(
    tenantId,
    "",
    "POST",
    {
      channel: "sms",
      provider: "twilio",
      name,
      credentials: { account_sid: "AC0123456789abcdef", auth_token: TOKEN, from: "+15005550006" },
      ...extra,
    },
    201,
  );

const b64 = (bytes: ArrayBuffer) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const pem = (der: ArrayBuffer) =>
  `-----BEGIN PRIVATE KEY-----\n${b64(der).replace(/.{64}/g, "$&\n")}\n-----END PRIVATE KEY-----\n`;
const b64url = (bytes: Uint8Array) =>
  btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");

async function rsaPem(): Promise<string> {
  const k = (await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  )) as CryptoKeyPair;
  return pem((await crypto.subtle.exportKey("pkcs8", k.privateKey)) as ArrayBuffer);
}

async function p256(): Promise<{ pem: string; publicKey: string; privateKey: string }> {
  const k = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const raw = new Uint8Array((await crypto.subtle.exportKey("raw", k.publicKey)) as ArrayBuffer);
  const jwk = (await crypto.subtle.exportKey("jwk", k.privateKey)) as JsonWebKey;
  return {
    pem: pem((await crypto.subtle.exportKey("pkcs8", k.privateKey)) as ArrayBuffer),
    publicKey: b64url(raw),
    privateKey: jwk.d!,
  };
}

const sealedOf = async (id: string) =>
  (await env.DB.prepare("SELECT credentials_sealed AS s FROM provider_connections WHERE id = ?")
    .bind(id)
    .first<{ s: string }>())!.s;

describe("admin API: provider connections", () => {
  it("creates a Twilio connection whose secret is sealed bound to it and never answered", async () => {
    const tenant = await createTenant();
    const { data: c, text } = await twilio(tenant);
    expect(c).toMatchObject({
      channel: "sms",
      provider: "twilio",
      name: "main",
      is_default: true,
      credentials: { account_sid: "AC0123456789abcdef", from: "+15005550006" },
      credential_hints: { auth_token: "…cdef" },
    });
    expect(c.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(text).not.toContain(TOKEN);
    const list = await pcOk<Connection[]>(tenant, "");
    expect(list.data.map((x) => x.id)).toEqual([c.id]);
    expect(list.text).not.toContain(TOKEN);
    expect((await pcOk(tenant, `/${c.id}`)).text).not.toContain(TOKEN);

    const sealed = await sealedOf(c.id);
    expect(sealed).toMatch(/^v2\./);
    expect(sealed).not.toContain(TOKEN);
    const opened = JSON.parse(await open(env.SECRETS_KEY, sealed, `provider-connection:${c.id}`));
    expect(opened).toEqual({
      kind: "twilio",
      accountSid: "AC0123456789abcdef",
      authToken: TOKEN,
      from: "+15005550006",
    });
    // Bound to its owner: the same value does not open as another connection's.
    await expect(open(env.SECRETS_KEY, sealed, "provider-connection:pcn_other")).rejects.toThrow();
  });

  it("validates each provider's credentials: exactly what the origin's adapter needs, naming the field", async () => {
    const tenant = await createTenant();
    const detailOf = async (body: unknown) => {
      const res = await pc(tenant, "", "POST", body);
      expect(res.status).toBe(422);
      return ((await res.json()) as { detail: { loc: string[]; msg: string }[] }).detail;
    };
    const sms = (credentials: unknown) => ({ channel: "sms", provider: "twilio", name: "x", credentials });
    // Both senders, or neither.
    let d = await detailOf(
      sms({ account_sid: "AC1", auth_token: "t", from: "+1500", messaging_service_sid: "MG1" }),
    );
    expect(d[0]!.msg).toContain("exactly one of from and messagingServiceSid");
    d = await detailOf(sms({ account_sid: "AC1", auth_token: "t" }));
    expect(d[0]!.loc).toEqual(["body", "credentials"]);
    // A field the adapter does not use is refused, never stored and ignored.
    d = await detailOf(sms({ account_sid: "AC1", auth_token: "t", from: "+1500", region: "ie1" }));
    expect(d[0]!.loc).toEqual(["body", "credentials"]);
    expect(d[0]!.msg).toContain("region");
    // The provider must be one of the channel's.
    d = await detailOf({ channel: "sms", provider: "fcm", name: "x", credentials: {} });
    expect(d[0]!.loc).toEqual(["body", "provider"]);
    // FCM needs an RSA key; APNs a P-256 one: a key of the other kind does not import.
    const ec = await p256();
    d = await detailOf({
      channel: "push",
      provider: "fcm",
      name: "x",
      credentials: { project_id: "p", client_email: "sa@p.iam.gserviceaccount.com", private_key: ec.pem },
    });
    expect(d[0]!.loc).toEqual(["body", "credentials", "private_key"]);
    d = await detailOf({
      channel: "push",
      provider: "apns",
      name: "x",
      credentials: {
        team_id: "T",
        key_id: "K",
        private_key: "not a key",
        topic: "com.example",
        environment: "production",
      },
    });
    expect(d[0]!.loc).toEqual(["body", "credentials", "private_key"]);
    // VAPID keys of the wrong length, and a subject that is no contact URI.
    d = await detailOf({
      channel: "web-push",
      provider: "vapid",
      name: "x",
      credentials: { subject: "me", public_key: "abc", private_key: ec.privateKey },
    });
    expect(d.map((i) => i.loc.at(-1)).sort()).toEqual(["public_key", "subject"]);
    // None of them was stored.
    expect((await pcOk<Connection[]>(tenant, "")).data).toEqual([]);

    // The same keys where they belong are accepted.
    const fcm = await pcOk(
      tenant,
      "",
      "POST",
      {
        channel: "push",
        provider: "fcm",
        name: "fcm",
        credentials: {
          project_id: "p",
          client_email: "sa@p.iam.gserviceaccount.com",
          private_key: await rsaPem(),
        },
      },
      201,
    );
    expect(fcm.data.credential_hints.private_key).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(fcm.text).not.toContain("PRIVATE KEY");
    const apns = await pcOk(
      tenant,
      "",
      "POST",
      {
        channel: "push",
        provider: "apns",
        name: "apns",
        credentials: {
          team_id: "T",
          key_id: "K",
          private_key: ec.pem,
          topic: "com.example",
          environment: "sandbox",
        },
      },
      201,
    );
    expect(apns.data.is_default).toBe(false);
    const vapid = await pcOk(
      tenant,
      "",
      "POST",
      {
        channel: "web-push",
        provider: "vapid",
        name: "vapid",
        credentials: {
          subject: "mailto:ops@example.com",
          public_key: ec.publicKey,
          private_key: ec.privateKey,
        },
      },
      201,
    );
    expect(vapid.data.credentials).toEqual({ subject: "mailto:ops@example.com", public_key: ec.publicKey });
    expect(vapid.text).not.toContain(ec.privateKey);
  });

  it("keeps one default per channel, rotates and renames, and refuses a taken name", async () => {
    const tenant = await createTenant();
    const a = (await twilio(tenant, "a")).data;
    const b = (await twilio(tenant, "b")).data;
    expect([a.is_default, b.is_default]).toEqual([true, false]);
    const made = await pcOk(tenant, `/${b.id}`, "PATCH", { is_default: true });
    expect(made.data.is_default).toBe(true);
    expect((await pcOk(tenant, `/${a.id}`)).data.is_default).toBe(false);
    // A new default at creation takes over too.
    const c = (await twilio(tenant, "c", { is_default: true })).data;
    const defaults = (await pcOk<Connection[]>(tenant, "?channel=sms")).data.filter((x) => x.is_default);
    expect(defaults.map((x) => x.id)).toEqual([c.id]);

    const before = await sealedOf(a.id);
    const rotated = await pcOk(tenant, `/${a.id}`, "PATCH", {
      name: "a2",
      credentials: {
        account_sid: "AC0123456789abcdef",
        auth_token: "new-token-9999",
        messaging_service_sid: "MG42",
      },
    });
    expect(rotated.data).toMatchObject({
      name: "a2",
      credentials: { account_sid: "AC0123456789abcdef", messaging_service_sid: "MG42" },
      credential_hints: { auth_token: "…9999" },
    });
    const after = await sealedOf(a.id);
    expect(after).not.toBe(before);
    expect(JSON.parse(await open(env.SECRETS_KEY, after, `provider-connection:${a.id}`)).authToken).toBe(
      "new-token-9999",
    );
    // A rotation is validated like a creation.
    expect((await pc(tenant, `/${a.id}`, "PATCH", { credentials: { account_sid: "AC1" } })).status).toBe(422);
    expect((await pc(tenant, `/${a.id}`, "PATCH", { name: "b" })).status).toBe(409);
    expect(
      (await pc(tenant, "", "POST", { channel: "sms", provider: "twilio", name: "b", credentials: {} }))
        .status,
    ).toBe(422);
    expect((await pc(tenant, `/${a.id}`, "PATCH", {})).status).toBe(422);
    expect((await pc(tenant, `/${a.id}`, "PATCH", { is_default: false })).status).toBe(422);

    expect((await pc(tenant, `/${a.id}`, "DELETE")).status).toBe(204);
    expect((await pc(tenant, `/${a.id}`)).status).toBe(404);
  });

  it("is isolated per tenant: another tenant's key or connection id is a 404, and nothing changes", async () => {
    const a = await createTenant();
    const b = await createTenant();
    const conn = (await twilio(a)).data;
    const bKey = await createApiKey(b, { scopes: ["admin.settings"] });
    const aKeyNoScope = await createApiKey(a, { scopes: ["mail.send"] });
    expect((await pc(a, "", "GET", undefined, bearer(bKey.key))).status).toBe(404);
    expect((await pc(a, `/${conn.id}`, "GET", undefined, bearer(bKey.key))).status).toBe(404);
    expect((await pc(a, "", "GET", undefined, bearer(aKeyNoScope.key))).status).toBe(403);
    // B's own path with A's connection id.
    expect((await pc(b, `/${conn.id}`, "GET", undefined, bearer(bKey.key))).status).toBe(404);
    expect((await pc(b, `/${conn.id}`, "PATCH", { name: "stolen" }, bearer(bKey.key))).status).toBe(404);
    expect((await pc(b, `/${conn.id}`, "DELETE", undefined, bearer(bKey.key))).status).toBe(404);
    expect((await pcOk(a, `/${conn.id}`)).data.name).toBe("main");
    // A's own key with admin.settings manages A's connections.
    const aKey = await createApiKey(a, { scopes: ["admin.settings"] });
    const res = await pc(a, "", "GET", undefined, bearer(aKey.key));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { data: Connection[] }).data.map((x) => x.id)).toEqual([conn.id]);
  });

  it("lets a template name a connection of its own channel and tenant, and keeps a named one from deletion", async () => {
    const tenant = await createTenant();
    const other = await createTenant();
    const sms = (await twilio(tenant, "alt", { is_default: false })).data;
    const foreign = (await twilio(other)).data;
    const push = (
      await pcOk(
        tenant,
        "",
        "POST",
        { channel: "push", provider: "expo", name: "expo", credentials: {} },
        201,
      )
    ).data;
    await createSk(tenant, { slug: "otp", channel: "sms", content: { body: "Code {{code}}" } });
    const patch = (body: unknown) =>
      call(`/api/admin/tenants/${tenant}/senderkit_templates/otp`, {
        method: "PATCH",
        headers: operatorHeaders(),
        body: JSON.stringify(body),
      });
    for (const id of [push.id, foreign.id, "pcn_nowhere"]) {
      const res = await patch({ provider_connection_id: id });
      expect(res.status).toBe(422);
      const detail = ((await res.json()) as { detail: { loc: string[] }[] }).detail;
      expect(detail[0]!.loc).toEqual(["body", "provider_connection_id"]);
    }
    const ok = await patch({ provider_connection_id: sms.id });
    expect(ok.status).toBe(200);
    expect(
      ((await ok.json()) as { data: { provider_connection_id: string } }).data.provider_connection_id,
    ).toBe(sms.id);
    expect(
      (await skAdminOk<{ provider_connection_id: string | null }>(tenant, "/otp")).provider_connection_id,
    ).toBe(sms.id);
    const refused = await pc(tenant, `/${sms.id}`, "DELETE");
    expect(refused.status).toBe(409);
    expect(await refused.text()).toContain("otp");
    expect((await patch({ provider_connection_id: null })).status).toBe(200);
    expect((await pc(tenant, `/${sms.id}`, "DELETE")).status).toBe(204);
  });

  it("re-seals every connection under a new SECRETS_KEY, the old one kept as previous", async () => {
    const tenant = await createTenant();
    const c = (await twilio(tenant)).data;
    const newKey = b64(crypto.getRandomValues(new Uint8Array(32)).buffer as ArrayBuffer);
    const keys = { current: newKey, previous: [env.SECRETS_KEY] };
    const db = createDb(env.DB);
    let cursor = "";
    let resealed = 0;
    for (;;) {
      const page = await resealConnectionsPage(db, keys, cursor, 50);
      expect(page.failed).toEqual([]);
      resealed += page.resealed;
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    expect(resealed).toBeGreaterThanOrEqual(1);
    const sealed = await sealedOf(c.id);
    expect(JSON.parse(await open(newKey, sealed, `provider-connection:${c.id}`)).authToken).toBe(TOKEN);
    await expect(open(env.SECRETS_KEY, sealed, `provider-connection:${c.id}`)).rejects.toThrow();
    // A second pass finds it current.
    const again = await resealConnectionsPage(db, keys, "", 1000);
    expect(again.resealed).toBe(0);
    // Put it back under the test key for the other tests' hub.
    const back = await seal(
      env.SECRETS_KEY,
      await open(newKey, sealed, `provider-connection:${c.id}`),
      `provider-connection:${c.id}`,
    );
    await env.DB.prepare("UPDATE provider_connections SET credentials_sealed = ? WHERE id = ?")
      .bind(back, c.id)
      .run();
  });
});

describe("a live /v1/send on sms, push and web-push", () => {
  afterEach(() => resetHub());

  it("is 400 provider_not_configured without a connection, and accepts nothing", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    for (const body of [
      { channel: "sms", to: "+14155550123", content: { body: "hi" } },
      { channel: "push", to: "ExponentPushToken[abc]", content: { title: "t", body: "b" } },
    ]) {
      const r = await v1(key, "/send", { method: "POST", body });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("provider_not_configured");
      expect(r.body.error.message).toContain("provider-connections");
      expectMatches(r.status, r.body, "sendMessage");
    }
    // A connection of another channel does not count.
    await twilio(tenant);
    const r = await v1(key, "/send", {
      method: "POST",
      body: { channel: "push", to: "ExponentPushToken[abc]", content: { title: "t", body: "b" } },
    });
    expect(r.body.error.code).toBe("provider_not_configured");
    const count = await env.DB.prepare("SELECT count(*) AS n FROM sk_messages WHERE tenant_id = ?")
      .bind(tenant)
      .first<{ n: number }>();
    expect(count!.n).toBe(0);
  });

  it("goes to an origin as a channel job with the connection's credentials, and its outcome is the message's status", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    const conn = (await twilio(tenant)).data;
    const origin = await openLink();
    await origin.hello(10);
    const sent = await v1(key, "/send", {
      method: "POST",
      body: {
        channel: "sms",
        to: "+14155550123",
        content: { body: "Your code is 123456" },
        metadata: { k: "v" },
      },
    });
    expect(sent.status, JSON.stringify(sent.body)).toBe(202);
    expectMatches(sent.status, sent.body, "sendMessage");
    const frame = await origin.next("jobs", 5000);
    expect(frame.jobs).toEqual([]);
    const job = frame.channelJobs![0] as ChannelJob;
    expect(job).toMatchObject({
      messageId: sent.body.id,
      tenantId: tenant,
      attempt: 1,
      channel: "sms",
      recipients: ["+14155550123"],
      connectionId: conn.id,
      target: { to: "+14155550123" },
      content: { body: "Your code is 123456" },
      provider: { kind: "twilio", accountSid: "AC0123456789abcdef", authToken: TOKEN, from: "+15005550006" },
    });
    origin.send({ type: "ack", jobIds: [job.jobId] });
    origin.send({
      type: "result",
      jobId: job.jobId,
      messageId: job.messageId,
      attempt: 1,
      recipients: [
        {
          recipient: "+14155550123",
          status: "delivered",
          response: "twilio 201: SM0123",
          providerMessageId: "SM0123",
          latencyMs: 42,
        },
      ],
    });
    expect((await origin.next("resultAck", 5000)).jobIds).toEqual([job.jobId]);
    const got = await eventually(
      () => v1(key, `/messages/${sent.body.id}`),
      (r) => r.body.status === "sent",
      5000,
    );
    expect(got.body.status).toBe("sent");
    expectMatches(got.status, got.body, "getMessage");
    expect(got.body).toMatchObject({
      channel: "sms",
      livemode: true,
      recipient: "+14155550123",
      provider: "twilio",
      providerConnectionId: conn.id,
      providerMessageId: "SM0123",
      error: null,
    });
    expect(got.body.timeline.map((e: { e: string }) => e.e)).toEqual(["queued", "sent"]);
    // Counted like a live email.
    const usage = await env.DB.prepare("SELECT count FROM sk_usage WHERE tenant_id = ?")
      .bind(tenant)
      .first<{ count: number }>();
    expect(usage!.count).toBe(1);
    origin.close();
  });

  it("uses the template's connection over the default, and a failed outcome ends the message failed", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    await twilio(tenant, "default");
    const alt = (
      await pcOk(
        tenant,
        "",
        "POST",
        {
          channel: "sms",
          provider: "vonage",
          name: "vonage",
          credentials: { api_key: "k1", api_secret: "vonage-secret", from: "ACME" },
        },
        201,
      )
    ).data;
    await createSk(tenant, { slug: "otp", channel: "sms", content: { body: "Code {{code}}" } });
    await publish(tenant, "otp");
    const res = await call(`/api/admin/tenants/${tenant}/senderkit_templates/otp`, {
      method: "PATCH",
      headers: operatorHeaders(),
      body: JSON.stringify({ provider_connection_id: alt.id }),
    });
    expect(res.status).toBe(200);
    const origin = await openLink();
    await origin.hello(10);
    const sent = await v1(key, "/send", {
      method: "POST",
      body: { template: "otp", to: "+447700900123", vars: { code: "42" } },
    });
    expect(sent.status, JSON.stringify(sent.body)).toBe(202);
    const job = (await origin.next("jobs", 5000)).channelJobs![0] as ChannelJob;
    expect(job).toMatchObject({
      connectionId: alt.id,
      content: { body: "Code 42" },
      provider: { kind: "vonage", apiKey: "k1", apiSecret: "vonage-secret", from: "ACME" },
    });
    origin.send({ type: "ack", jobIds: [job.jobId] });
    origin.send({
      type: "result",
      jobId: job.jobId,
      messageId: job.messageId,
      attempt: 1,
      recipients: [
        { recipient: "+447700900123", status: "failed", response: "vonage status 4: Invalid credentials" },
      ],
    });
    const got = await eventually(
      () => v1(key, `/messages/${sent.body.id}`),
      (r) => r.body.status === "failed",
      5000,
    );
    expect(got.body.status).toBe("failed");
    expectMatches(got.status, got.body, "getMessage");
    expect(got.body.error).toContain("Invalid credentials");
    expect(got.body.provider).toBe("vonage");
    origin.close();
  });

  it("suppresses a number that bounced hard: the next send to it ends opted_out and never reaches an origin", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    await twilio(tenant);
    const origin = await openLink();
    await origin.hello(10);
    const to = "+14155550100";
    const first = await v1(key, "/send", {
      method: "POST",
      body: { channel: "sms", to, content: { body: "one" } },
    });
    expect(first.status).toBe(202);
    const job = (await origin.next("jobs", 5000)).channelJobs![0] as ChannelJob;
    origin.send({ type: "ack", jobIds: [job.jobId] });
    origin.send({
      type: "result",
      jobId: job.jobId,
      messageId: job.messageId,
      attempt: 1,
      recipients: [
        {
          recipient: to,
          status: "bounced",
          bounceType: "hard",
          response: "twilio 400 (21211): invalid 'To' number",
        },
      ],
    });
    const bounced = await eventually(
      () => v1(key, `/messages/${first.body.id}`),
      (r) => r.body.status === "failed",
      5000,
    );
    expect(bounced.body.status).toBe("failed");
    expectMatches(bounced.status, bounced.body, "getMessage");
    const second = await v1(key, "/send", {
      method: "POST",
      body: { channel: "sms", to, content: { body: "two" } },
    });
    expect(second.status).toBe(202);
    const dropped = await eventually(
      () => v1(key, `/messages/${second.body.id}`),
      (r) => r.body.status === "opted_out",
      5000,
    );
    expect(dropped.body.status).toBe("opted_out");
    expectMatches(dropped.status, dropped.body, "getMessage");
    expect(await origin.nothing("jobs", 300)).toBe(true);
    origin.close();
  });

  it("fails a message whose credentials do not open (sealed for another connection), and never sends it", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    const c = (await twilio(tenant)).data;
    // A sealed value of another owner copied onto this row: GCM's AAD check refuses it.
    const foreign = await seal(
      env.SECRETS_KEY,
      JSON.stringify({ kind: "twilio" }),
      "provider-connection:other",
    );
    await env.DB.prepare("UPDATE provider_connections SET credentials_sealed = ? WHERE id = ?")
      .bind(foreign, c.id)
      .run();
    const origin = await openLink();
    await origin.hello(10);
    const sent = await v1(key, "/send", {
      method: "POST",
      body: { channel: "sms", to: "+14155550111", content: { body: "x" } },
    });
    expect(sent.status).toBe(202);
    const got = await eventually(
      () => v1(key, `/messages/${sent.body.id}`),
      (r) => r.body.status === "failed",
      5000,
    );
    expect(got.body.status).toBe("failed");
    expect(got.body.error).toContain(`provider connection ${c.id} could not be opened`);
    expectMatches(got.status, got.body, "getMessage");
    expect(await origin.nothing("jobs", 200)).toBe(true);
    origin.close();
  });

  it("sends push and web push as channel jobs of their own shapes", async () => {
    const tenant = await createTenant();
    const key = await skKey(tenant, "live");
    const ec = await p256();
    await pcOk(
      tenant,
      "",
      "POST",
      { channel: "push", provider: "expo", name: "expo", credentials: { access_token: "expo-token-abcd" } },
      201,
    );
    await pcOk(
      tenant,
      "",
      "POST",
      {
        channel: "web-push",
        provider: "vapid",
        name: "vapid",
        credentials: {
          subject: "mailto:ops@example.com",
          public_key: ec.publicKey,
          private_key: ec.privateKey,
        },
      },
      201,
    );
    const ua = await p256();
    const subscription = {
      endpoint: "https://push.example.net/send/abc",
      keys: { p256dh: ua.publicKey, auth: b64url(crypto.getRandomValues(new Uint8Array(16))) },
    };
    const origin = await openLink();
    await origin.hello(10);
    const push = await v1(key, "/send", {
      method: "POST",
      body: {
        channel: "push",
        to: "ExponentPushToken[xyz]",
        content: { title: "Hi", body: "There", data: { a: "1" } },
      },
    });
    expect(push.status, JSON.stringify(push.body)).toBe(202);
    const web = await v1(key, "/send", {
      method: "POST",
      body: { channel: "web-push", to: JSON.stringify(subscription), content: { title: "Hi", body: "Web" } },
    });
    expect(web.status, JSON.stringify(web.body)).toBe(202);
    const jobs: ChannelJob[] = [];
    while (jobs.length < 2) jobs.push(...((await origin.next("jobs", 5000)).channelJobs ?? []));
    const byChannel = Object.fromEntries(jobs.map((j) => [j.channel, j]));
    expect(byChannel.push).toMatchObject({
      target: { token: "ExponentPushToken[xyz]" },
      content: { title: "Hi", body: "There", data: { a: "1" } },
      provider: { kind: "expo", accessToken: "expo-token-abcd" },
    });
    expect(byChannel["web-push"]).toMatchObject({
      recipients: [subscription.endpoint],
      target: { subscription },
      content: { title: "Hi", body: "Web" },
      provider: {
        kind: "vapid",
        subject: "mailto:ops@example.com",
        publicKey: ec.publicKey,
        privateKey: ec.privateKey,
      },
    });
    // A web push subscription whose keys the link would refuse is a 400 now, not a lost message later.
    const bad = await v1(key, "/send", {
      method: "POST",
      body: {
        channel: "web-push",
        to: JSON.stringify({ endpoint: "https://push.example.net/x", keys: { p256dh: "abc", auth: "def" } }),
        content: { title: "Hi", body: "Web" },
      },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("invalid_request");
    expectMatches(bad.status, bad.body, "sendMessage");
    origin.close();
  });
});
