/**
 * The edge's OIDC client (edge/src/services/oidc.ts) under Node against the local issuer served on
 * 127.0.0.1 (test/helpers/oidc-issuer-server.ts): discovery, the authorize redirect, the code
 * exchange with PKCE and client authentication, the ID token verified against the JWKS fetched
 * over the socket, and a rotating refresh — every request a real HTTP request on loopback.
 */
import { timingSafeEqual } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveOidcIssuer } from "../helpers/oidc-issuer-server.ts";
import { jwksCache } from "../../edge/src/services/jwks-cache.ts";
import { OidcClient, type OidcSettings } from "../../edge/src/services/oidc.ts";
import { jwtVerify, createRemoteJWKSet } from "jose";

// edge/src/lib/crypto.ts compares secrets with workerd's crypto.subtle.timingSafeEqual (a
// non-standard extension); under Node the same primitive is node:crypto's timingSafeEqual.
const subtle = crypto.subtle as SubtleCrypto & {
  timingSafeEqual?: (a: ArrayBuffer, b: ArrayBuffer) => boolean;
};
subtle.timingSafeEqual ??= (a, b) => timingSafeEqual(new Uint8Array(a), new Uint8Array(b));

const CLIENT = { id: "scaisend-loopback", secret: "loopback-secret-0123456789" };
const AUDIENCE = "scaisend-api";
const REDIRECT = "https://admin.scaisend.test/auth/callback";
const SECRETS_KEY = Buffer.alloc(32, 7).toString("base64");

let served: Awaited<ReturnType<typeof serveOidcIssuer>>;
let settings: OidcSettings;

beforeAll(async () => {
  served = await serveOidcIssuer(CLIENT, AUDIENCE);
  settings = {
    issuer: served.url,
    clientId: CLIENT.id,
    clientSecret: CLIENT.secret,
    redirectUri: REDIRECT,
    jwksUrl: `${served.url}/.well-known/jwks.json`,
    secrets: { current: SECRETS_KEY, previous: [] },
  };
  jwksCache.clear();
});

afterAll(async () => {
  jwksCache.clear();
  await served?.close();
});

describe("the OIDC client against an issuer on loopback", () => {
  it("login → authorize → callback → refresh over real HTTP", async () => {
    const client = new OidcClient();
    served.issuer.nextLogin = {
      sub: "usr_loop",
      tenant_id: "tnt_loop",
      roles: ["admin"],
      email: "loop@example.org",
    };
    const login = await client.login(settings, "loop@example.org");
    const authorize = new URL(login.authorizationUrl);
    expect(authorize.origin).toBe(served.url);
    // The browser's visit: a real GET to the issuer, which redirects back with the code.
    const visit = await fetch(authorize, { redirect: "manual" });
    expect(visit.status).toBe(302);
    const back = new URL(visit.headers.get("location")!);
    expect(back.searchParams.get("state")).toBe(login.state);

    const { tokens, user } = await client.callback(settings, login.cookie, {
      code: back.searchParams.get("code")!,
      state: back.searchParams.get("state")!,
      iss: back.searchParams.get("iss")!,
    });
    expect(user).toEqual({
      id: "usr_loop",
      email: "loop@example.org",
      first_name: null,
      last_name: null,
      display_name: null,
      tenant_id: "tnt_loop",
    });
    // The access token verifies against the issuer's published keys, for the API's audience.
    const jwks = createRemoteJWKSet(new URL(settings.jwksUrl));
    const { payload } = await jwtVerify(tokens.access_token, jwks, {
      issuer: served.url,
      audience: AUDIENCE,
    });
    expect(payload).toMatchObject({ sub: "usr_loop", tenant_id: "tnt_loop", roles: ["admin"] });

    const refreshed = await client.refresh(settings, tokens.refresh_token!);
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    await expect(client.refresh(settings, tokens.refresh_token!)).rejects.toMatchObject({ status: 401 });

    expect(served.issuer.requests).toEqual([
      "GET /.well-known/openid-configuration",
      "GET /oauth/authorize",
      "POST /oauth/token",
      "GET /.well-known/jwks.json",
      "GET /.well-known/jwks.json",
      "POST /oauth/token",
      "POST /oauth/token",
    ]);
  });

  it("a wrong client secret is refused by the issuer (400 at the callback), and a dead issuer is 503", async () => {
    const client = new OidcClient();
    served.issuer.nextLogin = { sub: "usr_loop2", tenant_id: "tnt_loop" };
    const wrong = { ...settings, clientSecret: "not-the-secret" };
    const login = await client.login(wrong, undefined);
    const visit = await fetch(login.authorizationUrl, { redirect: "manual" });
    const back = new URL(visit.headers.get("location")!);
    await expect(
      client.callback(wrong, login.cookie, { code: back.searchParams.get("code")!, state: login.state }),
    ).rejects.toMatchObject({ status: 400 });
    const dead = new OidcClient();
    await expect(dead.login({ ...settings, issuer: "http://127.0.0.1:9" }, undefined)).rejects.toMatchObject({
      status: 503,
    });
  });
});
