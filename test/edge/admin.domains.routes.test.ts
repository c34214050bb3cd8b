/**
 * The sender domain routes beyond create/get (docs/api/admin.md#sender-domains): list (paged),
 * PATCH, DELETE, rotate-dkim and its switch at verify, tenant isolation on each; and the
 * SECRETS_KEY re-seal over every sealed secret kind, DKIM keys and the webhook secrets the tenants'
 * WebhookQueue objects keep (docs/operations.md, "Rotating SECRETS_KEY").
 *
 * The rotation's DNS is a TxtLookup over the records the API lists (the port verifyDomain takes);
 * the same flow over DNS-over-HTTPS against a real DNS server on loopback, with signed mail, is
 * test/origin/dkim-rotation.miniflare.test.ts.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import { createDb } from "../../edge/src/db/client.ts";
import type { DomainRow } from "../../edge/src/db/domains.ts";
import { tenantDomains } from "../../edge/src/db/domains.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { bytesToBase64 } from "../../edge/src/lib/base64.ts";
import { dkimKeyAad } from "../../edge/src/lib/dkim-key-box.ts";
import { keyId, open, seal, sealedKeyId } from "../../edge/src/lib/secret-box.ts";
import type { TxtLookup } from "../../edge/src/services/dns-check.ts";
import { verifyDomain } from "../../edge/src/services/domains.ts";
import { buildOutboxEntry } from "../../edge/src/services/outbox-entry.ts";
import type { MessageRow } from "../../edge/src/db/messages.ts";
import { BASE, bearer, call, createApiKey, createTenant, operatorHeaders, uid } from "./helpers.ts";
import { inQueue } from "./webhooks.helpers.ts";

const app = createApp();

interface Rec {
  purpose: string;
  host: string;
  value: string;
  status: string;
  remove_after?: string;
}
interface View {
  id: string;
  tenant_id: string;
  domain: string;
  verified: boolean;
  is_active: boolean;
  dkim_selector: string;
  dkim_pending_selector: string | null;
  dmarc_policy: string;
  dmarc_rua_email: string | null;
  dns_records: Rec[];
}

async function api(key: string, method: string, path: string, body?: unknown) {
  const res = await call(path, {
    method,
    headers: bearer(key),
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as any) : null };
}

async function tenantWithKey() {
  const tenantId = await createTenant();
  const key = (await createApiKey(tenantId, { scopes: ["domains.read", "domains.write"] })).key;
  return { tenantId, key };
}

async function newDomain(key: string, extra: Record<string, unknown> = {}): Promise<View> {
  const r = await api(key, "POST", "/api/admin/domains", { domain: `d-${uid()}.example.com`, ...extra });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.data as View;
}

/** DNS holding the listed records with these statuses. */
function publish(records: Rec[], statuses: string[]): TxtLookup {
  const zone = new Map<string, string[]>();
  for (const r of records)
    if (statuses.includes(r.status)) zone.set(r.host, [...(zone.get(r.host) ?? []), r.value]);
  return async (name) => (zone.has(name) ? zone.get(name)! : { nxdomain: true, values: [] });
}

const deps = (overlapMs: number) => ({
  db: createDb(env.DB),
  secrets: { current: env.SECRETS_KEY },
  devMode: false,
  now: Date.now,
  rotationOverlapMs: overlapMs,
});

