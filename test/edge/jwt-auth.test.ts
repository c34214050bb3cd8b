/**
 * ScaiKey JWTs at the edge (docs/api/sendgrid.md#authentication, docs/configuration.md#scaikey).
 * A local issuer made with jose: RSA (RS256) and EC P-256 (ES256) keys generated here, its JWKS
 * handed to the edge's key-set cache as its outbound fetch (as the DoH tests hand in a resolver),
 * and tokens signed with them. Requests run the real app against the real D1 binding with the
 * SCAIKEY_* settings set; the cache's clock is the test's, so intervals are stepped, not waited out.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { base64url, exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK } from "jose";
import { createApp } from "../../edge/src/app.ts";
import { authApi } from "../../edge/src/surfaces/sendgrid/auth.ts";
import { loadConfig, type Bindings } from "../../edge/src/env.ts";
import {
  JWKS_MAX_AGE_MS,
  JWKS_REFETCH_INTERVAL_MS,
  jwksCache,
  type JwksFetcher,
} from "../../edge/src/services/jwks-cache.ts";
import { tenantStatusCache } from "../../edge/src/services/jwt-auth.ts";
import {
  BASE,
  bearer,
  call,
  createApiKey,
  createDomain,
  createTenant,
  eventually,
  mailBody,
  setupTenant,
  uid,
} from "./helpers.ts";

const JWKS_URL = "https://scaikey.test/.well-known/jwks.json";
const ISSUER = "https://scaikey.test";
const AUDIENCE = "scaisend-test";
const jwtEnv = {
  ...env,
  SCAIKEY_JWKS_URL: JWKS_URL,
  SCAIKEY_ISSUER: ISSUER,
  SCAIKEY_AUDIENCE: AUDIENCE,
} as Bindings;
const app = createApp();
// /v3/auth is not in createApp()'s table yet (it goes in with the route-table test's entry for it);
// mounted here on the real app, behind its real middleware.
app.route("/v3/auth", authApi);

type Alg = "RS256" | "ES256";
interface IssuerKey {
  alg: Alg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

/** A ScaiKey stand-in: signing keys, the set it publishes, and how often it was asked for it. */
class LocalIssuer {
  readonly keys = new Map<string, IssuerKey>();
  published: string[] = [];
  fetches: string[] = [];
  failWith: number | null = null;

  async addKey(alg: Alg, kid = `${alg.toLowerCase()}-${uid()}`): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    this.keys.set(kid, {
      alg,
      privateKey,
      publicKey,
      jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" },
    });
    return kid;
  }

  publish(...kids: string[]): void {
    this.published = kids;
  }

  readonly fetcher: JwksFetcher = async (url, init) => {
    this.fetches.push(url);
    expect(init.redirect).toBe("manual");
    if (this.failWith !== null) return new Response("down", { status: this.failWith });
    const keys = this.published.map((kid) => this.keys.get(kid)!.jwk);
    return Response.json({ keys });
  };

  /** A token signed with `kid`'s key; `claims` override the valid defaults (undefined removes one). */
  async sign(
    kid: string,
    claims: Record<string, unknown> = {},
    opts: { headerKid?: string; signWith?: string } = {},
  ): Promise<string> {
    const key = this.keys.get(opts.signWith ?? kid)!;
    const nowS = Math.floor(clock / 1000);
    const payload: Record<string, unknown> = {
      iss: ISSUER,
      aud: AUDIENCE,
      sub: "usr_alice",
      iat: nowS,
      exp: nowS + 3600,
      ...claims,
    };
    for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
    return new SignJWT(payload)
      .setProtectedHeader({ alg: key.alg, kid: opts.headerKid ?? kid })
      .sign(key.privateKey);
  }
}

let clock = Date.now();
let issuer: LocalIssuer;

beforeEach(() => {
  clock = Date.now();
  issuer = new LocalIssuer();
  jwksCache.clear();
  jwksCache.clock = () => clock;
  jwksCache.fetcher = issuer.fetcher;
  tenantStatusCache.clear();
});

afterEach(() => {
  jwksCache.clear();
  jwksCache.clock = Date.now;
  jwksCache.fetcher = (url, init) => fetch(url, init);
});

