/**
 * The OpenID Connect authorization-code flow with PKCE against ScaiKey (docs/api/sendgrid.md#v3auth,
 * OpenID Connect Core 1.0 §3.1, RFC 7636), with oauth4webapi as the client.
 *
 * Invariants:
 *  - The server keeps no session. What the callback must check (state, nonce, PKCE verifier, expiry)
 *    travels in a cookie sealed with SECRETS_KEY (AES-256-GCM, lib/secret-box.ts, its own AAD), so
 *    it can be neither read nor forged by the client; the callback needs that cookie AND a `state`
 *    equal to the one inside it (compared in constant time), otherwise 401.
 *  - A login transaction lives LOGIN_TTL_MS; the code is exchanged once (ScaiKey's rule).
 *  - The ID token is checked by oauth4webapi (iss, aud = client id, exp, iat, nonce) and its
 *    signature verified here against ScaiKey's JWKS (RS256/ES256 only), although it came straight
 *    from the token endpoint over TLS; the access token is handed on as it is and verified like any
 *    other ScaiKey JWT when it is used.
 *  - Discovery is fetched once per DISCOVERY_MAX_AGE_MS per isolate; no redirects are followed, and
 *    plain http is allowed only for a loopback issuer (edge/src/env.ts).
 */
import * as oauth from "oauth4webapi";
import { jwtVerify } from "jose";
import { AppError } from "../../../shared/errors.ts";
import { timingSafeEqualStrings } from "../lib/crypto.ts";
import { open, seal, type Keyring } from "../lib/secret-box.ts";
import { jwksCache } from "./jwks-cache.ts";
import { CLOCK_SKEW_S, JWT_ALGORITHMS } from "./jwt-rules.ts";

export const LOGIN_TTL_MS = 10 * 60_000;
export const DISCOVERY_MAX_AGE_MS = 10 * 60_000;
export const LOGIN_COOKIE = "scaisend_oidc";
const COOKIE_AAD = "oidc-login";
const SCOPE = "openid profile email offline_access";

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  jwksUrl: string;
  secrets: Keyring;
}

interface Transaction {
  state: string;
  nonce: string;
  verifier: string;
  exp: number;
}

export interface TokenSet {
  access_token: string;
  refresh_token: string | null;
  expires_in: number | null;
}

export interface LoginUser {
  id: string;
  email: string | null;
  first_name: string | null;
  last_name: string | null;
  display_name: string | null;
  tenant_id: string | null;
}

/** What the ID token says beyond the profile, for the user mirror (services/scaikey-mirror.ts). */
export interface LoginClaims {
  /** The `groups` claim; undefined when the token has none (then the mirrored groups stay). */
  groups: string[] | undefined;
  /** OIDC's `updated_at` (seconds) in ms, or undefined. */
  updatedAt: number | undefined;
}

const text = (v: unknown): string | null => (typeof v === "string" ? v : null);

export class OidcClient {
  private discovered = new Map<string, { as: oauth.AuthorizationServer; at: number }>();

  /** Replaceable so tests can serve a local issuer and step through the intervals. */
  constructor(
    public clock: () => number = Date.now,
    public fetcher: (url: string, init: RequestInit) => Promise<Response> = (url, init) => fetch(url, init),
  ) {}

  clear(): void {
    this.discovered.clear();
  }

  private options(issuer: string) {
    const insecure = new URL(issuer).protocol === "http:";
    return {
      [oauth.customFetch]: (url: string, init: RequestInit) => this.fetcher(url, init),
      ...(insecure ? { [oauth.allowInsecureRequests]: true } : {}),
      signal: AbortSignal.timeout(5_000),
    };
  }

  private async server(s: OidcSettings): Promise<oauth.AuthorizationServer> {
    const hit = this.discovered.get(s.issuer);
    const now = this.clock();
    if (hit && now - hit.at < DISCOVERY_MAX_AGE_MS && now >= hit.at) return hit.as;
    try {
      const issuer = new URL(s.issuer);
      const res = await oauth.discoveryRequest(issuer, { ...this.options(s.issuer), algorithm: "oidc" });
      const as = await oauth.processDiscoveryResponse(issuer, res);
      if (!as.authorization_endpoint || !as.token_endpoint)
        throw new Error("no authorization or token endpoint");
      this.discovered.set(s.issuer, { as, at: now });
      return as;
    } catch (err) {
      throw new AppError("unavailable", "ScaiKey's OpenID configuration could not be fetched", {
        cause: err,
      });
    }
  }

  private client(s: OidcSettings): oauth.Client {
    return { client_id: s.clientId, [oauth.clockTolerance]: CLOCK_SKEW_S };
  }

  /** ScaiKey's authorization endpoint, from its (cached) discovery document. */
  async authorizationEndpoint(s: OidcSettings): Promise<string> {
    return (await this.server(s)).authorization_endpoint!;
  }

