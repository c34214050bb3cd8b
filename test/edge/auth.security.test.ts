/**
 * Authentication, scopes and tenant isolation (docs/api/sendgrid.md#authentication, docs/api/admin.md): who may call what, and the
 * exact FastAPI-style `{detail}` bodies the failures carry.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../edge/src/lib/crypto.ts";
import {
  bearer,
  call,
  createApiKey,
  createTenant,
  mailBody,
  sendMail,
  sendOne,
  setupTenant,
} from "./helpers.ts";

async function expectDetail(res: Response, status: number, detail: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(await res.json()).toEqual({ detail });
}

describe("post /v3/mail/send credentials", () => {
  it("without an Authorization header → 401 Missing Authorization header", async () => {
    const res = await call("/v3/mail/send", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(mailBody("a@example.com")),
    });
    await expectDetail(res, 401, "Missing Authorization header");
  });

  it("with a non-Bearer Authorization header → 401", async () => {
    const t = await setupTenant();
    const res = await sendMail("", mailBody(t.from), {
      Authorization: `Basic ${btoa(`apikey:${t.liveKey}`)}`,
    });
    await expectDetail(res, 401, "Missing Authorization header");
  });

  it.each([
    ["too short", "sg_live_abc123"],
    ["upper-case hex", `sg_live_${"A".repeat(32)}`],
    ["too long", `sg_test_${"a".repeat(33)}`],
  ])("with a malformed API key (%s) → 401 Invalid API key", async (_label, key) => {
    await expectDetail(await sendMail(key, mailBody("a@example.com")), 401, "Invalid API key");
  });

  it("with a well-formed but unknown API key → 401 Invalid API key", async () => {
    await expectDetail(
      await sendMail(`sg_live_${"0".repeat(32)}`, mailBody("a@example.com")),
      401,
      "Invalid API key",
    );
  });

  it("with a JWT on a deployment without SCAIKEY_* → 401 saying JWTs are not configured", async () => {
    await expectDetail(
      await sendMail("eyJhbGciOiJSUzI1NiJ9.e30.sig", mailBody("a@example.com")),
      401,
      "JWT authentication is not configured on this deployment",
    );
  });

  it("with a token that is neither a key nor a JWT → 401 Invalid API key", async () => {
    await expectDetail(await sendMail("not-a-credential", mailBody("a@example.com")), 401, "Invalid API key");
  });

  it("when the key is revoked → 401 Invalid API key", async () => {
    const t = await setupTenant();
    // Revoked before this isolate ever used it. A key revoked while cached keeps working for up to
    // AUTH_CACHE_TTL_MS (test/edge/catalog-cache.test.ts pins that window).
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
      .bind(Date.now(), t.liveKeyId)
      .run();
    await expectDetail(await sendMail(t.liveKey, mailBody(t.from)), 401, "Invalid API key");
  });

  it("when the key has expired → 401 Invalid API key", async () => {
    const t = await setupTenant();
    const expired = await createApiKey(t.tenantId, {
      scopes: ["mail.send"],
      expiresAt: new Date(Date.now() - 60_000).toISOString(),
    });
    await expectDetail(await sendMail(expired.key, mailBody(t.from)), 401, "Invalid API key");
  });

  it("when the key expires later it still works", async () => {
    const t = await setupTenant();
    const fresh = await createApiKey(t.tenantId, {
      scopes: ["mail.send"],
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    });
    expect((await sendMail(fresh.key, mailBody(t.from))).status).toBe(202);
  });

  it("when the tenant is suspended → 403", async () => {
    const t = await setupTenant();
    await env.DB.prepare("UPDATE tenants SET status = 'suspended' WHERE id = ?").bind(t.tenantId).run();
    await expectDetail(await sendMail(t.liveKey, mailBody(t.from)), 403, "Tenant suspended");
    await expectDetail(await call("/v3/messages", { headers: bearer(t.liveKey) }), 403, "Tenant suspended");
  });

  it("when the key lacks mail.send → 403 Missing required scope: mail.send", async () => {
    const t = await setupTenant();
    const readOnly = await createApiKey(t.tenantId, { scopes: ["domains.read", "stats.read"] });
    await expectDetail(
      await sendMail(readOnly.key, mailBody(t.from)),
      403,
      "Missing required scope: mail.send",
    );
    const none = await createApiKey(t.tenantId, { scopes: [] });
    await expectDetail(await sendMail(none.key, mailBody(t.from)), 403, "Missing required scope: mail.send");
  });

  it("the operator token cannot send mail", async () => {
    const t = await setupTenant();
    await expectDetail(await sendMail(env.ADMIN_TOKEN, mailBody(t.from)), 401, "Invalid API key");
  });

  it("the origin token cannot send mail", async () => {
    const t = await setupTenant();
    await expectDetail(await sendMail(env.ORIGIN_TOKEN, mailBody(t.from)), 401, "Invalid API key");
  });
});

describe("/api/admin credentials", () => {
  it("an API key cannot create tenants (operator only)", async () => {
    const t = await setupTenant();
    const res = await call("/api/admin/tenants", {
      method: "POST",
      headers: bearer(t.liveKey),
      body: JSON.stringify({ name: "sneaky" }),
    });
    await expectDetail(res, 403, "This endpoint needs the operator token");
  });

  it("a wrong operator token → 401 Invalid credentials", async () => {
    const res = await call("/api/admin/tenants", {
      method: "POST",
      headers: bearer(`${env.ADMIN_TOKEN}x`),
      body: JSON.stringify({ name: "x" }),
    });
    await expectDetail(res, 401, "Invalid credentials");
  });
});

describe("tenant isolation on /v3/messages", () => {
  it("tenant B cannot read tenant A's message (404) nor see it in its list", async () => {
    const a = await setupTenant();
    const b = await setupTenant();
    const id = await sendOne(a.testKey, mailBody(a.from, { subject: "A's secret" }));

    await expectDetail(
      await call(`/v3/messages/${id}`, { headers: bearer(b.liveKey) }),
      404,
      `Message not found: ${id}`,
    );
    // Same answer as for an id that does not exist at all: nothing leaks.
    const missing = "msg_00000000000000000000000000";
    await expectDetail(
      await call(`/v3/messages/${missing}`, { headers: bearer(b.liveKey) }),
      404,
      `Message not found: ${missing}`,
    );

    const list = await call("/v3/messages?subject=secret", { headers: bearer(b.liveKey) });
    expect(list.status).toBe(200);
    expect(await list.json()).toMatchObject({ messages: [], total: 0 });

    // A sees its own message.
    expect((await call(`/v3/messages/${id}`, { headers: bearer(a.liveKey) })).status).toBe(200);
    const own = (await (
      await call("/v3/messages?subject=secret", { headers: bearer(a.liveKey) })
    ).json()) as {
      messages: { id: string }[];
    };
    expect(own.messages.map((m) => m.id)).toEqual([id]);
  });

  it("the operator token cannot read messages", async () => {
    const a = await setupTenant();
    const id = await sendOne(a.testKey, mailBody(a.from));
    await expectDetail(
      await call(`/v3/messages/${id}`, { headers: bearer(env.ADMIN_TOKEN) }),
      401,
      "Invalid API key",
    );
  });

  it("a key of a tenant without messages sees an empty list", async () => {
    const tenantId = await createTenant();
    const key = await createApiKey(tenantId, { scopes: [] });
    const res = await call("/v3/messages", { headers: bearer(key.key) });
    expect(await res.json()).toEqual({ messages: [], total: 0, page: 1, page_size: 25, total_pages: 0 });
  });
});

describe("/link origin authentication", () => {
  const upgrade = { Upgrade: "websocket" };

  it("without a token → 401 and no WebSocket", async () => {
    const res = await call("/link?shard=0", { headers: upgrade });
    expect(res.webSocket).toBeNull();
    await expectDetail(res, 401, "Invalid origin token");
  });

  it("with a wrong token → 401", async () => {
    const res = await call("/link?shard=0", {
      headers: { ...upgrade, Authorization: `Bearer ${env.ORIGIN_TOKEN}0` },
    });
    expect(res.webSocket).toBeNull();
    await expectDetail(res, 401, "Invalid origin token");
  });

  it("with the operator token → 401", async () => {
    const res = await call("/link?shard=0", {
      headers: { ...upgrade, Authorization: `Bearer ${env.ADMIN_TOKEN}` },
    });
    await expectDetail(res, 401, "Invalid origin token");
  });

  it("with an API key → 401", async () => {
    const t = await setupTenant();
    const res = await call("/link?shard=0", {
      headers: { ...upgrade, Authorization: `Bearer ${t.liveKey}` },
    });
    await expectDetail(res, 401, "Invalid origin token");
  });

  it("with the right token but a shard that does not exist → 400", async () => {
    const res = await call("/link?shard=1", {
      headers: { ...upgrade, Authorization: `Bearer ${env.ORIGIN_TOKEN}` },
    });
    await expectDetail(res, 400, "shard must be an integer from 0 to 0");
  });

  it("with the right token → 101 WebSocket", async () => {
    const res = await call("/link?shard=0", {
      headers: { ...upgrade, Authorization: `Bearer ${env.ORIGIN_TOKEN}` },
    });
    expect(res.status).toBe(101);
    expect(res.webSocket).not.toBeNull();
    res.webSocket!.accept();
    res.webSocket!.close(1000, "done");
  });
});

/** Every row of every table in D1, as text (the tables the runtime owns are not readable). */
async function dumpD1(): Promise<{ table: string; text: string }[]> {
  const tables = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
  ).all<{ name: string }>();
  const out: { table: string; text: string }[] = [];
  for (const { name } of tables.results) {
    const rows = await env.DB.prepare(`SELECT * FROM "${name}"`).all();
    for (const row of rows.results) out.push({ table: name, text: JSON.stringify(row) });
  }
  return out;
}

