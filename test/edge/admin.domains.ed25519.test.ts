/**
 * Dual signing (docs/api/admin.md#dual-signing-ed25519; RFC 8463): a sender domain's Ed25519 key
 * beside its RSA key. Generated at the edge with WebCrypto, sealed under its own AAD
 * (`dkim-ed25519:<domain id>`), published as `v=DKIM1; k=ed25519; p=<raw 32-byte key>` under a
 * selector of its own that changes with each rotation; it signs only once verification has seen
 * its record, and the hub opens it into the job as a second key, failing just that message when it
 * does not open. The D1 columns come from migrations/0002_add_ed25519_dkim_key.sql.
 */
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { base64ToBytes, bytesToBase64 } from "../../edge/src/lib/base64.ts";
import { dkimKeyAad, sealDkimPrivateKey } from "../../edge/src/lib/dkim-key-box.ts";
import { keyId, open } from "../../edge/src/lib/secret-box.ts";
import type { TxtLookup } from "../../edge/src/services/dns-check.ts";
import { nextEd25519Selector, verifyDomain } from "../../edge/src/services/domains.ts";
import { createApp } from "../../edge/src/app.ts";
import type { Permission } from "../../shared/permissions.ts";
import {
  BASE,
  bearer,
  call,
  createApiKey,
  createTenant,
  eventually,
  getMessage,
  linkSettled,
  mailBody,
  openLink,
  operatorHeaders,
  resetHub,
  sendOne,
  setupTenant,
  uid,
  type DomainView,
  type LinkClient,
} from "./helpers.ts";

interface DualView extends DomainView {
  dkim_algorithm: "rsa" | "dual";
  dkim_ed25519_selector: string | null;
  dkim_ed25519_verified_at: string | null;
}

const ED25519_RECORD = /^v=DKIM1; k=ed25519; p=([A-Za-z0-9+/]{43}=)$/;

async function tenantWithKey(scopes: Permission[] = ["domains.read", "domains.write"]) {
  const tenantId = await createTenant();
  const key = await createApiKey(tenantId, { scopes });
  return { tenantId, key: key.key };
}

