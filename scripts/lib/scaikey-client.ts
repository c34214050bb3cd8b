/**
 * The calls `scaisend register` and `scaisend sync --full` make to ScaiKey (docs/scaikey.md#contract),
 * and nothing else: OpenID Connect Discovery 1.0 / RFC 8414 metadata, RFC 7591 dynamic client
 * registration with an initial access token, and ScaiKey's webhook and listing endpoints under
 * `scaikey_api_endpoint`. Every URL must be https:// (http:// only for a loopback host); redirects
 * are not followed; each call has a deadline. Failures are ScaiKeyError with a readable message.
 */
import { z } from "zod";
import { describeIssues } from "../../edge/src/services/scaikey-records.ts";

const TIMEOUT_MS = 15_000;
const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

export class ScaiKeyError extends Error {
  constructor(
    message: string,
    readonly status: number | null = null,
  ) {
    super(message);
  }
}

/** https://, or http:// to a loopback host (a test or a local ScaiKey). */
export function checkUrl(raw: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ScaiKeyError(`${what} is not a URL: ${raw}`);
  }
  if (url.protocol === "https:" || (url.protocol === "http:" && LOOPBACK.has(url.hostname))) return url;
  throw new ScaiKeyError(`${what} must be https:// (http:// only for a loopback host): ${raw}`);
}

const Metadata = z.object({
  issuer: z.string(),
  token_endpoint: z.string().optional(),
  jwks_uri: z.string().optional(),
  registration_endpoint: z.string().optional(),
  /** ScaiKey's extension: the base of its management API (webhooks, listings). */
  scaikey_api_endpoint: z.string().optional(),
});
export type Metadata = z.infer<typeof Metadata> & { api: string };

const RegisteredClient = z.object({ client_id: z.string().min(1), client_secret: z.string().min(1) });
const Webhook = z.object({ id: z.string().min(1), url: z.string(), secret: z.string().min(1).optional() });
const WebhookList = z.object({ data: z.array(Webhook) });
const Page = z.object({
  data: z.array(z.unknown()),
  next_cursor: z.string().min(1).nullable(),
  total: z.number().int().min(0).optional(),
});
export type Page = z.infer<typeof Page>;

export class ScaiKeyClient {
  constructor(
    readonly issuer: string,
    /** A ScaiKey API token (RFC 7591's initial access token for `register`); null: none sent. */
    private readonly token: string | null,
  ) {
    checkUrl(issuer, "--issuer");
  }

  private async call<S extends z.ZodType>(
    method: string,
    raw: string,
    schema: S,
    what: string,
    body?: unknown,
    auth = true,
  ): Promise<z.infer<S>> {
    const url = checkUrl(raw, `${what}'s URL`);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        redirect: "manual",
        signal: AbortSignal.timeout(TIMEOUT_MS),
        headers: {
          accept: "application/json",
          ...(auth && this.token !== null ? { authorization: `Bearer ${this.token}` } : {}),
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw new ScaiKeyError(
        `${what}: cannot reach ScaiKey at ${url.origin} (${err instanceof Error ? err.message : String(err)})`,
      );
    }
    const text = await res.text();
    if (res.status === 401 || res.status === 403) {
      throw new ScaiKeyError(
        `${what}: ScaiKey refused the token (HTTP ${res.status}); check the token file`,
        res.status,
      );
    }
    if (!res.ok) {
      throw new ScaiKeyError(
        `${what}: ScaiKey answered HTTP ${res.status} ${text.slice(0, 300)}`,
        res.status,
      );
    }
    let json: unknown;
    try {
      json = text === "" ? null : JSON.parse(text);
    } catch {
      throw new ScaiKeyError(`${what}: ScaiKey's answer is not JSON`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new ScaiKeyError(`${what}: ScaiKey's answer is malformed (${describeIssues(parsed.error)})`);
    }
    return parsed.data;
  }

  /** The discovery document; its `issuer` must be the one asked for (OIDC Discovery 1.0 §4.3). */
  async discover(): Promise<Metadata> {
    const base = this.issuer.replace(/\/+$/, "");
    const m = await this.call(
      "GET",
      `${base}/.well-known/openid-configuration`,
      Metadata,
      "discovery",
      undefined,
      false,
    );
    if (m.issuer !== this.issuer && m.issuer !== base) {
      throw new ScaiKeyError(`discovery: the document names issuer ${m.issuer}, not ${this.issuer}`);
    }
    return { ...m, api: m.scaikey_api_endpoint ?? `${base}/api/v1` };
  }

  /**
   * RFC 7591 §3.1: a confidential web client for the code flow, redirecting to `redirectUri` (the
   * API's /v3/auth/callback) or to the dashboard's sign-in callback on the same origin
   * (docs/dashboard.md#sign-in-with-scaikey).
   */
  register(m: Metadata, redirectUri: string, clientName: string): Promise<z.infer<typeof RegisteredClient>> {
    if (!m.registration_endpoint) {
      throw new ScaiKeyError("registration: ScaiKey's discovery document has no registration_endpoint");
    }
    return this.call("POST", m.registration_endpoint, RegisteredClient, "client registration", {
      client_name: clientName,
      redirect_uris: [redirectUri, new URL("/app/login/scaikey/callback", redirectUri).href],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
      scope: "openid profile email offline_access",
      software_id: "scaisend",
    });
  }

  async webhooks(m: Metadata): Promise<z.infer<typeof Webhook>[]> {
    return (await this.call("GET", `${m.api}/webhooks`, WebhookList, "webhook listing")).data;
  }

  async subscribe(
    m: Metadata,
    url: string,
    events: readonly string[],
  ): Promise<{ id: string; secret: string }> {
    const w = await this.call("POST", `${m.api}/webhooks`, Webhook, "webhook subscription", {
      url,
      events,
      description: "ScaiSend identity sync",
    });
    if (!w.secret) throw new ScaiKeyError("webhook subscription: ScaiKey's answer has no secret");
    return { id: w.id, secret: w.secret };
  }

  async unsubscribe(m: Metadata, id: string): Promise<void> {
    await this.call("DELETE", `${m.api}/webhooks/${encodeURIComponent(id)}`, z.unknown(), "webhook removal");
  }

  /** One page of a listing (`path` under the API base), `limit` records after `cursor`. */
  page(m: Metadata, path: string, cursor: string | null, limit: number): Promise<Page> {
    const url = new URL(`${m.api}${path}`);
    url.searchParams.set("limit", String(limit));
    if (cursor !== null) url.searchParams.set("cursor", cursor);
    return this.call("GET", url.href, Page, `listing ${path}`);
  }
}