async function request(
  token: string,
  path: string,
  init: { method?: string; body?: unknown } = {},
  e: Bindings = jwtEnv,
): Promise<{ status: number; body: any }> {
  const ctx = createExecutionContext();
  const res = await app.request(
    `${BASE}${path}`,
    {
      method: init.method ?? "GET",
      headers: bearer(token),
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    },
    e,
    ctx,
  );
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const messageOf = (body: any): string => body?.errors?.[0]?.message ?? body?.detail ?? JSON.stringify(body);

describe("a valid ScaiKey JWT", () => {
  it.each(["RS256", "ES256"] as const)(
    "(%s) reaches a route its roles grant and is refused one they don't",
    async (alg) => {
      const tenantId = await createTenant();
      const kid = await issuer.addKey(alg);
      issuer.publish(kid);
      const token = await issuer.sign(kid, { tenant_id: tenantId, roles: ["developer"] });

      const list = await request(token, "/v3/templates");
      expect(list.status).toBe(200);

      const create = await request(token, "/v3/templates", {
        method: "POST",
        body: { name: "Nope", generation: "dynamic" },
      });
      expect(create.status).toBe(403);
      expect(messageOf(create.body)).toContain("templates.write");
    },
  );

  it("acts for its tenant exactly as an API key: what it creates the tenant's keys see, other tenants get 404", async () => {
    const tenantId = await createTenant();
    const other = await createTenant();
    const kid = await issuer.addKey("ES256");
    issuer.publish(kid);
    const admin = await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"] });

    const created = await request(admin, "/v3/templates", {
      method: "POST",
      body: { name: "Welcome", generation: "dynamic" },
    });
    expect(created.status).toBe(201);
    const templateId = created.body.id as string;

    const key = await createApiKey(tenantId, { scopes: ["templates.read"] });
    const viaKey = await call(`/v3/templates/${templateId}`, { headers: bearer(key.key) });
    expect(viaKey.status).toBe(200);
    expect(((await viaKey.json()) as { name: string }).name).toBe("Welcome");

    const outsider = await issuer.sign(kid, { tenant_id: other, roles: ["admin"], sub: "usr_bob" });
    expect((await request(outsider, `/v3/templates/${templateId}`)).status).toBe(404);
  });

  it("sends mail with mail.send (developer role) and the message carries no API key id", async () => {
    const t = await setupTenant();
    const kid = await issuer.addKey("RS256");
    issuer.publish(kid);
    const token = await issuer.sign(kid, { tenant_id: t.tenantId, roles: ["developer"] });
    const sent = await request(token, "/v3/mail/send", {
      method: "POST",
      body: mailBody(t.from, { mail_settings: { sandbox_mode: { enable: true } } }),
    });
    expect(sent.status).toBe(202);
    const rows = await eventually(
      () =>
        env.DB.prepare("SELECT api_key_id, mode FROM messages WHERE tenant_id = ?")
          .bind(t.tenantId)
          .all<{ api_key_id: string | null; mode: string }>(),
      (r) => r.results.length > 0,
    );
    expect(rows.results).toEqual([{ api_key_id: null, mode: "sandbox" }]);
  });

  it("with no roles claim grants nothing, and an unknown role grants nothing", async () => {
    const tenantId = await createTenant();
    const kid = await issuer.addKey("ES256");
    issuer.publish(kid);
    for (const claims of [{}, { roles: ["owner", "__proto__"] }]) {
      const token = await issuer.sign(kid, { tenant_id: tenantId, ...claims });
      const r = await request(token, "/v3/templates");
      expect(r.status).toBe(403);
    }
  });

  it("is accepted within the clock skew and refused beyond it", async () => {
    const tenantId = await createTenant();
    const kid = await issuer.addKey("RS256");
    issuer.publish(kid);
    const nowS = Math.floor(clock / 1000);
    const justExpired = await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"], exp: nowS - 10 });
    expect((await request(justExpired, "/v3/templates")).status).toBe(200);
    const longExpired = await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"], exp: nowS - 120 });
    const r = await request(longExpired, "/v3/templates");
    expect(r.status).toBe(401);
    expect(messageOf(r.body)).toContain("expired");
  });
});

describe("a JWT is refused with 401", () => {
  let tenantId: string;
  let kid: string;
  let hsKidRsa: string;
  beforeEach(async () => {
    tenantId = await createTenant();
    kid = await issuer.addKey("RS256");
    hsKidRsa = kid;
    issuer.publish(kid);
  });

  const refused = async (token: string, why: string) => {
    const r = await request(token, "/v3/templates");
    expect(r.status).toBe(401);
    expect(messageOf(r.body)).toContain(why);
  };

  it("when expired", async () => {
    await refused(
      await issuer.sign(kid, { tenant_id: tenantId, exp: Math.floor(clock / 1000) - 3600 }),
      "expired",
    );
  });

  it("when not yet valid", async () => {
    await refused(
      await issuer.sign(kid, { tenant_id: tenantId, nbf: Math.floor(clock / 1000) + 300 }),
      '"nbf"',
    );
  });

  it("without exp", async () => {
    await refused(await issuer.sign(kid, { tenant_id: tenantId, exp: undefined }), '"exp"');
  });

  it("when signed by another key under a published kid", async () => {
    const rogue = await issuer.addKey("RS256");
    await refused(await issuer.sign(kid, { tenant_id: tenantId }, { signWith: rogue }), "bad signature");
  });

  it("when its kid is unknown", async () => {
    const unpublished = await issuer.addKey("RS256");
    await refused(await issuer.sign(unpublished, { tenant_id: tenantId }), "no signing key");
  });

  it("for another audience", async () => {
    await refused(await issuer.sign(kid, { tenant_id: tenantId, aud: "someone-else" }), '"aud"');
  });

  it("from another issuer", async () => {
    await refused(await issuer.sign(kid, { tenant_id: tenantId, iss: "https://evil.test" }), '"iss"');
  });

  it("with alg none", async () => {
    const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
    const nowS = Math.floor(clock / 1000);
    const token = `${enc({ alg: "none", typ: "JWT" })}.${enc({ iss: ISSUER, aud: AUDIENCE, sub: "usr_a", tenant_id: tenantId, roles: ["admin"], exp: nowS + 60 })}.`;
    await refused(token, "only RS256 and ES256");
  });

  it("HS256-signed with the issuer's public key as the secret", async () => {
    const { publicKey } = issuer.keys.get(hsKidRsa)!;
    const secret = new TextEncoder().encode(await exportSPKI(publicKey));
    const nowS = Math.floor(clock / 1000);
    const token = await new SignJWT({
      iss: ISSUER,
      aud: AUDIENCE,
      sub: "usr_a",
      tenant_id: tenantId,
      roles: ["admin"],
      exp: nowS + 60,
    })
      .setProtectedHeader({ alg: "HS256", kid: hsKidRsa })
      .sign(secret);
    await refused(token, "only RS256 and ES256");
  });

  it("without a tenant_id claim", async () => {
    await refused(await issuer.sign(kid, { roles: ["admin"] }), '"tenant_id"');
  });

  it("for a tenant that does not exist", async () => {
    await refused(await issuer.sign(kid, { tenant_id: "tnt_nobody", roles: ["admin"] }), "unknown tenant_id");
  });

  it("with a roles claim that is not a list of names", async () => {
    await refused(await issuer.sign(kid, { tenant_id: tenantId, roles: "admin" }), '"roles"');
  });

  it("when tampered with after signing", async () => {
    const token = await issuer.sign(kid, { tenant_id: tenantId, roles: ["developer"] });
    const [h, , s] = token.split(".");
    const forged = base64url.encode(
      JSON.stringify({
        iss: ISSUER,
        aud: AUDIENCE,
        sub: "usr_alice",
        tenant_id: tenantId,
        roles: ["admin"],
        exp: Math.floor(clock / 1000) + 60,
      }),
    );
    await refused(`${h}.${forged}.${s}`, "bad signature");
  });
});

describe("a suspended tenant's JWT", () => {
  it("is refused with 403", async () => {
    const tenantId = await createTenant();
    await env.DB.prepare("UPDATE tenants SET status = 'suspended' WHERE id = ?").bind(tenantId).run();
    const kid = await issuer.addKey("ES256");
    issuer.publish(kid);
    const r = await request(
      await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"] }),
      "/v3/templates",
    );
    expect(r.status).toBe(403);
  });
});

describe("the JWKS", () => {
  it("is fetched once and then served from memory", async () => {
    const tenantId = await createTenant();
    const kid = await issuer.addKey("RS256");
    issuer.publish(kid);
    const token = await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"] });
    for (let i = 0; i < 3; i++) expect((await request(token, "/v3/templates")).status).toBe(200);
    expect(issuer.fetches).toEqual([JWKS_URL]);
  });

  it("rotation: a new kid is picked up at once, a removed kid stops verifying", async () => {
    const tenantId = await createTenant();
    const oldKid = await issuer.addKey("RS256");
    issuer.publish(oldKid);
    const oldToken = await issuer.sign(oldKid, { tenant_id: tenantId, roles: ["admin"] });
    expect((await request(oldToken, "/v3/templates")).status).toBe(200);

    // ScaiKey rotates: the new key is published next to the old one, and tokens start using it.
    clock += JWKS_REFETCH_INTERVAL_MS;
    const newKid = await issuer.addKey("ES256");
    issuer.publish(oldKid, newKid);
    const newToken = await issuer.sign(newKid, { tenant_id: tenantId, roles: ["admin"] });
    expect((await request(newToken, "/v3/templates")).status).toBe(200);
    expect(issuer.fetches).toHaveLength(2);
    expect((await request(oldToken, "/v3/templates")).status).toBe(200);

    // The old key is withdrawn: once the cached set ages out, tokens under it are refused.
    issuer.publish(newKid);
    clock += JWKS_MAX_AGE_MS;
    const oldAgain = await issuer.sign(oldKid, { tenant_id: tenantId, roles: ["admin"] });
    const r = await request(oldAgain, "/v3/templates");
    expect(r.status).toBe(401);
    expect(messageOf(r.body)).toContain("no signing key");
    expect(issuer.fetches).toHaveLength(3);
    expect(
      (await request(await issuer.sign(newKid, { tenant_id: tenantId, roles: ["admin"] }), "/v3/templates"))
        .status,
    ).toBe(200);
  });

  it("a flood of unknown kids costs the issuer at most one fetch per interval", async () => {
    const tenantId = await createTenant();
    const kid = await issuer.addKey("ES256");
    issuer.publish(kid);
    expect(
      (await request(await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"] }), "/v3/templates"))
        .status,
    ).toBe(200);
    expect(issuer.fetches).toHaveLength(1);

    const bogus = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        issuer.sign(kid, { tenant_id: tenantId }, { headerKid: `bogus-${i}` }),
      ),
    );
    clock += 1_000;
    for (const r of await Promise.all(bogus.map((t) => request(t, "/v3/templates"))))
      expect(r.status).toBe(401);
    expect(issuer.fetches).toHaveLength(1);

    clock += JWKS_REFETCH_INTERVAL_MS;
    for (const r of await Promise.all(bogus.map((t) => request(t, "/v3/templates"))))
      expect(r.status).toBe(401);
    expect(issuer.fetches).toHaveLength(2);
  });

  it("that cannot be fetched gives 503, not a verdict on the token", async () => {
    const tenantId = await createTenant();
    const kid = await issuer.addKey("RS256");
    issuer.publish(kid);
    issuer.failWith = 500;
    const r = await request(
      await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"] }),
      "/v3/templates",
    );
    expect(r.status).toBe(503);
  });
});

describe("configuration", () => {
  it("without SCAIKEY_* a JWT gets 401 naming the missing configuration", async () => {
    const kid = await issuer.addKey("RS256");
    issuer.publish(kid);
    const token = await issuer.sign(kid, { tenant_id: await createTenant(), roles: ["admin"] });
    const res = await call("/v3/templates", { headers: bearer(token) });
    expect(res.status).toBe(401);
    expect(JSON.stringify(await res.json())).toContain("not configured");
    expect(issuer.fetches).toHaveLength(0);
  });

  it("refuses a plain-http JWKS URL except on loopback, and a partial SCAIKEY_* set", () => {
    const withUrl = (u: string) => loadConfig({ ...jwtEnv, SCAIKEY_JWKS_URL: u } as Bindings);
    const bad = withUrl("http://scaikey.example.com/jwks");
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.problems.join()).toContain("SCAIKEY_JWKS_URL must be https://");
    expect(withUrl("http://127.0.0.1:8080/jwks").ok).toBe(true);
    const partial = loadConfig({ ...env, SCAIKEY_JWKS_URL: JWKS_URL } as Bindings);
    expect(partial.ok).toBe(false);
    if (!partial.ok) expect(partial.problems.join()).toContain("must be set together");
  });
});

