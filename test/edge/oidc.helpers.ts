/**
 * The local OIDC issuer (test/helpers/oidc-issuer.ts) wired in as the edge's ScaiKey for a test file:
 * the Worker's bindings naming it, and hooks that make it the outbound fetch of the JWKS cache and
 * the OIDC client, on one clock the test can move, and put the real fetch and clock back after each
 * test. Used by the /v3/auth tests and the dashboard's Sign in with ScaiKey tests.
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach } from "vitest";
import type { Bindings } from "../../edge/src/env.ts";
import { accessCache } from "../../edge/src/services/access.ts";
import { jwksCache } from "../../edge/src/services/jwks-cache.ts";
import { tenantStatusCache } from "../../edge/src/services/jwt-auth.ts";
import { oidcClient } from "../../edge/src/services/oidc.ts";
import { LocalOidcIssuer } from "../helpers/oidc-issuer.ts";

export const ISSUER = "https://scaikey.test";
export const AUDIENCE = "scaisend-test";
export const CLIENT = { id: "scaisend-edge", secret: "client-secret-0123456789" };

export interface LocalOidc {
  /** The Worker's bindings with the SCAIKEY_* settings naming the local issuer. */
  readonly env: Bindings;
  /** The issuer (created before the file's tests run). */
  readonly issuer: LocalOidcIssuer;
  /** The time the issuer, the JWKS cache and the OIDC client read (ms); reset to now before each test. */
  clock: number;
}

export function useLocalOidc(redirectUri: string): LocalOidc {
  let issuer: LocalOidcIssuer | null = null;
  const oidc: LocalOidc = {
    env: {
      ...env,
      SCAIKEY_JWKS_URL: `${ISSUER}/.well-known/jwks.json`,
      SCAIKEY_ISSUER: ISSUER,
      SCAIKEY_AUDIENCE: AUDIENCE,
      SCAIKEY_CLIENT_ID: CLIENT.id,
      SCAIKEY_CLIENT_SECRET: CLIENT.secret,
      SCAIKEY_REDIRECT_URI: redirectUri,
    } as Bindings,
    get issuer() {
      if (issuer === null) throw new Error("the local issuer is created in beforeAll");
      return issuer;
    },
    clock: Date.now(),
  };
  const now = () => oidc.clock;
  beforeAll(async () => {
    issuer = await LocalOidcIssuer.create(ISSUER, CLIENT, AUDIENCE);
  });
  beforeEach(() => {
    oidc.clock = Date.now();
    oidc.issuer.clock = now;
    oidc.issuer.requests.length = 0;
    jwksCache.clear();
    jwksCache.clock = now;
    jwksCache.fetcher = oidc.issuer.fetch;
    oidcClient.clear();
    oidcClient.clock = now;
    oidcClient.fetcher = oidc.issuer.fetch;
    tenantStatusCache.clear();
    accessCache.clear();
  });
  afterEach(() => {
    jwksCache.clear();
    jwksCache.clock = Date.now;
    jwksCache.fetcher = (url, init) => fetch(url, init);
    oidcClient.clear();
    oidcClient.clock = Date.now;
    oidcClient.fetcher = (url, init) => fetch(url, init);
  });
  return oidc;
}
