/**
 * Mobile push through Firebase Cloud Messaging's HTTP v1 API
 * (https://firebase.google.com/docs/cloud-messaging/send/v1-api): `POST
 * /v1/projects/{projectId}/messages:send` with an OAuth 2.0 access token of the connection's service
 * account. The token comes from Google's token endpoint by the JWT bearer grant (RFC 7523): a JWT
 * signed RS256 with the service account's key, `iss` its client email, `scope` firebase.messaging,
 * `aud` the token endpoint (https://developers.google.com/identity/protocols/oauth2/service-account#httprest).
 * Tokens are cached per service account until a minute before they expire, and one exchange is shared
 * by the jobs that need it at once; a 401 from FCM drops the cached token and tries once more.
 *
 * Error mapping (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode): UNREGISTERED
 * (404) → bounced, gone; INVALID_ARGUMENT about the registration token → bounced, gone;
 * SENDER_ID_MISMATCH → bounced (a token of another Firebase project); QUOTA_EXCEEDED (429),
 * UNAVAILABLE (503), INTERNAL (500) → deferred; UNAUTHENTICATED, PERMISSION_DENIED,
 * THIRD_PARTY_AUTH_ERROR, other INVALID_ARGUMENT → failed.
 */
import { createHash } from "node:crypto";
import { importPKCS8, SignJWT } from "jose";
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { PushChannelJob } from "../../../shared/link/channel-job.ts";
import type { ChannelConfig } from "./config.ts";
import { ConnectionConfigError, parseJson, providerRequest } from "./http.ts";
import { bounced, byHttpStatus, delivered, deferred, failed, parseRetryAfter } from "./outcome.ts";
import type { ChannelAdapter } from "./types.ts";

type FcmJob = PushChannelJob & { provider: { kind: "fcm" } };
type FcmProvider = FcmJob["provider"];

export const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
/** A cached token is used until this long before its expiry. */
const TOKEN_MARGIN_MS = 60_000;

interface CachedToken {
  token: string;
  expiresAt: number;
}

export function createFcmAdapter(
  config: Pick<ChannelConfig, "CHANNEL_FCM_API_URL" | "CHANNEL_FCM_TOKEN_URL">,
): ChannelAdapter<FcmJob> & { tokenExchanges: number } {
  const tokens = new Map<string, CachedToken>();
  const inflight = new Map<string, Promise<string | RecipientOutcome>>();

  const cacheKey = (p: FcmProvider) =>
    createHash("sha256").update(`${p.projectId}\0${p.clientEmail}\0${p.privateKey}`).digest("hex");

  /** A valid access token, or the outcome the exchange came to (deferred, failed). */
  async function accessToken(job: FcmJob, timeoutMs: number): Promise<string | RecipientOutcome> {
    const key = cacheKey(job.provider);
    const cached = tokens.get(key);
    if (cached && cached.expiresAt - TOKEN_MARGIN_MS > Date.now()) return cached.token;
    let pending = inflight.get(key);
    if (!pending) {
      pending = exchange(job, key, timeoutMs).finally(() => inflight.delete(key));
      inflight.set(key, pending);
    }
    return pending;
  }

  async function exchange(job: FcmJob, key: string, timeoutMs: number): Promise<string | RecipientOutcome> {
    const p = job.provider;
    let signingKey: CryptoKey;
    try {
      // A key pasted from the service account JSON may still carry its "\n" escapes.
      signingKey = await importPKCS8(p.privateKey.replace(/\\n/g, "\n"), "RS256");
    } catch (err) {
      throw new ConnectionConfigError(
        `fcm: the service account private key is not a PKCS#8 RSA key (${String(err)})`,
      );
    }
    const assertion = await new SignJWT({ scope: FCM_SCOPE })
      .setProtectedHeader({ alg: "RS256", typ: "JWT" })
      .setIssuer(p.clientEmail)
      .setAudience(config.CHANNEL_FCM_TOKEN_URL)
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(signingKey);
    adapter.tokenExchanges++;
    const answer = await providerRequest(
      config.CHANNEL_FCM_TOKEN_URL,
      {
        headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
        body: new URLSearchParams({
          grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
          assertion,
        }).toString(),
      },
      timeoutMs,
    );
    const body = parseJson(answer.text) as
      | { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown }
      | undefined;
    if (answer.status === 200 && typeof body?.access_token === "string") {
      const expiresIn = typeof body.expires_in === "number" ? body.expires_in : 3600;
      tokens.set(key, { token: body.access_token, expiresAt: Date.now() + expiresIn * 1000 });
      return body.access_token;
    }
    const response =
      `fcm oauth ${answer.status}: ${String(body?.error ?? "")} ${String(body?.error_description ?? answer.text.slice(0, 200))}`.trim();
    // invalid_grant / invalid_client / unauthorized_client (RFC 6749 §5.2): the credentials are wrong.
    if (answer.status === 400 || answer.status === 401 || answer.status === 403)
      return failed(job, response, answer.latencyMs);
    return byHttpStatus(job, answer.status, response, answer.headers.get("retry-after"), answer.latencyMs);
  }

  async function sendOnce(job: FcmJob, token: string, timeoutMs: number) {
    return providerRequest(
      `${config.CHANNEL_FCM_API_URL}/v1/projects/${encodeURIComponent(job.provider.projectId)}/messages:send`,
      {
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json; charset=utf-8",
          accept: "application/json",
        },
        body: JSON.stringify({ message: fcmMessage(job) }),
      },
      timeoutMs,
    );
  }

  const adapter = {
    tokenExchanges: 0,
    async send(job: FcmJob, { timeoutMs }: { timeoutMs: number }): Promise<RecipientOutcome> {
      const until = Date.now() + timeoutMs;
      const left = () => Math.max(1, until - Date.now());
      let token = await accessToken(job, left());
      if (typeof token !== "string") return token;
      let answer = await sendOnce(job, token, left());
      if (answer.status === 401) {
        // Revoked or expired early: one fresh token, one more try.
        tokens.delete(cacheKey(job.provider));
        token = await accessToken(job, left());
        if (typeof token !== "string") return token;
        answer = await sendOnce(job, token, left());
      }
      return classify(job, answer.status, answer.text, answer.headers.get("retry-after"), answer.latencyMs);
    },
  };
  return adapter;
}

