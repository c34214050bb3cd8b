/**
 * POST /api/admin/secrets/reseal (docs/operations.md, "Rotating SECRETS_KEY"): re-seals every
 * domain's DKIM key under the current SECRETS_KEY, page by page, while SECRETS_KEY_PREVIOUS still
 * opens the old values.
 *
 * The rotation here ends at the test env's own SECRETS_KEY: this file's domains are first re-sealed
 * under a fresh "old" key, and the route is then called with that key as SECRETS_KEY_PREVIOUS.
 * Every other domain in the database is already under SECRETS_KEY and stays as it is, so the route
 * can walk the whole table without disturbing other test files.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { bytesToBase64 } from "../../edge/src/lib/base64.ts";
import { dkimKeyAad, openDkimPrivateKey, sealDkimPrivateKey } from "../../edge/src/lib/dkim-key-box.ts";
import { keyId, open, sealedKeyId } from "../../edge/src/lib/secret-box.ts";
import { loadConfig } from "../../edge/src/env.ts";
import { createDb } from "../../edge/src/db/client.ts";
import {
  registeredClient,
  saveRegistration,
  webhookSecret,
} from "../../edge/src/services/scaikey-registration.ts";
import {
  BASE,
  bearer,
  call,
  createApiKey,
  createDomain,
  createTenant,
  operatorHeaders,
  uid,
} from "./helpers.ts";

const app = createApp();

interface ResealPage {
  key_id: string;
  examined: number;
  resealed: number;
  already_current: number;
  failed: { domain_id: string; tenant_id: string; domain: string; key: string; error: string }[];
  next_cursor: string | null;
}

async function reseal(e: Bindings, body: unknown): Promise<{ status: number; json: unknown }> {
  const ctx = createExecutionContext();
  const res = await app.request(
    `${BASE}/api/admin/secrets/reseal`,
    { method: "POST", headers: operatorHeaders(), body: JSON.stringify(body) },
    e,
    ctx,
  );
  const json: unknown = await res.json();
  await waitOnExecutionContext(ctx);
  return { status: res.status, json };
}

/** Walks every page, as `scaisend secrets reseal` does. */
async function resealAll(e: Bindings, limit: number): Promise<ResealPage[]> {
  const pages: ResealPage[] = [];
  let cursor: string | null = null;
  do {
    const res = await reseal(e, { cursor, limit });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    const page = (res.json as { data: ResealPage }).data;
    pages.push(page);
    cursor = page.next_cursor;
    if (pages.length > 10_000) throw new Error("reseal never finished");
  } while (cursor !== null);
  return pages;
}

const storedKey = async (id: string): Promise<string> =>
  (await env.DB.prepare("SELECT dkim_private_key_enc AS v FROM sender_domains WHERE id = ?")
    .bind(id)
    .first<{ v: string }>())!.v;

const setStoredKey = async (id: string, v: string): Promise<void> => {
  await env.DB.prepare("UPDATE sender_domains SET dkim_private_key_enc = ? WHERE id = ?").bind(v, id).run();
};

async function sealV1(keyB64: string, plaintext: string): Promise<string> {
  const raw = Uint8Array.from(atob(keyB64), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new TextEncoder().encode(plaintext));
  return `v1.${bytesToBase64(iv)}.${bytesToBase64(new Uint8Array(ct))}`;
}

