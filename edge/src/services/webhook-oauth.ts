/**
 * OAuth2 client credentials for webhook POSTs (docs/api/webhooks.md#oauth2): when an endpoint has
 * them, each POST carries `Authorization: Bearer <token>`, the token got from the endpoint's token
 * URL with the client-credentials grant (RFC 6749 §4.4), the client authenticated with HTTP Basic
 * (§2.3.1: id and secret form-urlencoded first). The token URL passes the same SSRF guard as the
 * webhook URL, redirects are not followed (they would carry the credentials elsewhere), and the
 * answer is bounded. Tokens are kept until shortly before `expires_in` ends.
 */
import { readCapped } from "../lib/read-capped.ts";
import { checkUrl, UnsafeUrlError, type GuardOptions } from "./webhook-ssrf.ts";

export const OAUTH_FIELDS = ["oauth_client_id", "oauth_client_secret", "oauth_token_url"] as const;
const MAX_ID = 256;
const MAX_SECRET = 1024;
const MAX_URL = 2048;
const MAX_TOKEN = 4096;
const MAX_ANSWER_BYTES = 64 * 1024;
/** A token is used until this long before it expires; one without `expires_in` is kept 5 minutes. */
const EXPIRY_MARGIN_S = 30;
const DEFAULT_LIFETIME_S = 300;
export const TOKEN_TIMEOUT_MS = 10_000;

export interface OAuthClient {
  clientId: string;
  clientSecret: string;
  tokenUrl: string;
}

export type OAuthInput =
  | { kind: "none" }
  | { kind: "clear" }
  | ({ kind: "set" } & OAuthClient)
  | { kind: "error"; field: string; message: string };

const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * The three fields of a request body: none given (leave as is), all three empty or null (remove
 * them), or all three set. Anything in between is an error naming the first field given.
 */
export function parseOAuthInput(body: Record<string, unknown>): OAuthInput {
  const given = OAUTH_FIELDS.filter((k) => body[k] !== undefined);
  if (given.length === 0) return { kind: "none" };
  const empty = (k: string) => body[k] === null || body[k] === "";
  if (given.length === 3 && given.every(empty)) return { kind: "clear" };
  for (const k of given) {
    if (!empty(k) && typeof body[k] !== "string")
      return { kind: "error", field: k, message: "must be a string" };
  }
  if (given.length < 3 || given.some(empty)) {
    return {
      kind: "error",
      field: given[0]!,
      message:
        "oauth_client_id, oauth_client_secret and oauth_token_url go together: give all three, or all three empty to remove them",
    };
  }
  const [id, secret, url] = OAUTH_FIELDS.map((k) => (body[k] as string).trim()) as [string, string, string];
  if (id.length > MAX_ID || CONTROL.test(id))
    return {
      kind: "error",
      field: "oauth_client_id",
      message: `must be at most ${MAX_ID} printable characters`,
    };
  if (secret.length > MAX_SECRET || CONTROL.test(secret))
    return {
      kind: "error",
      field: "oauth_client_secret",
      message: `must be at most ${MAX_SECRET} printable characters`,
    };
  if (url.length > MAX_URL)
    return { kind: "error", field: "oauth_token_url", message: `may be at most ${MAX_URL} characters` };
  return { kind: "set", clientId: id, clientSecret: secret, tokenUrl: url };
}

export interface Token {
  token: string;
  /** Clock ms after which the token is not used any more. */
  expiresAt: number;
}

/** RFC 6749 Appendix B: application/x-www-form-urlencoded, with space as "+". */
const formEncode = (s: string) => encodeURIComponent(s).replace(/%20/g, "+");

/**
 * One client-credentials token request. Resolves with the token, or with the reason there is none
 * (an error a delivery attempt records); never throws.
 */
export async function requestToken(
  client: OAuthClient,
  opts: GuardOptions & { fetch: (req: Request) => Promise<Response>; now: () => number; timeoutMs: number },
): Promise<Token | { error: string }> {
  let url: URL;
  try {
    url = await checkUrl(client.tokenUrl, opts);
  } catch (err) {
    if (err instanceof UnsafeUrlError) return { error: `token URL ${err.message}` };
    throw err;
  }
  const basic = btoa(
    String.fromCharCode(
      ...new TextEncoder().encode(`${formEncode(client.clientId)}:${formEncode(client.clientSecret)}`),
    ),
  );
  const signal = AbortSignal.timeout(opts.timeoutMs);
  let res: Response;
  try {
    res = await opts.fetch(
      new Request(url.toString(), {
        method: "POST",
        headers: {
          authorization: `Basic ${basic}`,
          "content-type": "application/x-www-form-urlencoded",
          accept: "application/json",
          "user-agent": "ScaiSend-Webhook/1",
        },
        body: "grant_type=client_credentials",
        redirect: "manual",
        signal,
      }),
    );
  } catch (err) {
    if (signal.aborted) return { error: `token URL gave no answer within ${opts.timeoutMs / 1000} s` };
    return { error: `token request failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel();
    return { error: `token URL answered a redirect (HTTP ${res.status}), which is not followed` };
  }
  const text = await boundedText(res, MAX_ANSWER_BYTES);
  if (text === null) return { error: `token answer larger than ${MAX_ANSWER_BYTES} bytes` };
  if (res.status !== 200) return { error: `token URL answered HTTP ${res.status}` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { error: "token answer is not JSON" };
  }
  const o = (parsed && typeof parsed === "object" ? parsed : {}) as Record<string, unknown>;
  const token = o["access_token"];
  if (typeof token !== "string" || token === "" || token.length > MAX_TOKEN || !/^[\x21-\x7e]+$/.test(token))
    return { error: "token answer has no usable access_token" };
  const type = o["token_type"];
  if (type !== undefined && (typeof type !== "string" || type.toLowerCase() !== "bearer"))
    return { error: `token_type ${JSON.stringify(type)} is not bearer` };
  const expiresIn = o["expires_in"];
  const lifetime =
    typeof expiresIn === "number" && Number.isFinite(expiresIn) && expiresIn > 0
      ? expiresIn
      : DEFAULT_LIFETIME_S;
  return { token, expiresAt: opts.now() + Math.max(0, lifetime - EXPIRY_MARGIN_S) * 1000 };
}

async function boundedText(res: Response, max: number): Promise<string | null> {
  const bytes = await readCapped(res, max);
  return bytes === null ? null : new TextDecoder().decode(bytes);
}