describe("get /api/admin/domains", () => {
  it("lists the tenant's domains in pages, and none of another tenant's", async () => {
    const a = await tenantWithKey();
    const b = await tenantWithKey();
    const made = [await newDomain(a.key), await newDomain(a.key), await newDomain(a.key)];
    await newDomain(b.key);
    const first = await api(a.key, "GET", "/api/admin/domains?limit=2");
    expect(first.status).toBe(200);
    expect(first.body.total).toBe(3);
    expect(first.body.data.map((d: View) => d.id)).toEqual(made.slice(0, 2).map((d) => d.id));
    expect(first.body.next_cursor).toBe(made[1]!.id);
    const second = await api(a.key, "GET", `/api/admin/domains?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.data.map((d: View) => d.id)).toEqual([made[2]!.id]);
    expect(second.body.next_cursor).toBeNull();
    expect(second.body.data[0].dns_records.length).toBe(3);

    const theirs = await api(b.key, "GET", "/api/admin/domains");
    expect(theirs.body.total).toBe(1);
    expect(theirs.body.data.map((d: View) => d.tenant_id)).toEqual([b.tenantId]);
    // The operator names the tenant.
    const op = await call(`/api/admin/domains?tenant_id=${a.tenantId}`, { headers: operatorHeaders() });
    expect(((await op.json()) as { total: number }).total).toBe(3);
    expect((await api(a.key, "GET", "/api/admin/domains?limit=0")).status).toBe(422);
  });
});

describe("patch and delete /api/admin/domains/{id}", () => {
  it("changes is_active and the DMARC settings; refuses fields it does not honour; another tenant's → 404", async () => {
    const a = await tenantWithKey();
    const b = await tenantWithKey();
    const d = await newDomain(a.key);
    const off = await api(a.key, "PATCH", `/api/admin/domains/${d.id}`, {
      is_active: false,
      dmarc_policy: "reject",
      dmarc_rua_email: "agg@example.com",
    });
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    expect(off.body.data).toMatchObject({
      is_active: false,
      dmarc_policy: "reject",
      dmarc_rua_email: "agg@example.com",
    });
    expect(off.body.data.dns_records[2].value).toBe("v=DMARC1; p=reject; rua=mailto:agg@example.com");
    const cleared = await api(a.key, "PATCH", `/api/admin/domains/${d.id}`, { dmarc_rua_email: null });
    expect(cleared.body.data.dmarc_rua_email).toBeNull();

    const unknown = await api(a.key, "PATCH", `/api/admin/domains/${d.id}`, { default: true });
    expect(unknown.status).toBe(400);
    expect(unknown.body.detail).toMatch(/^Unsupported field "default"/);
    expect((await api(a.key, "PATCH", `/api/admin/domains/${d.id}`, { dmarc_policy: "block" })).status).toBe(
      400,
    );
    expect((await api(a.key, "PATCH", `/api/admin/domains/${d.id}`, { is_active: "no" })).status).toBe(422);

    const foreign = await api(b.key, "PATCH", `/api/admin/domains/${d.id}`, { is_active: true });
    expect(foreign.status).toBe(404);
    expect((await api(b.key, "DELETE", `/api/admin/domains/${d.id}`)).status).toBe(404);
    expect((await api(b.key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`)).status).toBe(404);
    expect((await api(b.key, "POST", `/api/admin/domains/${d.id}/verify`)).status).toBe(404);
    expect((await api(a.key, "GET", `/api/admin/domains/${d.id}`)).body.data.is_active).toBe(false);

    expect((await api(a.key, "DELETE", `/api/admin/domains/${d.id}`)).status).toBe(204);
    expect((await api(a.key, "GET", `/api/admin/domains/${d.id}`)).status).toBe(404);
    expect((await api(a.key, "DELETE", `/api/admin/domains/${d.id}`)).status).toBe(404);
  });
});