/** The v1 `message` (https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages). */
export function fcmMessage(job: FcmJob): Record<string, unknown> {
  const c = job.content;
  return {
    token: job.target.token,
    notification: { ...(c.title !== undefined ? { title: c.title } : {}), body: c.body },
    ...(c.data ? { data: c.data } : {}),
    ...(c.sound !== undefined ? { android: { notification: { sound: c.sound } } } : {}),
    ...(c.badge !== undefined || c.sound !== undefined
      ? {
          apns: {
            payload: {
              aps: {
                ...(c.badge !== undefined ? { badge: c.badge } : {}),
                ...(c.sound !== undefined ? { sound: c.sound } : {}),
              },
            },
          },
        }
      : {}),
  };
}

function classify(
  job: FcmJob,
  status: number,
  text: string,
  retryAfter: string | null,
  latencyMs: number,
): RecipientOutcome {
  const body = parseJson(text) as
    | {
        name?: unknown;
        error?: {
          status?: unknown;
          message?: unknown;
          details?: { "@type"?: unknown; errorCode?: unknown }[];
        };
      }
    | undefined;
  if (status === 200) {
    const name = typeof body?.name === "string" ? body.name : undefined;
    return delivered(job, name, `fcm: accepted ${name ?? ""}`.trim(), latencyMs);
  }
  const fcmCode = body?.error?.details?.find((d) =>
    String(d["@type"]).endsWith("google.firebase.fcm.v1.FcmError"),
  )?.errorCode;
  const code = String(fcmCode ?? body?.error?.status ?? "");
  const message = typeof body?.error?.message === "string" ? body.error.message : text.slice(0, 200);
  const response = `fcm ${status}${code ? ` ${code}` : ""}: ${message}`;
  if (code === "UNREGISTERED" || status === 404) return bounced(job, response, { gone: true, latencyMs });
  if (code === "INVALID_ARGUMENT" && /registration token/i.test(message))
    return bounced(job, response, { gone: true, latencyMs });
  if (code === "SENDER_ID_MISMATCH") return bounced(job, response, { latencyMs });
  if (
    status === 429 ||
    code === "QUOTA_EXCEEDED" ||
    code === "UNAVAILABLE" ||
    code === "INTERNAL" ||
    status >= 500
  )
    return deferred(job, response, parseRetryAfter(retryAfter), latencyMs);
  return failed(job, response, latencyMs);
}