describe("a JWT on the admin and API-key routes", () => {
  it("acts on its own tenant's domains, gets 404 for another tenant's, and is not the operator", async () => {
    const tenantId = await createTenant();
    const other = await createTenant();
    const mine = await createDomain(tenantId, `mail-${uid()}.example.com`);
    const theirs = await createDomain(other, `mail-${uid()}.example.com`);
    const kid = await issuer.addKey("ES256");
    issuer.publish(kid);
    const admin = await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"] });

    const got = await request(admin, `/api/admin/domains/${mine.id}`);
    expect(got.status).toBe(200);
    expect(got.body.data.tenant_id).toBe(tenantId);
    expect((await request(admin, `/api/admin/domains/${theirs.id}`)).status).toBe(404);
    const tenants = await request(admin, "/api/admin/tenants", { method: "POST", body: { name: "x" } });
    expect(tenants.status).toBe(403);
    expect(messageOf(tenants.body)).toContain("operator token");

    const developer = await issuer.sign(kid, { tenant_id: tenantId, roles: ["developer"] });
    expect((await request(developer, `/api/admin/domains/${mine.id}`)).status).toBe(403);
  });

  it("creates an API key with the admin role (admin.api_keys) and not with the developer role", async () => {
    const tenantId = await createTenant();
    const kid = await issuer.addKey("RS256");
    issuer.publish(kid);
    const admin = await issuer.sign(kid, { tenant_id: tenantId, roles: ["admin"] });
    const created = await request(admin, "/v3/api_keys", {
      method: "POST",
      body: { name: "from-jwt", scopes: ["templates.read"] },
    });
    expect(created.status).toBe(201);
    const key = created.body.api_key as string;
    expect((await call("/v3/templates", { headers: bearer(key) })).status).toBe(200);

    const developer = await issuer.sign(kid, { tenant_id: tenantId, roles: ["developer"] });
    const refused = await request(developer, "/v3/api_keys", {
      method: "POST",
      body: { name: "nope", scopes: ["templates.read"] },
    });
    expect(refused.status).toBe(403);
  });
});

