/**
 * Mobile push through the Apple Push Notification service with token-based authentication
 * (https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns):
 * HTTP/2 (node:http2) `POST /3/device/<token>` to api.push.apple.com (or the sandbox host), with
 * `authorization: bearer <provider token>`, `apns-topic` (the bundle id), `apns-push-type: alert`
 * and `apns-priority: 10`; the body is `{aps: {alert: {title, body}, badge, sound}, …data}`.
 *
 * The provider token is a JWT, ES256 with the connection's .p8 key, header `kid` = key id, claims
 * `iss` = team id and `iat` (https://developer.apple.com/documentation/usernotifications/establishing-a-token-based-connection-to-apns).
 * Apple refuses a token older than an hour and one refreshed more than once in 20 minutes, so each
 * is reused for 50 minutes, and made again at once when APNs answers ExpiredProviderToken. One HTTP/2
 * session per host serves every request (Apple asks for kept-open connections).
 *
 * Mapping (https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns):
 * 200 → delivered (`apns-id`); 410 Unregistered / ExpiredToken, 400 BadDeviceToken / DeviceTokenNotForTopic
 * → bounced, gone; 429 and 5xx → deferred; 403 (the provider token), other 4xx → failed.
 */
import { createHash } from "node:crypto";
import http2 from "node:http2";
import { importPKCS8, SignJWT } from "jose";
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { PushChannelJob } from "../../../shared/link/channel-job.ts";
import type { ChannelConfig } from "./config.ts";
import { ConnectionConfigError, parseJson } from "./http.ts";
import { bounced, delivered, deferred, failed, parseRetryAfter } from "./outcome.ts";
import type { ChannelAdapter } from "./types.ts";

type ApnsJob = PushChannelJob & { provider: { kind: "apns" } };
type ApnsProvider = ApnsJob["provider"];

/** How long one provider token is reused (Apple: refresh at most every 20 min, at least every 60). */
export const APNS_TOKEN_REUSE_MS = 50 * 60_000;
const MAX_ANSWER_BYTES = 16 * 1024;
const GONE_REASONS = new Set(["Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic"]);

interface Answer {
  status: number;
  apnsId: string | undefined;
  retryAfter: string | undefined;
  text: string;
  latencyMs: number;
}

export function createApnsAdapter(
  config: Pick<ChannelConfig, "CHANNEL_APNS_URL" | "CHANNEL_APNS_SANDBOX_URL">,
): ChannelAdapter<ApnsJob> & { tokensMade: number } {
  const tokens = new Map<string, { jwt: string; madeAt: number }>();
  const sessions = new Map<string, http2.ClientHttp2Session>();

  const tokenKey = (p: ApnsProvider) =>
    createHash("sha256").update(`${p.teamId}\0${p.keyId}\0${p.privateKey}`).digest("hex");

  async function providerToken(p: ApnsProvider, fresh: boolean): Promise<string> {
    const key = tokenKey(p);
    const cached = tokens.get(key);
    if (!fresh && cached && Date.now() - cached.madeAt < APNS_TOKEN_REUSE_MS) return cached.jwt;
    let signingKey: CryptoKey;
    try {
      signingKey = await importPKCS8(p.privateKey.replace(/\\n/g, "\n"), "ES256");
    } catch (err) {
      throw new ConnectionConfigError(
        `apns: the signing key is not a .p8 (PKCS#8 P-256) key (${String(err)})`,
      );
    }
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: p.keyId })
      .setIssuer(p.teamId)
      .setIssuedAt()
      .sign(signingKey);
    tokens.set(key, { jwt, madeAt: Date.now() });
    adapter.tokensMade++;
    return jwt;
  }

  function session(base: string): http2.ClientHttp2Session {
    const open = sessions.get(base);
    if (open && !open.closed && !open.destroyed) return open;
    const s = http2.connect(base);
    // Errors reach the streams that were open; a broken session is replaced on the next request.
    s.on("error", () => sessions.delete(base));
    s.on("close", () => {
      if (sessions.get(base) === s) sessions.delete(base);
    });
    s.on("goaway", () => sessions.delete(base));
    sessions.set(base, s);
    return s;
  }

  function post(
    base: string,
    path: string,
    headers: Record<string, string>,
    body: string,
    timeoutMs: number,
  ) {
    const started = Date.now();
    return new Promise<Answer>((resolve, reject) => {
      let req: http2.ClientHttp2Stream;
      try {
        req = session(base).request({ ":method": "POST", ":path": path, ...headers });
      } catch (err) {
        reject(err);
        return;
      }
      let status = 0;
      let apnsId: string | undefined;
      let retryAfter: string | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      req.setTimeout(timeoutMs, () => {
        req.close(http2.constants.NGHTTP2_CANCEL);
        reject(new Error(`apns: no answer within ${timeoutMs} ms`));
      });
      req.on("response", (h) => {
        status = Number(h[":status"]);
        apnsId = typeof h["apns-id"] === "string" ? h["apns-id"] : undefined;
        retryAfter = typeof h["retry-after"] === "string" ? h["retry-after"] : undefined;
      });
      req.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
      });
      req.on("end", () =>
        resolve({
          status,
          apnsId,
          retryAfter,
          text: Buffer.concat(chunks).toString("utf8"),
          latencyMs: Date.now() - started,
        }),
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  const adapter = {
    tokensMade: 0,
    async send(job: ApnsJob, { timeoutMs }: { timeoutMs: number }): Promise<RecipientOutcome> {
      const p = job.provider;
      const c = job.content;
      if (c.data && "aps" in c.data)
        return failed(job, 'apns: a data key named "aps" would replace the notification itself');
      const payload = JSON.stringify({
        ...(c.data ?? {}),
        aps: {
          alert: { ...(c.title !== undefined ? { title: c.title } : {}), body: c.body },
          ...(c.badge !== undefined ? { badge: c.badge } : {}),
          ...(c.sound !== undefined ? { sound: c.sound } : {}),
        },
      });
      const base = p.environment === "sandbox" ? config.CHANNEL_APNS_SANDBOX_URL : config.CHANNEL_APNS_URL;
      const path = `/3/device/${encodeURIComponent(job.target.token)}`;
      const until = Date.now() + timeoutMs;
      const attempt = async (fresh: boolean) =>
        post(
          base,
          path,
          {
            authorization: `bearer ${await providerToken(p, fresh)}`,
            "apns-topic": p.topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            "content-type": "application/json",
          },
          payload,
          Math.max(1, until - Date.now()),
        );
      let answer = await attempt(false);
      if (answer.status === 403 && reasonOf(answer.text) === "ExpiredProviderToken")
        answer = await attempt(true);
      return classify(job, answer);
    },
    close() {
      for (const s of sessions.values()) s.close();
      sessions.clear();
    },
  };
  return adapter;
}

function reasonOf(text: string): string {
  const body = parseJson(text) as { reason?: unknown } | undefined;
  return typeof body?.reason === "string" ? body.reason : "";
}

function classify(job: ApnsJob, a: Answer): RecipientOutcome {
  if (a.status === 200)
    return delivered(job, a.apnsId, `apns: accepted ${a.apnsId ?? ""}`.trim(), a.latencyMs);
  const reason = reasonOf(a.text);
  const response = `apns ${a.status}${reason ? ` ${reason}` : ""}`;
  if (a.status === 410 || GONE_REASONS.has(reason))
    return bounced(job, response, { gone: true, latencyMs: a.latencyMs });
  if (a.status === 429 || a.status >= 500)
    return deferred(job, response, parseRetryAfter(a.retryAfter), a.latencyMs);
  return failed(job, response, a.latencyMs);
}