describe("credentials at rest", () => {
  it("an API key is stored only as its SHA-256 hash (plus the 16-character display prefix)", async () => {
    const tenantId = await createTenant();
    const { id, key } = await createApiKey(tenantId, { scopes: ["mail.send"] });
    const secretPart = key.slice("sg_live_".length);

    const rows = await dumpD1();
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      expect(r.text, `table ${r.table}`).not.toContain(key);
      expect(r.text, `table ${r.table}`).not.toContain(secretPart);
    }
    const row = await env.DB.prepare("SELECT prefix, key_hash FROM api_keys WHERE id = ?")
      .bind(id)
      .first<{ prefix: string; key_hash: string }>();
    expect(row).toEqual({ prefix: key.slice(0, 16), key_hash: await sha256Hex(key) });
  });

  it("the origin and operator tokens are stored nowhere, in D1 or in the hub's storage, after they were used", async () => {
    const res = await call("/link?shard=0", {
      headers: { Upgrade: "websocket", Authorization: `Bearer ${env.ORIGIN_TOKEN}` },
    });
    expect(res.status).toBe(101);
    res.webSocket!.accept();
    res.webSocket!.close(1000, "done");
    await createTenant();

    const secrets = [env.ORIGIN_TOKEN, env.ADMIN_TOKEN];
    for (const r of await dumpD1())
      for (const s of secrets) expect(r.text, `table ${r.table}`).not.toContain(s);
    const hubRows = await runInDurableObject(env.ORIGIN_HUB.getByName("hub-0"), (_instance, state) => {
      const sql = state.storage.sql;
      const names = sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
        )
        .toArray()
        .map((t) => t.name);
      return names.flatMap((n) =>
        sql
          .exec(`SELECT * FROM "${n}"`)
          .toArray()
          .map((row) => JSON.stringify(row)),
      );
    });
    for (const text of hubRows) for (const s of secrets) expect(text).not.toContain(s);
  });
});