describe("post /api/admin/domains/{id}/rotate-dkim", () => {
  it("keeps signing with the active key until the new record verifies, then switches and retires the old one", async () => {
    const a = await tenantWithKey();
    const d = await newDomain(a.key);
    await verifyDomain(deps(0), publish(d.dns_records, ["required"]), a.tenantId, d.id);
    expect(
      (await api(a.key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`, { selector: "x" })).status,
    ).toBe(400);
    const rotated = (await api(a.key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`)).body.data as View;
    expect(rotated.dkim_pending_selector).toBe("scaisend2");
    expect(rotated.dns_records.map((r) => r.status)).toEqual(["required", "required", "required", "pending"]);

    // The job the hub would get for a message accepted now (services/outbox-entry.ts).
    const message = {
      id: `msg_${uid()}`,
      tenantId: a.tenantId,
      fromEmail: `app@${d.domain}`,
      fromName: null,
      subject: "s",
      textBody: "t",
      htmlBody: null,
      headers: {},
      messageIdHeader: "<m@x>",
      recipients: { to: [{ email: "r@example.net" }], cc: [], bcc: [], replyTo: [] },
    } as unknown as MessageRow;
    const entryNow = async () => {
      const row = (await tenantDomains(createDb(env.DB), a.tenantId).getDomain(d.id)) as DomainRow;
      return buildOutboxEntry(message, row).dkim!;
    };
    const before = await entryNow();
    expect(before.selector).toBe("scaisend");

    const notYet = await verifyDomain(deps(0), publish(d.dns_records, ["required"]), a.tenantId, d.id);
    expect(notYet.switchedKey).toBe(false);
    expect(notYet.verified).toBe(true);
    expect((await entryNow()).selector).toBe("scaisend");

    // The new record published: verify switches; the job now carries the new key (another sealed value).
    const done = await verifyDomain(
      deps(0),
      publish(rotated.dns_records, ["required", "pending"]),
      a.tenantId,
      d.id,
    );
    expect(done.switchedKey).toBe(true);
    const after = await entryNow();
    expect(after.selector).toBe("scaisend2");
    expect(after.privateKeySealed).not.toBe(before.privateKeySealed);
    const view = (await api(a.key, "GET", `/api/admin/domains/${d.id}`)).body.data as View;
    // A zero overlap window: the old record is removable at once.
    expect(view.dns_records.map((r) => [r.host.split(".")[0], r.status])).toEqual([
      ["scaisend2", "required"],
      [view.domain.split(".")[0], "required"],
      ["_dmarc", "required"],
      ["scaisend", "removable"],
    ]);
    // The private half of the old key is gone from the row: only the new one is kept.
    const stored = await env.DB.prepare(
      "SELECT dkim_next_private_key_enc AS n, dkim_retired_keys AS r FROM sender_domains WHERE id = ?",
    )
      .bind(d.id)
      .first<{ n: string | null; r: string }>();
    expect(stored!.n).toBeNull();
    expect(JSON.stringify(JSON.parse(stored!.r))).not.toMatch(/private|v2\./);
  });
});

async function reseal(e: Bindings, cursor: string | null): Promise<any> {
  const ctx = createExecutionContext();
  const res = await app.request(
    `${BASE}/api/admin/secrets/reseal`,
    { method: "POST", headers: operatorHeaders(), body: JSON.stringify({ cursor, limit: 3 }) },
    e,
    ctx,
  );
  const json = (await res.json()) as any;
  await waitOnExecutionContext(ctx);
  expect(res.status, JSON.stringify(json)).toBe(200);
  return json.data;
}

describe("post /api/admin/secrets/reseal over every secret kind", () => {
  it("re-seals DKIM keys (active and pending) and the webhook secrets, OAuth client secrets and signing keys", async () => {
    const tenantId = await createTenant();
    const key = (
      await createApiKey(tenantId, {
        scopes: ["domains.read", "domains.write", "webhooks.read", "webhooks.write"],
      })
    ).key;
    await inQueue(tenantId, (q) => {
      q.resolver = async () => ["93.184.216.34"];
    });
    const d = await newDomain(key);
    await api(key, "POST", `/api/admin/domains/${d.id}/rotate-dkim`);
    const hook = await api(key, "POST", "/v3/user/webhooks", {
      url: "https://hooks.example.com/in",
      enabled_events: ["delivered"],
      oauth_client_id: "client",
      oauth_client_secret: "oauth-secret-1",
      oauth_token_url: "https://auth.example.com/token",
    });
    expect(hook.status, JSON.stringify(hook.body)).toBe(201);
    const signingSecret = hook.body.signing_secret as string;
    expect(
      (await api(key, "PATCH", "/v3/user/webhooks/event/settings/signed", { enabled: true })).status,
    ).toBe(200);

    // Before the rotation: every secret sealed under the old key, as a deployment before it has them.
    const oldKey = bytesToBase64(crypto.getRandomValues(new Uint8Array(32)));
    const row = await env.DB.prepare(
      "SELECT dkim_private_key_enc AS a, dkim_next_private_key_enc AS n FROM sender_domains WHERE id = ?",
    )
      .bind(d.id)
      .first<{ a: string; n: string }>();
    const aad = dkimKeyAad(d.id);
    const pems = { a: await open(env.SECRETS_KEY, row!.a, aad), n: await open(env.SECRETS_KEY, row!.n, aad) };
    await env.DB.prepare(
      "UPDATE sender_domains SET dkim_private_key_enc = ?, dkim_next_private_key_enc = ? WHERE id = ?",
    )
      .bind(await seal(oldKey, pems.a, aad), await seal(oldKey, pems.n, aad), d.id)
      .run();
    const webhookAads = {
      secret: `webhook:${tenantId}:${hook.body.id}`,
      oauth: `webhook-oauth:${tenantId}:${hook.body.id}`,
      signing: `webhook-signing-key:${tenantId}`,
    };
    const signingPem = await inQueue(tenantId, async (_q, st) => {
      const ep = st.storage.sql
        .exec<{ secret: string; oauth_secret: string }>(
          "SELECT secret, oauth_secret FROM endpoint WHERE id = ?",
          hook.body.id,
        )
        .one();
      const sk = st.storage.sql.exec<{ private_key: string }>("SELECT private_key FROM signing_key").one();
      const plain = {
        secret: await open(env.SECRETS_KEY, ep.secret, webhookAads.secret),
        oauth: await open(env.SECRETS_KEY, ep.oauth_secret, webhookAads.oauth),
        signing: await open(env.SECRETS_KEY, sk.private_key, webhookAads.signing),
      };
      expect(plain.secret).toBe(signingSecret);
      expect(plain.oauth).toBe("oauth-secret-1");
      st.storage.sql.exec(
        "UPDATE endpoint SET secret = ?, oauth_secret = ? WHERE id = ?",
        await seal(oldKey, plain.secret, webhookAads.secret),
        await seal(oldKey, plain.oauth, webhookAads.oauth),
        hook.body.id,
      );
      st.storage.sql.exec(
        "UPDATE signing_key SET private_key = ?",
        await seal(oldKey, plain.signing, webhookAads.signing),
      );
      return plain.signing;
    });

    // The walk, with the old key still able to open (SECRETS_KEY_PREVIOUS), page by page.
    const rotating = { ...env, SECRETS_KEY_PREVIOUS: oldKey } as Bindings;
    const pages: any[] = [];
    let cursor: string | null = null;
    do {
      const page = await reseal(rotating, cursor);
      pages.push(page);
      cursor = page.next_cursor;
      if (pages.length > 1000) throw new Error("reseal never finished");
    } while (cursor !== null);
    expect(pages.map((p) => p.phase)).toContain("webhooks");
    expect(pages.flatMap((p) => p.failed).filter((f: any) => f.tenant_id === tenantId)).toEqual([]);
    expect(pages.reduce((n, p) => n + p.resealed, 0)).toBeGreaterThanOrEqual(5);

    // The old key removed: everything opens with SECRETS_KEY alone and names its id.
    const current = await keyId(env.SECRETS_KEY);
    const after = await env.DB.prepare(
      "SELECT dkim_private_key_enc AS a, dkim_next_private_key_enc AS n FROM sender_domains WHERE id = ?",
    )
      .bind(d.id)
      .first<{ a: string; n: string }>();
    for (const [v, pem] of [
      [after!.a, pems.a],
      [after!.n, pems.n],
    ] as const) {
      expect(sealedKeyId(v)).toBe(current);
      expect(await open(env.SECRETS_KEY, v, aad)).toBe(pem);
    }
    await inQueue(tenantId, async (_q, st) => {
      const ep = st.storage.sql
        .exec<{ secret: string; oauth_secret: string }>(
          "SELECT secret, oauth_secret FROM endpoint WHERE id = ?",
          hook.body.id,
        )
        .one();
      const sk = st.storage.sql.exec<{ private_key: string }>("SELECT private_key FROM signing_key").one();
      for (const v of [ep.secret, ep.oauth_secret, sk.private_key]) expect(sealedKeyId(v)).toBe(current);
      expect(await open(env.SECRETS_KEY, ep.secret, webhookAads.secret)).toBe(signingSecret);
      expect(await open(env.SECRETS_KEY, ep.oauth_secret, webhookAads.oauth)).toBe("oauth-secret-1");
      expect(await open(env.SECRETS_KEY, sk.private_key, webhookAads.signing)).toBe(signingPem);
    });
    // The signed-webhook key still answers with its public half (the object opens nothing for that),
    // and the tenant's endpoint is intact.
    expect((await api(key, "GET", `/v3/user/webhooks/${hook.body.id}`)).status).toBe(200);

    // A value no configured key opens (sealed for another owner) is reported by kind and left alone.
    const foreign = await seal(env.SECRETS_KEY, "x", "webhook:someone-else:wh_x");
    await inQueue(tenantId, (_q, st) => {
      st.storage.sql.exec("UPDATE endpoint SET secret = ? WHERE id = ?", foreign, hook.body.id);
    });
    let c2: string | null = "webhooks:";
    const failures: any[] = [];
    while (c2 !== null) {
      const p = await reseal(rotating, c2);
      failures.push(...p.failed.filter((f: any) => f.tenant_id === tenantId));
      c2 = p.next_cursor;
    }
    expect(failures).toEqual([
      {
        tenant_id: tenantId,
        kind: "webhook_secret",
        id: hook.body.id,
        error: expect.stringMatching(/another owner/),
      },
    ]);
  });
});