describe("post /api/admin/secrets/reseal", () => {
  it("re-seals every key under SECRETS_KEY across pages; afterwards the old key is no longer needed", async () => {
    const oldKey = bytesToBase64(crypto.getRandomValues(new Uint8Array(32)));
    const tenantId = await createTenant();
    const [d1, d2, d3] = [
      await createDomain(tenantId, `a-${uid()}.example.com`),
      await createDomain(tenantId, `b-${uid()}.example.com`),
      await createDomain(tenantId, `c-${uid()}.example.com`),
    ];
    const pem1 = await open(env.SECRETS_KEY, await storedKey(d1!.id), dkimKeyAad(d1!.id));
    const pem2 = await open(env.SECRETS_KEY, await storedKey(d2!.id), dkimKeyAad(d2!.id));
    // Before the rotation: d1 sealed (v2) under the old key, d2 in the old v1 form under it, and d3
    // holding a copy of d1's sealed key, which must not open as d3's.
    const d1Old = await sealDkimPrivateKey({ current: oldKey }, d1!.id, pem1);
    await setStoredKey(d1!.id, d1Old);
    await setStoredKey(d2!.id, await sealV1(oldKey, pem2));
    await setStoredKey(d3!.id, d1Old);

    const rotating = { ...env, SECRETS_KEY_PREVIOUS: oldKey } as Bindings;
    const pages = await resealAll(rotating, 2);
    expect(pages.length).toBeGreaterThan(1);
    const currentId = await keyId(env.SECRETS_KEY);
    for (const p of pages) expect(p.key_id).toBe(currentId);
    const examined = pages.reduce((n, p) => n + p.examined, 0);
    const total = (await env.DB.prepare("SELECT count(*) AS n FROM sender_domains").first<{ n: number }>())!
      .n;
    expect(examined).toBeGreaterThanOrEqual(total);

    // d1 and d2 now name SECRETS_KEY's id and open with it alone (the old key dropped).
    for (const [d, pem] of [
      [d1!, pem1],
      [d2!, pem2],
    ] as const) {
      const v = await storedKey(d.id);
      expect(sealedKeyId(v)).toBe(currentId);
      expect(await open(env.SECRETS_KEY, v, dkimKeyAad(d.id))).toBe(pem);
    }
    // d3 is reported with the reason, and left as it was.
    const failed = pages.flatMap((p) => p.failed).filter((f) => f.tenant_id === tenantId);
    expect(failed).toEqual([
      {
        domain_id: d3!.id,
        tenant_id: tenantId,
        domain: d3!.domain,
        key: "rsa",
        error: expect.stringMatching(
          new RegExp(
            `^DKIM key of ${d3!.domain.replace(/\./g, "\\.")} \\(${d3!.id}\\) cannot be opened: .*another owner`,
          ),
        ),
      },
    ]);
    expect(await storedKey(d3!.id)).toBe(d1Old);

    // What the hub does per job, with the old key gone from the configuration.
    const plain = loadConfig({ ...env } as Bindings);
    if (!plain.ok) throw new Error(plain.problems.join("; "));
    expect(
      await openDkimPrivateKey(plain.config, {
        domainId: d1!.id,
        domain: d1!.domain,
        selector: "scaisend",
        privateKeySealed: await storedKey(d1!.id),
      }),
    ).toBe(pem1);

    // Running it again changes nothing that is already current.
    const before = await storedKey(d1!.id);
    const again = await resealAll(rotating, 100);
    expect(await storedKey(d1!.id)).toBe(before);
    expect(again.flatMap((p) => p.failed).map((f) => f.domain_id)).toContain(d3!.id);
  });

  it("re-seals a pending rotation's key under the AAD of the key it replaces (RSA or Ed25519)", async () => {
    const oldKey = bytesToBase64(crypto.getRandomValues(new Uint8Array(32)));
    const tenantId = await createTenant();
    const [rsa, ed] = [
      await createDomain(tenantId, `next-rsa-${uid()}.example.com`),
      await createDomain(tenantId, `next-ed-${uid()}.example.com`),
    ];
    const pem = "-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----";
    const pending = async (id: string, selector: string, kind: "rsa" | "ed25519") => {
      await env.DB.prepare(
        "UPDATE sender_domains SET dkim_private_key_enc = ?, dkim_next_selector = ?, dkim_next_public_key = 'x', dkim_next_private_key_enc = ?, dkim_next_created_at = 1 WHERE id = ?",
      )
        .bind(
          await sealDkimPrivateKey({ current: oldKey }, id, pem),
          selector,
          await sealDkimPrivateKey({ current: oldKey }, id, pem, kind),
          id,
        )
        .run();
    };
    await pending(rsa!.id, "scaisend2", "rsa");
    await pending(ed!.id, "scaisend-ed2", "ed25519");

    const pages = await resealAll({ ...env, SECRETS_KEY_PREVIOUS: oldKey } as Bindings, 100);
    expect(pages.flatMap((p) => p.failed).filter((f) => f.tenant_id === tenantId)).toEqual([]);
    const next = async (id: string) =>
      (await env.DB.prepare("SELECT dkim_next_private_key_enc AS v FROM sender_domains WHERE id = ?")
        .bind(id)
        .first<{ v: string }>())!.v;
    const currentId = await keyId(env.SECRETS_KEY);
    for (const [d, kind] of [
      [rsa!, "rsa"],
      [ed!, "ed25519"],
    ] as const) {
      const v = await next(d.id);
      expect(sealedKeyId(v)).toBe(currentId);
      expect(await open(env.SECRETS_KEY, v, dkimKeyAad(d.id, kind))).toBe(pem);
    }
  });

  it("re-seals the ScaiKey registration's client and webhook secrets last, in a page of its own", async () => {
    const oldKey = bytesToBase64(crypto.getRandomValues(new Uint8Array(32)));
    const db = createDb(env.DB);
    await saveRegistration(
      db,
      { current: oldKey },
      {
        issuer: "https://scaikey.reseal.test",
        clientId: "client-1",
        clientSecret: "client-secret-1",
        redirectUri: `${BASE}/v3/auth/callback`,
        webhookSecret: "webhook-secret-1",
      },
      Date.now(),
    );
    const stored = async () =>
      (await env.DB.prepare(
        "SELECT client_secret AS c, webhook_secret AS w FROM scaikey_registration",
      ).first<{
        c: string;
        w: string;
      }>())!;
    const before = await stored();
    expect(sealedKeyId(before.c)).toBe(await keyId(oldKey));

    const pages = await resealAll({ ...env, SECRETS_KEY_PREVIOUS: oldKey } as Bindings, 100);
    const last = pages[pages.length - 1] as ResealPage & { phase: string };
    expect(last.phase).toBe("scaikey");
    expect(last).toMatchObject({ examined: 1, resealed: 2, already_current: 0, failed: [] });

    // Both now open with SECRETS_KEY alone, to the same values; a second walk finds nothing to do.
    const currentId = await keyId(env.SECRETS_KEY);
    const after = await stored();
    expect([sealedKeyId(after.c), sealedKeyId(after.w)]).toEqual([currentId, currentId]);
    const client = await registeredClient(db, { current: env.SECRETS_KEY });
    expect(client?.clientSecret).toBe("client-secret-1");
    expect(await webhookSecret(db, { current: env.SECRETS_KEY })).toBe("webhook-secret-1");
    const again = await resealAll({ ...env, SECRETS_KEY_PREVIOUS: oldKey } as Bindings, 100);
    expect(again[again.length - 1]).toMatchObject({ resealed: 0, already_current: 2 });
  });

  it("is for the operator only", async () => {
    const tenantId = await createTenant();
    const key = await createApiKey(tenantId, { scopes: ["domains.read", "domains.write"] });
    const res = await call("/api/admin/secrets/reseal", {
      method: "POST",
      headers: bearer(key.key),
      body: "{}",
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ detail: "This endpoint needs the operator token" });
  });

  it("refuses a page size over 100 with a validation error", async () => {
    const res = await reseal({ ...env } as Bindings, { limit: 1000 });
    expect(res.status).toBe(422);
    expect((res.json as { detail: { loc: unknown[] }[] }).detail[0]!.loc).toEqual(["body", "limit"]);
  });
});
