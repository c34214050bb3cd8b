/**
 * A fake ScaiKey on loopback for the `scaisend register` / `sync --full` end-to-end tests, in front
 * of the local OIDC issuer (test/helpers/oidc-issuer.ts, served by oidc-issuer-server.ts). It serves
 * the contract of docs/scaikey.md#contract and records what it was asked:
 *  - discovery: the issuer's document plus `registration_endpoint` and `scaikey_api_endpoint`
 *  - POST /oauth/register             RFC 7591 registration (Bearer: the initial access token); the
 *                                     issuer's authorize and token endpoints then serve that client
 *  - GET|POST /api/v1/webhooks, DELETE /api/v1/webhooks/{id}   subscriptions (Bearer token)
 *  - GET /api/v1/partners, /tenants, /tenants/{id}/users, /tenants/{id}/groups   paged listings
 *    (`limit`, `cursor` = an offset; `{data, next_cursor, total}`)
 * `sign()` / `deliver()` send a sync event to a subscription as ScaiKey would (X-Scaikey-Signature).
 */
import { createHmac, randomBytes } from "node:crypto";
import type { LocalOidcIssuer } from "./oidc-issuer.ts";
import { serveOidcIssuer } from "./oidc-issuer-server.ts";

export interface FakeRecord {
  id: string;
  [field: string]: unknown;
}

export class FakeScaiKey {
  readonly clients: { client_id: string; client_secret: string; metadata: Record<string, unknown> }[] = [];
  readonly webhooks = new Map<string, { id: string; url: string; events: string[]; secret: string }>();
  partners: FakeRecord[] = [];
  tenants: FakeRecord[] = [];
  /** By ScaiKey tenant id. */
  users = new Map<string, FakeRecord[]>();
  groups = new Map<string, { id: string; name: string; members: string[] }[]>();
  /** The token every API call must carry (and registration's initial access token). */
  token = `sk_tok_${randomBytes(12).toString("hex")}`;
  /** Listing paths whose next answer is broken on purpose: "malformed" or an HTTP status. */
  readonly breakNext = new Map<string, "malformed" | number>();
  readonly requests: string[] = [];

  constructor(readonly issuer: LocalOidcIssuer) {}

  get url(): string {
    return this.issuer.issuer;
  }

  async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const route = `${req.method} ${url.pathname}`;
    this.requests.push(route);
    if (route === "GET /.well-known/openid-configuration") {
      const doc = (await (await this.issuer.handle(req)).json()) as Record<string, unknown>;
      return Response.json({
        ...doc,
        registration_endpoint: `${this.url}/oauth/register`,
        scaikey_api_endpoint: `${this.url}/api/v1`,
      });
    }
    if (!url.pathname.startsWith("/api/v1/") && route !== "POST /oauth/register")
      return this.issuer.handle(req);
    if (req.headers.get("authorization") !== `Bearer ${this.token}`) {
      return Response.json({ error: "invalid_token" }, { status: 401 });
    }
    if (route === "POST /oauth/register") {
      const metadata = (await req.json()) as Record<string, unknown>;
      const c = {
        client_id: `cli_${randomBytes(6).toString("hex")}`,
        client_secret: randomBytes(24).toString("hex"),
        metadata,
      };
      this.clients.push(c);
      // The issuer's token endpoint serves the client registered last, as ScaiKey would serve it.
      Object.assign(this.issuer.client, { id: c.client_id, secret: c.client_secret });
      return Response.json(
        { ...metadata, client_id: c.client_id, client_secret: c.client_secret },
        { status: 201 },
      );
    }
    if (route === "GET /api/v1/webhooks") {
      return Response.json({
        data: [...this.webhooks.values()].map(({ id, url, events }) => ({ id, url, events })),
      });
    }
    if (route === "POST /api/v1/webhooks") {
      const body = (await req.json()) as { url: string; events: string[] };
      const w = {
        id: `whk_${randomBytes(6).toString("hex")}`,
        url: body.url,
        events: body.events,
        secret: `whsec_${randomBytes(24).toString("hex")}`,
      };
      this.webhooks.set(w.id, w);
      return Response.json(w, { status: 201 });
    }
    const del = /^DELETE \/api\/v1\/webhooks\/([^/]+)$/.exec(route);
    if (del) {
      this.webhooks.delete(decodeURIComponent(del[1]!));
      return new Response(null, { status: 204 });
    }
    const path = url.pathname.slice("/api/v1".length);
    const broken = this.breakNext.get(path);
    if (broken !== undefined) {
      this.breakNext.delete(path);
      return broken === "malformed"
        ? Response.json({ items: [] })
        : Response.json({ error: "broken on purpose" }, { status: broken });
    }
    let list: unknown[] | undefined;
    if (path === "/partners") list = this.partners;
    else if (path === "/tenants") list = this.tenants;
    else {
      const m = /^\/tenants\/([^/]+)\/(users|groups)$/.exec(path);
      if (m) list = (m[2] === "users" ? this.users : this.groups).get(decodeURIComponent(m[1]!)) ?? [];
    }
    if (!list) return Response.json({ error: "not_found" }, { status: 404 });
    const limit = Number(url.searchParams.get("limit") ?? "100");
    const offset = Number(url.searchParams.get("cursor") ?? "0");
    const next = offset + limit < list.length ? String(offset + limit) : null;
    return Response.json({ data: list.slice(offset, offset + limit), next_cursor: next, total: list.length });
  }

  /** The X-Scaikey-Signature header for `body`, signed now with the subscription's secret. */
  sign(webhookId: string, body: string, t = Math.floor(Date.now() / 1000)): string {
    const secret = this.webhooks.get(webhookId)!.secret;
    return `t=${t},v1=${createHmac("sha256", secret).update(`${t}.${body}`).digest("hex")}`;
  }

  /** Posts one event to the subscription's URL as ScaiKey would. */
  async deliver(webhookId: string, type: string, data: unknown): Promise<Response> {
    const w = this.webhooks.get(webhookId)!;
    const body = JSON.stringify({ id: `evt_${randomBytes(8).toString("hex")}`, type, data });
    return fetch(w.url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-scaikey-signature": this.sign(webhookId, body) },
      body,
    });
  }
}

export async function serveFakeScaiKey(
  audience: string,
): Promise<{ scaikey: FakeScaiKey; url: string; close: () => Promise<void> }> {
  let scaikey!: FakeScaiKey;
  // The issuer's own client is unused: the client the tests log in with is the one registered.
  const served = await serveOidcIssuer({ id: "unused", secret: "unused" }, audience, (issuer) => {
    scaikey = new FakeScaiKey(issuer);
    return (req) => scaikey.handle(req);
  });
  return { scaikey, url: served.url, close: served.close };
}
