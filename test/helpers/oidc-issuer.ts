/**
 * A local OpenID Connect issuer standing in for ScaiKey, built with jose (Web Crypto only, so it
 * runs inside workerd as the edge's outbound fetch and under Node behind a loopback HTTP server,
 * test/helpers/oidc-issuer-server.ts). It serves:
 *  - GET  /.well-known/openid-configuration   discovery (RFC 8414 / OIDC Discovery 1.0)
 *  - GET  /.well-known/jwks.json              its public keys
 *  - GET  /oauth/authorize                    "logs in" `nextLogin` and 302s back with a code
 *                                             (response_type=code, S256 PKCE required)
 *  - POST /oauth/token                        authorization_code (checks client secret, redirect_uri,
 *                                             code_verifier; codes are single-use) and refresh_token
 *                                             (rotating: a used refresh token is revoked)
 * Access tokens are ScaiKey JWTs for the API (`aud` = the API audience, `tenant_id`, `roles`,
 * `groups`); ID tokens are for the client (`aud` = client_id, `nonce`).
 */
import { base64url, exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";

export interface LoginUser {
  sub: string;
  tenant_id: string;
  roles?: string[];
  groups?: string[];
  email?: string;
  given_name?: string;
  family_name?: string;
  name?: string;
}

interface Grant {
  user: LoginUser;
  clientId: string;
  redirectUri: string;
  challenge: string;
  nonce: string | undefined;
  expiresAt: number;
}

const b64 = (bytes: ArrayBuffer) => base64url.encode(new Uint8Array(bytes));
const random = () => base64url.encode(crypto.getRandomValues(new Uint8Array(24)));

export class LocalOidcIssuer {
  readonly kid = `rs-${random().slice(0, 8)}`;
  private privateKey!: CryptoKey;
  private jwk!: JWK;
  private readonly codes = new Map<string, Grant>();
  private readonly refreshTokens = new Map<string, LoginUser>();
  /** Who the next /oauth/authorize logs in (the user at ScaiKey's login page). */
  nextLogin: LoginUser | null = null;
  /** Every request the issuer answered, as "METHOD /path". */
  readonly requests: string[] = [];
  clock: () => number = Date.now;
  accessTokenTtlS = 3600;

  constructor(
    public issuer: string,
    readonly client: { id: string; secret: string },
    readonly audience: string,
  ) {}

  static async create(
    issuer: string,
    client: { id: string; secret: string },
    audience: string,
  ): Promise<LocalOidcIssuer> {
    const i = new LocalOidcIssuer(issuer, client, audience);
    const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
    i.privateKey = privateKey;
    i.jwk = { ...(await exportJWK(publicKey)), kid: i.kid, alg: "RS256", use: "sig" };
    return i;
  }

  get jwksUrl(): string {
    return `${this.issuer}/.well-known/jwks.json`;
  }

  /** A ScaiKey access token for the API, signed with the issuer's key. */
  async accessToken(user: LoginUser, extra: Record<string, unknown> = {}): Promise<string> {
    const nowS = Math.floor(this.clock() / 1000);
    return new SignJWT({ ...user, ...extra })
      .setProtectedHeader({ alg: "RS256", kid: this.kid })
      .setIssuer(this.issuer)
      .setAudience(this.audience)
      .setSubject(user.sub)
      .setIssuedAt(nowS)
      .setExpirationTime(nowS + this.accessTokenTtlS)
      .sign(this.privateKey);
  }

  private async idToken(user: LoginUser, nonce: string | undefined): Promise<string> {
    const nowS = Math.floor(this.clock() / 1000);
    const { sub, email, given_name, family_name, name, tenant_id, groups } = user;
    return new SignJWT({
      email,
      given_name,
      family_name,
      name,
      tenant_id,
      ...(groups ? { groups } : {}),
      ...(nonce ? { nonce } : {}),
    })
      .setProtectedHeader({ alg: "RS256", kid: this.kid })
      .setIssuer(this.issuer)
      .setAudience(this.client.id)
      .setSubject(sub)
      .setIssuedAt(nowS)
      .setExpirationTime(nowS + 300)
      .sign(this.privateKey);
  }

  /** The issuer as a fetch function (for the edge's replaceable outbound fetch). */
  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> =>
    this.handle(new Request(input, init));

  async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    this.requests.push(`${req.method} ${url.pathname}`);
    const error = (status: number, code: string, description: string) =>
      Response.json({ error: code, error_description: description }, { status });
    switch (`${req.method} ${url.pathname}`) {
      case "GET /.well-known/openid-configuration":
        return Response.json({
          issuer: this.issuer,
          authorization_endpoint: `${this.issuer}/oauth/authorize`,
          token_endpoint: `${this.issuer}/oauth/token`,
          jwks_uri: this.jwksUrl,
          response_types_supported: ["code"],
          subject_types_supported: ["public"],
          id_token_signing_alg_values_supported: ["RS256"],
          code_challenge_methods_supported: ["S256"],
          token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
          grant_types_supported: ["authorization_code", "refresh_token"],
        });
      case "GET /.well-known/jwks.json":
        return Response.json({ keys: [this.jwk] });
      case "GET /oauth/authorize": {
        const q = url.searchParams;
        if (q.get("response_type") !== "code") return error(400, "unsupported_response_type", "code only");
        if (q.get("client_id") !== this.client.id) return error(400, "invalid_client", "unknown client");
        if (q.get("code_challenge_method") !== "S256" || !q.get("code_challenge")) {
          return error(400, "invalid_request", "S256 PKCE is required");
        }
        const redirectUri = q.get("redirect_uri");
        if (!redirectUri) return error(400, "invalid_request", "redirect_uri is required");
        if (!this.nextLogin) return error(400, "access_denied", "nobody is logging in");
        const code = random();
        this.codes.set(code, {
          user: this.nextLogin,
          clientId: this.client.id,
          redirectUri,
          challenge: q.get("code_challenge")!,
          nonce: q.get("nonce") ?? undefined,
          expiresAt: this.clock() + 60_000,
        });
        const back = new URL(redirectUri);
        back.searchParams.set("code", code);
        if (q.get("state") !== null) back.searchParams.set("state", q.get("state")!);
        back.searchParams.set("iss", this.issuer);
        return new Response(null, { status: 302, headers: { location: back.href } });
      }
      case "POST /oauth/token":
        return this.token(req, error);
      default:
        return error(404, "not_found", url.pathname);
    }
  }

  private async token(
    req: Request,
    error: (status: number, code: string, description: string) => Response,
  ): Promise<Response> {
    const form = new URLSearchParams(new TextDecoder().decode(await req.arrayBuffer()));
    let clientId = form.get("client_id");
    let secret = form.get("client_secret");
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.get("authorization") ?? "");
    if (basic) {
      const [id, s] = atob(basic[1]!).split(":").map(decodeURIComponent);
      clientId = id ?? null;
      secret = s ?? null;
    }
    if (clientId !== this.client.id || secret !== this.client.secret) {
      return error(401, "invalid_client", "client authentication failed");
    }
    const tokens = async (user: LoginUser, nonce?: string) => {
      const refresh = `rtk_${random()}`;
      this.refreshTokens.set(refresh, user);
      return Response.json(
        {
          access_token: await this.accessToken(user),
          token_type: "Bearer",
          expires_in: this.accessTokenTtlS,
          refresh_token: refresh,
          id_token: await this.idToken(user, nonce),
          scope: "openid profile email",
        },
        { headers: { "cache-control": "no-store" } },
      );
    };
    if (form.get("grant_type") === "authorization_code") {
      const code = form.get("code") ?? "";
      const grant = this.codes.get(code);
      this.codes.delete(code);
      if (!grant || grant.expiresAt < this.clock())
        return error(400, "invalid_grant", "unknown or expired code");
      if (form.get("redirect_uri") !== grant.redirectUri)
        return error(400, "invalid_grant", "redirect_uri mismatch");
      const verifier = form.get("code_verifier") ?? "";
      const challenge = b64(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
      if (challenge !== grant.challenge) return error(400, "invalid_grant", "PKCE verification failed");
      return tokens(grant.user, grant.nonce);
    }
    if (form.get("grant_type") === "refresh_token") {
      const rt = form.get("refresh_token") ?? "";
      const user = this.refreshTokens.get(rt);
      if (!user) return error(400, "invalid_grant", "unknown or revoked refresh token");
      this.refreshTokens.delete(rt);
      return tokens(user);
    }
    return error(400, "unsupported_grant_type", String(form.get("grant_type")));
  }

  /** Revokes every refresh token of `sub` (as ScaiKey would on a logout elsewhere). */
  revokeRefreshTokens(sub: string): void {
    for (const [t, u] of this.refreshTokens) if (u.sub === sub) this.refreshTokens.delete(t);
  }
}