describe("GET /v3/auth/me", () => {
  it("returns the JWT's user, tenant, roles and effective permissions", async () => {
    const tenantId = await createTenant();
    const kid = await issuer.addKey("ES256");
    issuer.publish(kid);
    const token = await issuer.sign(kid, {
      tenant_id: tenantId,
      roles: ["developer"],
      email: "alice@example.com",
      given_name: "Alice",
      family_name: "Liddell",
      name: "Alice L.",
    });
    const r = await request(token, "/v3/auth/me");
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      id: "usr_alice",
      email: "alice@example.com",
      first_name: "Alice",
      last_name: "Liddell",
      display_name: "Alice L.",
      tenant_id: tenantId,
      roles: ["developer"],
      permissions: ["mail.send", "mail.schedule", "templates.read", "stats.read", "webhooks.read"],
    });
  });

  it("answers 401 to an API key and to an invalid JWT", async () => {
    const tenantId = await createTenant();
    const key = await createApiKey(tenantId, { scopes: ["templates.read"] });
    const viaKey = await request(key.key, "/v3/auth/me");
    expect(viaKey.status).toBe(401);
    expect(messageOf(viaKey.body)).toContain("needs a ScaiKey JWT");
    const kid = await issuer.addKey("RS256");
    issuer.publish(kid);
    const expired = await issuer.sign(kid, { tenant_id: tenantId, exp: Math.floor(clock / 1000) - 3600 });
    expect((await request(expired, "/v3/auth/me")).status).toBe(401);
  });
});