  /** The authorization URL, the state, and the sealed cookie value that carries the transaction. */
  async login(
    s: OidcSettings,
    hint: string | undefined,
  ): Promise<{ authorizationUrl: string; state: string; cookie: string }> {
    const as = await this.server(s);
    const tx: Transaction = {
      state: oauth.generateRandomState(),
      nonce: oauth.generateRandomNonce(),
      verifier: oauth.generateRandomCodeVerifier(),
      exp: this.clock() + LOGIN_TTL_MS,
    };
    const url = new URL(as.authorization_endpoint!);
    url.searchParams.set("response_type", "code");
    url.searchParams.set("client_id", s.clientId);
    url.searchParams.set("redirect_uri", s.redirectUri);
    url.searchParams.set("scope", SCOPE);
    url.searchParams.set("state", tx.state);
    url.searchParams.set("nonce", tx.nonce);
    url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(tx.verifier));
    url.searchParams.set("code_challenge_method", "S256");
    if (hint) url.searchParams.set("login_hint", hint);
    const cookie = await seal(s.secrets, JSON.stringify(tx), COOKIE_AAD);
    return { authorizationUrl: url.href, state: tx.state, cookie };
  }

  /** Exchanges the code; 401 if the cookie or state does not match, 400 if ScaiKey refuses the code. */
  async callback(
    s: OidcSettings,
    cookie: string | undefined,
    input: { code: string; state: string; iss?: string | undefined },
  ): Promise<{ tokens: TokenSet; user: LoginUser; claims: LoginClaims }> {
    const mismatch = () => new AppError("unauthorized", "state does not match the login");
    if (!cookie) throw mismatch();
    let tx: Transaction;
    try {
      tx = JSON.parse(await open(s.secrets, cookie, COOKIE_AAD)) as Transaction;
    } catch {
      throw mismatch();
    }
    if (!(await timingSafeEqualStrings(input.state, tx.state))) throw mismatch();
    if (this.clock() > tx.exp) throw new AppError("unauthorized", "The login has expired; start again");

    const as = await this.server(s);
    const client = this.client(s);
    const auth = oauth.ClientSecretBasic(s.clientSecret);
    const params = new URLSearchParams({ code: input.code, state: input.state });
    if (input.iss !== undefined) params.set("iss", input.iss);
    let result: oauth.TokenEndpointResponse;
    try {
      const checked = oauth.validateAuthResponse(as, client, params, tx.state);
      const res = await oauth.authorizationCodeGrantRequest(
        as,
        client,
        auth,
        checked,
        s.redirectUri,
        tx.verifier,
        this.options(s.issuer),
      );
      result = await oauth.processAuthorizationCodeResponse(as, client, res, {
        expectedNonce: tx.nonce,
        requireIdToken: true,
      });
    } catch (err) {
      if (err instanceof AppError) throw err;
      if (!isProtocolError(err)) throw unreachable(err);
      if (isIdTokenClaimError(err)) {
        throw new AppError("invalid_request", `ScaiKey's ID token was refused: ${(err as Error).message}`, {
          cause: err,
        });
      }
      throw new AppError("invalid_request", "The authorization code is invalid or expired", { cause: err });
    }
    const claims = await this.verifyIdToken(s, result.id_token!, client);
    return {
      tokens: tokensOf(result),
      user: {
        id: claims.sub as string,
        email: text(claims.email),
        first_name: text(claims.given_name),
        last_name: text(claims.family_name),
        display_name: text(claims.name),
        tenant_id: text(claims.tenant_id),
      },
      claims: {
        groups: Array.isArray(claims.groups)
          ? claims.groups.filter((g): g is string => typeof g === "string" && g !== "")
          : undefined,
        updatedAt:
          typeof claims.updated_at === "number" && Number.isFinite(claims.updated_at)
            ? claims.updated_at * 1000
            : undefined,
      },
    };
  }

  async refresh(s: OidcSettings, refreshToken: string): Promise<TokenSet> {
    const as = await this.server(s);
    const client = this.client(s);
    try {
      const res = await oauth.refreshTokenGrantRequest(
        as,
        client,
        oauth.ClientSecretBasic(s.clientSecret),
        refreshToken,
        this.options(s.issuer),
      );
      return tokensOf(await oauth.processRefreshTokenResponse(as, client, res));
    } catch (err) {
      if (err instanceof AppError) throw err;
      if (!isProtocolError(err)) throw unreachable(err);
      throw new AppError("unauthorized", "The refresh token is invalid, expired or revoked", { cause: err });
    }
  }

  /** Signature check of the ID token against ScaiKey's key set (the claims oauth4webapi checked). */
  private async verifyIdToken(s: OidcSettings, idToken: string, client: oauth.Client) {
    try {
      const { payload } = await jwtVerify(idToken, (header) => jwksCache.keyFor(s.jwksUrl, header), {
        algorithms: JWT_ALGORITHMS,
        issuer: s.issuer,
        audience: client.client_id,
        clockTolerance: CLOCK_SKEW_S,
        currentDate: new Date(this.clock()),
      });
      if (typeof payload.sub !== "string" || payload.sub === "") throw new Error("no sub");
      return payload;
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError("invalid_request", "ScaiKey's ID token did not verify", { cause: err });
    }
  }
}

/** ScaiKey answered, and refused (an OAuth error or a malformed answer), as opposed to not answering. */
const isProtocolError = (err: unknown): boolean =>
  err instanceof oauth.ResponseBodyError ||
  err instanceof oauth.AuthorizationResponseError ||
  err instanceof oauth.OperationProcessingError ||
  err instanceof oauth.WWWAuthenticateChallengeError;

/**
 * oauth4webapi checks the ID token's claims (iss, aud, exp, iat, nonce: OpenID Connect Core §3.1.3.7)
 * while it processes the token endpoint's answer; a failure there is the token's, not the code's.
 */
const isIdTokenClaimError = (err: unknown): boolean =>
  err instanceof oauth.OperationProcessingError &&
  (err.code === oauth.JWT_CLAIM_COMPARISON || err.code === oauth.JWT_TIMESTAMP_CHECK);

const unreachable = (err: unknown) =>
  new AppError("unavailable", "ScaiKey's token endpoint could not be reached", { cause: err });

function tokensOf(r: oauth.TokenEndpointResponse): TokenSet {
  return {
    access_token: r.access_token,
    refresh_token: r.refresh_token ?? null,
    expires_in: r.expires_in ?? null,
  };
}

/** This isolate's client. */
export const oidcClient = new OidcClient();