async function postJson(path: string, headers: Record<string, string>, body: unknown, method = "POST") {
  const res = await call(path, { method, headers, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as { data: DualView } & { detail?: unknown } };
}

async function dualDomain(headers: Record<string, string>, extra: Record<string, unknown> = {}) {
  const res = await postJson("/api/admin/domains", headers, {
    domain: `mail-${uid()}.example.com`,
    dkim_algorithm: "dual",
    ...extra,
  });
  expect(res.status, JSON.stringify(res.json)).toBe(201);
  return res.json.data;
}

async function row(id: string) {
  return (await env.DB.prepare(
    `SELECT dkim_private_key_enc, dkim_ed25519_selector, dkim_ed25519_public_key,
            dkim_ed25519_private_key_enc, dkim_ed25519_verified_at
     FROM sender_domains WHERE id = ?`,
  )
    .bind(id)
    .first<{
      dkim_private_key_enc: string;
      dkim_ed25519_selector: string | null;
      dkim_ed25519_public_key: string | null;
      dkim_ed25519_private_key_enc: string | null;
      dkim_ed25519_verified_at: number | null;
    }>())!;
}

const pemBytes = (pem: string) => base64ToBytes(pem.replace(/-----[A-Z ]+-----|\n/g, ""));

/** True when the PKCS#8 PEM is an Ed25519 private key whose signatures verify under the raw public key. */
async function ed25519PairMatches(pem: string, publicKeyB64: string): Promise<boolean> {
  const priv = await crypto.subtle.importKey("pkcs8", pemBytes(pem), { name: "Ed25519" }, false, ["sign"]);
  const pub = await crypto.subtle.importKey("raw", base64ToBytes(publicKeyB64), { name: "Ed25519" }, false, [
    "verify",
  ]);
  const data = new TextEncoder().encode("probe");
  return crypto.subtle.verify(
    { name: "Ed25519" },
    pub,
    await crypto.subtle.sign({ name: "Ed25519" }, priv, data),
    data,
  );
}

/** DNS as published: the records a domain view lists, optionally changed. A TxtLookup is the port verifyDomain takes. */
function publish(
  d: DualView,
  change: (host: string, value: string) => string | null = (_h, v) => v,
): TxtLookup {
  const zone = new Map<string, string[]>();
  for (const r of d.dns_records) {
    const value = change(r.host, r.value);
    if (value !== null) zone.set(r.host, [...(zone.get(r.host) ?? []), value]);
  }
  return async (name) => zone.get(name) ?? [];
}

const deps = () => ({
  db: createDb(env.DB),
  secrets: { current: env.SECRETS_KEY },
  devMode: false,
  now: Date.now,
});

describe("post /api/admin/domains with dkim_algorithm", () => {
  it('"dual" creates an Ed25519 key beside the RSA key and lists its record (RFC 8463 §4.2) after the RSA one', async () => {
    const { key } = await tenantWithKey();
    const d = await dualDomain(bearer(key));
    expect(d).toMatchObject({
      dkim_selector: "scaisend",
      dkim_algorithm: "dual",
      dkim_ed25519_selector: "scaisend-ed1",
      // Not signing yet: its record has not been seen in DNS.
      dkim_ed25519_verified_at: null,
      verified: false,
    });
    expect(d.dns_records.map((r) => [r.purpose, r.host])).toEqual([
      ["dkim", `scaisend._domainkey.${d.domain}`],
      ["dkim", `scaisend-ed1._domainkey.${d.domain}`],
      ["spf", d.domain],
      ["dmarc", `_dmarc.${d.domain}`],
    ]);
    expect(d.dns_records[0]!.value).toMatch(/^v=DKIM1; k=rsa; p=MII/);
    const p = ED25519_RECORD.exec(d.dns_records[1]!.value)?.[1];
    expect(p, d.dns_records[1]!.value).toBeDefined();
    // The bare 32-byte key, not a SubjectPublicKeyInfo (which would be 44 bytes).
    expect(base64ToBytes(p!)).toHaveLength(32);

    const stored = await row(d.id);
    expect(stored.dkim_ed25519_public_key).toBe(p);
    expect(stored.dkim_ed25519_selector).toBe("scaisend-ed1");
    const sealed = stored.dkim_ed25519_private_key_enc!;
    expect(sealed).toMatch(/^v2\.[0-9a-f]{16}\.[A-Za-z0-9+/]+=*\.[A-Za-z0-9+/]+=*$/);
    expect(sealed.split(".")[1]).toBe(await keyId(env.SECRETS_KEY));
    expect(sealed).not.toContain("PRIVATE KEY");
    expect(JSON.stringify(d)).not.toContain(sealed);

    // Its own AAD: it opens as this domain's Ed25519 key, not as its RSA key, nor as another domain's.
    const pem = await open(env.SECRETS_KEY, sealed, dkimKeyAad(d.id, "ed25519"));
    expect(dkimKeyAad(d.id, "ed25519")).toBe(`dkim-ed25519:${d.id}`);
    await expect(open(env.SECRETS_KEY, sealed, dkimKeyAad(d.id))).rejects.toThrow(/another owner/);
    await expect(open(env.SECRETS_KEY, sealed, "dkim-ed25519:dom_other")).rejects.toThrow(/another owner/);
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(await ed25519PairMatches(pem, p!)).toBe(true);
  });

  it("gives every domain its own Ed25519 key", async () => {
    const { key } = await tenantWithKey();
    const a = await dualDomain(bearer(key));
    const b = await dualDomain(bearer(key));
    expect(a.dns_records[1]!.value).not.toBe(b.dns_records[1]!.value);
  });

  it('defaults to "rsa": no Ed25519 key, the three records as before', async () => {
    const { key } = await tenantWithKey();
    const res = await postJson("/api/admin/domains", bearer(key), { domain: `mail-${uid()}.example.com` });
    expect(res.status).toBe(201);
    expect(res.json.data).toMatchObject({
      dkim_algorithm: "rsa",
      dkim_ed25519_selector: null,
      dkim_ed25519_verified_at: null,
    });
    expect(res.json.data.dns_records.map((r) => r.purpose)).toEqual(["dkim", "spf", "dmarc"]);
    const stored = await row(res.json.data.id);
    expect(stored.dkim_ed25519_private_key_enc).toBeNull();
  });

  it('"ed25519" alone → 400 saying why and what to use; an unknown value → 422', async () => {
    const { key } = await tenantWithKey();
    const alone = await postJson("/api/admin/domains", bearer(key), {
      domain: `mail-${uid()}.example.com`,
      dkim_algorithm: "ed25519",
    });
    expect(alone.status).toBe(400);
    expect(alone.json).toEqual({
      detail:
        'dkim_algorithm "ed25519" alone is not offered: use "dual" (rsa-sha256 and ed25519-sha256), ' +
        "so receivers without RFC 8463 support still see a valid signature",
    });
    const unknown = await postJson("/api/admin/domains", bearer(key), {
      domain: `mail-${uid()}.example.com`,
      dkim_algorithm: "dsa",
    });
    expect(unknown.status).toBe(422);
    expect((unknown.json.detail as { loc: unknown[] }[]).map((e) => e.loc)).toEqual([
      ["body", "dkim_algorithm"],
    ]);
  });
});

describe("post and delete /api/admin/domains/{id}/dkim/ed25519", () => {
  it("adds a key to an RSA domain, rotates it under the next selector, and removes it", async () => {
    const { key } = await tenantWithKey();
    const created = await postJson("/api/admin/domains", bearer(key), {
      domain: `mail-${uid()}.example.com`,
    });
    const id = created.json.data.id;
    const rsaBefore = (await row(id)).dkim_private_key_enc;

    const added = await postJson(`/api/admin/domains/${id}/dkim/ed25519`, bearer(key), {});
    expect(added.status).toBe(200);
    expect(added.json.data).toMatchObject({ dkim_algorithm: "dual", dkim_ed25519_selector: "scaisend-ed1" });
    expect(added.json.data.dns_records[1]!.value).toMatch(ED25519_RECORD);

    // Verification saw the record: the key signs. A rotation then starts over, unverified.
    await markEd25519Verified(id);
    const rotated = await postJson(`/api/admin/domains/${id}/dkim/ed25519`, bearer(key), {});
    expect(rotated.status).toBe(200);
    expect(rotated.json.data).toMatchObject({
      dkim_algorithm: "dual",
      dkim_ed25519_selector: "scaisend-ed2",
      dkim_ed25519_verified_at: null,
    });
    expect(rotated.json.data.dns_records[1]!.host).toBe(
      `scaisend-ed2._domainkey.${created.json.data.domain}`,
    );
    expect(rotated.json.data.dns_records[1]!.value).not.toBe(added.json.data.dns_records[1]!.value);
    const stored = await row(id);
    expect(
      await ed25519PairMatches(
        await open(env.SECRETS_KEY, stored.dkim_ed25519_private_key_enc!, dkimKeyAad(id, "ed25519")),
        stored.dkim_ed25519_public_key!,
      ),
    ).toBe(true);
    // The RSA key is untouched.
    expect(stored.dkim_private_key_enc).toBe(rsaBefore);

    const removed = await postJson(`/api/admin/domains/${id}/dkim/ed25519`, bearer(key), undefined, "DELETE");
    expect(removed.status).toBe(200);
    expect(removed.json.data).toMatchObject({ dkim_algorithm: "rsa", dkim_ed25519_selector: null });
    expect(removed.json.data.dns_records).toHaveLength(3);
    expect((await row(id)).dkim_ed25519_private_key_enc).toBeNull();
    // After a removal the numbering starts again, which is harmless: the old record is unpublished.
    expect(nextEd25519Selector(null)).toBe("scaisend-ed1");
    expect(nextEd25519Selector("scaisend-ed9")).toBe("scaisend-ed10");
    expect(nextEd25519Selector("custom")).toBe("scaisend-ed1");
  });

  it("needs domains.write, and another tenant's domain is 404; the operator names the tenant", async () => {
    const a = await tenantWithKey();
    const b = await tenantWithKey();
    const d = await dualDomain(bearer(a.key));
    const reader = await createApiKey(a.tenantId, { scopes: ["domains.read"] });
    const path = `/api/admin/domains/${d.id}/dkim/ed25519`;
    const noScope = await postJson(path, bearer(reader.key), {});
    expect(noScope.status).toBe(403);
    expect(noScope.json).toEqual({ detail: "Missing required scope: domains.write" });
    for (const method of ["POST", "DELETE"]) {
      const other = await postJson(path, bearer(b.key), {}, method);
      expect(other.status).toBe(404);
      expect(other.json).toEqual({ detail: `Domain not found: ${d.id}` });
    }
    expect((await row(d.id)).dkim_ed25519_selector).toBe("scaisend-ed1");
    const asOperator = await postJson(`${path}?tenant_id=${a.tenantId}`, operatorHeaders(), {});
    expect(asOperator.status).toBe(200);
    expect(asOperator.json.data.dkim_ed25519_selector).toBe("scaisend-ed2");
  });
});

async function markEd25519Verified(id: string): Promise<void> {
  const r = await env.DB.prepare("UPDATE sender_domains SET dkim_ed25519_verified_at = ? WHERE id = ?")
    .bind(Date.now(), id)
    .run();
  expect(r.meta.changes).toBe(1);
}

describe("verifying a dual-signing domain", () => {
  it("checks the Ed25519 record too; all published → verified, and the Ed25519 key signs from then on", async () => {
    const { tenantId, key } = await tenantWithKey();
    const d = await dualDomain(bearer(key));
    const outcome = await verifyDomain(deps(), publish(d), tenantId, d.id);
    expect(outcome.verified).toBe(true);
    expect(outcome.checks.map((c) => [c.purpose, c.host, c.ok])).toEqual([
      ["dkim", `scaisend._domainkey.${d.domain}`, true],
      ["dkim", `scaisend-ed1._domainkey.${d.domain}`, true],
      ["spf", d.domain, true],
      ["dmarc", `_dmarc.${d.domain}`, true],
    ]);
    expect(outcome.errors).toEqual([]);
    expect((await row(d.id)).dkim_ed25519_verified_at).toBeGreaterThan(0);
    const view = await call(`/api/admin/domains/${d.id}`, { headers: bearer(key) });
    const data = ((await view.json()) as { data: DualView }).data;
    expect(data.dkim_ed25519_verified_at).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it("a missing or wrong Ed25519 record is reported, keeps that key from signing, and does not unverify the domain", async () => {
    const { tenantId, key } = await tenantWithKey();
    const d = await dualDomain(bearer(key));
    const edHost = d.dns_records[1]!.host;

    const missing = await verifyDomain(
      deps(),
      publish(d, (h, v) => (h === edHost ? null : v)),
      tenantId,
      d.id,
    );
    expect(missing.verified).toBe(true);
    expect(missing.checks[1]).toEqual({
      purpose: "dkim",
      host: edHost,
      ok: false,
      message: "no DKIM record found",
      expected: d.dns_records[1]!.value,
      found: [],
    });
    expect(missing.errors).toEqual([{ record: edHost, message: "no DKIM record found" }]);
    expect((await row(d.id)).dkim_ed25519_verified_at).toBeNull();

    // The right key published as k=rsa (or with k= left out, which means rsa): not an Ed25519 record.
    const asRsa = await verifyDomain(
      deps(),
      publish(d, (h, v) => (h === edHost ? v.replace("k=ed25519", "k=rsa") : v)),
      tenantId,
      d.id,
    );
    expect(asRsa.checks[1]).toMatchObject({
      ok: false,
      message: expect.stringContaining("without k=ed25519"),
    });
    // Another key under the selector.
    const other = await verifyDomain(
      deps(),
      publish(d, (h, v) => (h === edHost ? "v=DKIM1; k=ed25519; p=" + bytesToBase64(new Uint8Array(32)) : v)),
      tenantId,
      d.id,
    );
    expect(other.checks[1]).toMatchObject({
      ok: false,
      message: "DKIM record found but its public key (p=) does not match this domain's Ed25519 key",
    });
    expect((await row(d.id)).dkim_ed25519_verified_at).toBeNull();

    // Published: it signs; then the record disappears again: it stops.
    await verifyDomain(deps(), publish(d), tenantId, d.id);
    expect((await row(d.id)).dkim_ed25519_verified_at).not.toBeNull();
    await verifyDomain(
      deps(),
      publish(d, (h, v) => (h === edHost ? null : v)),
      tenantId,
      d.id,
    );
    expect((await row(d.id)).dkim_ed25519_verified_at).toBeNull();
    // The RSA record alone missing still unverifies the domain, as before dual signing.
    const noRsa = await verifyDomain(
      deps(),
      publish(d, (h, v) => (h === d.dns_records[0]!.host ? null : v)),
      tenantId,
      d.id,
    );
    expect(noRsa.verified).toBe(false);
  });
});

describe("the hub opens both keys into the job", () => {
  const opened: LinkClient[] = [];
  beforeEach(async () => {
    await resetHub();
  });
  afterEach(() => {
    for (const l of opened.splice(0)) l.close();
  });

  async function dualTenant() {
    const t = await setupTenant();
    const added = await postJson(
      `/api/admin/domains/${t.domainId}/dkim/ed25519?tenant_id=${t.tenantId}`,
      operatorHeaders(),
      {},
    );
    expect(added.status).toBe(200);
    return { ...t, view: added.json.data };
  }

  it("a verified Ed25519 key travels as dkimAdditional after the RSA key; an unverified one does not", async () => {
    const signing = await dualTenant();
    const pending = await dualTenant();
    await verifyDomain(deps(), publish(signing.view), signing.tenantId, signing.domainId);
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(10);

    const id = await sendOne(signing.liveKey, mailBody(signing.from));
    const [job] = await origin.jobs(1);
    expect(job).toMatchObject({
      messageId: id,
      dkim: { domain: signing.domain, selector: "scaisend" },
      dkimAdditional: [{ domain: signing.domain, selector: "scaisend-ed1" }],
    });
    expect(job!.dkim!.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(job!.dkimAdditional).toHaveLength(1);
    const published = ED25519_RECORD.exec(signing.view.dns_records[1]!.value)![1]!;
    expect(await ed25519PairMatches(job!.dkimAdditional![0]!.privateKeyPem, published)).toBe(true);

    const idPending = await sendOne(pending.liveKey, mailBody(pending.from));
    const [jobPending] = await origin.jobs(1);
    expect(jobPending).toMatchObject({ messageId: idPending, dkim: { selector: "scaisend" } });
    expect(jobPending!.dkimAdditional).toBeUndefined();
  });

  it("an Ed25519 key that does not open fails that message with the reason; the rest of the batch goes out", async () => {
    const bad = await dualTenant();
    const good = await dualTenant();
    for (const t of [bad, good]) await verifyDomain(deps(), publish(t.view), t.tenantId, t.domainId);
    // The Ed25519 column now holds the domain's own RSA key sealed value: its AAD is `dkim:<id>`,
    // so it must not open as `dkim-ed25519:<id>`, although the hub has just opened (and cached)
    // that very value as the RSA key of the same message.
    const tampered = await env.DB.prepare(
      "UPDATE sender_domains SET dkim_ed25519_private_key_enc = dkim_private_key_enc WHERE id = ?",
    )
      .bind(bad.domainId)
      .run();
    expect(tampered.meta.changes).toBe(1);

    const idBad = await sendOne(bad.liveKey, mailBody(bad.from));
    const idGood = await sendOne(good.liveKey, mailBody(good.from));
    const hub = env.ORIGIN_HUB.getByName("hub-0");
    expect((await hub.stats()).ready).toBeGreaterThanOrEqual(1);
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(10);

    const [job] = await origin.jobs(1);
    expect(job).toMatchObject({ messageId: idGood, dkimAdditional: [{ selector: "scaisend-ed1" }] });
    const m = await eventually(
      () => getMessage(bad.liveKey, idBad),
      (v) => v.status === "failed",
    );
    expect(m.error_message).toMatch(
      new RegExp(
        `^Could not prepare the message for delivery: the Ed25519 DKIM private key of ${bad.domain.replace(/\./g, "\\.")} could not be opened \\(Ed25519 DKIM key of .*${bad.domainId}.*another owner`,
      ),
    );
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "dropped"]);
    expect(await linkSettled(origin)).toMatchObject({ jobsOut: 1, credits: 9 });
    const left = await runInDurableObject(
      hub,
      (_i, state) =>
        state.storage.sql
          .exec<{ n: number }>("SELECT count(*) AS n FROM outbox WHERE message_id = ?", idBad)
          .one().n,
    );
    expect(left).toBe(0);
  });
});

interface ResealFailure {
  domain_id: string;
  tenant_id: string;
  domain: string;
  key: string;
  error: string;
}

describe("re-sealing a dual-signing domain", () => {
  const app = createApp();
  async function reseal(e: Bindings, cursor: string | null) {
    const ctx = createExecutionContext();
    const res = await app.request(
      `${BASE}/api/admin/secrets/reseal`,
      { method: "POST", headers: operatorHeaders(), body: JSON.stringify({ limit: 100, cursor }) },
      e,
      ctx,
    );
    const json = (await res.json()) as {
      data: { failed: ResealFailure[]; next_cursor: string | null };
    };
    await waitOnExecutionContext(ctx);
    return json.data;
  }

  it("re-seals the Ed25519 key under its own AAD too, and reports one that does not open by key", async () => {
    const oldKey = bytesToBase64(crypto.getRandomValues(new Uint8Array(32)));
    const tenantId = await createTenant();
    const d = await dualDomain(operatorHeaders(), { tenant_id: tenantId });
    const broken = await dualDomain(operatorHeaders(), { tenant_id: tenantId });
    const stored = await row(d.id);
    const pem = await open(
      env.SECRETS_KEY,
      stored.dkim_ed25519_private_key_enc!,
      dkimKeyAad(d.id, "ed25519"),
    );
    // Before the rotation: d's Ed25519 key under the old key; broken's Ed25519 column holds its RSA value.
    await env.DB.prepare("UPDATE sender_domains SET dkim_ed25519_private_key_enc = ? WHERE id = ?")
      .bind(await sealDkimPrivateKey({ current: oldKey }, d.id, pem, "ed25519"), d.id)
      .run();
    await env.DB.prepare(
      "UPDATE sender_domains SET dkim_ed25519_private_key_enc = dkim_private_key_enc WHERE id = ?",
    )
      .bind(broken.id)
      .run();

    const failed: ResealFailure[] = [];
    let cursor: string | null = null;
    const rotating = { ...env, SECRETS_KEY_PREVIOUS: oldKey } as Bindings;
    do {
      const page = await reseal(rotating, cursor);
      failed.push(...page.failed);
      cursor = page.next_cursor;
    } while (cursor !== null);

    const after = await row(d.id);
    expect(after.dkim_ed25519_private_key_enc!.split(".")[1]).toBe(await keyId(env.SECRETS_KEY));
    expect(
      await open(env.SECRETS_KEY, after.dkim_ed25519_private_key_enc!, dkimKeyAad(d.id, "ed25519")),
    ).toBe(pem);
    expect(after.dkim_private_key_enc).toBe(stored.dkim_private_key_enc);
    expect(failed.filter((f) => f.domain_id === broken.id)).toEqual([
      {
        domain_id: broken.id,
        tenant_id: tenantId,
        domain: broken.domain,
        key: "ed25519",
        error: expect.stringMatching(/^Ed25519 DKIM key of .* cannot be opened: .*another owner/),
      },
    ]);
  });
});

describe("migration 0002", () => {
  it("adds the four nullable Ed25519 columns to sender_domains", async () => {
    const cols = await env.DB.prepare("PRAGMA table_info(sender_domains)").all<{
      name: string;
      type: string;
      notnull: number;
    }>();
    const ed = cols.results.filter((c) => c.name.startsWith("dkim_ed25519_"));
    expect(ed.map((c) => [c.name, c.type.toLowerCase(), c.notnull])).toEqual([
      ["dkim_ed25519_selector", "text", 0],
      ["dkim_ed25519_public_key", "text", 0],
      ["dkim_ed25519_private_key_enc", "text", 0],
      ["dkim_ed25519_verified_at", "integer", 0],
    ]);
    const applied = await env.DB.prepare("SELECT name FROM d1_migrations ORDER BY id").all<{
      name: string;
    }>();
    expect(applied.results.map((r) => r.name)).toContain("0002_add_ed25519_dkim_key.sql");
  });
});
