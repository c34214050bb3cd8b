/**
 * Web push to a browser's push service, no third party: the payload encrypted for the subscription
 * (RFC 8291, `Content-Encoding: aes128gcm`, RFC 8188) and the request signed with the connection's
 * VAPID key (RFC 8292: `Authorization: vapid t=<JWT ES256, aud = the endpoint's origin, sub = the
 * contact>, k=<public key>`), both by the `web-push` package's `generateRequestDetails`; the POST
 * itself (RFC 8030 §5) is made here, to the address endpoint-guard.ts vetted. The payload is the
 * job's content as JSON (`{title, body, icon?, clickUrl?, data?, badge?}`), what the service worker
 * reads with `event.data.json()`.
 *
 * Mapping: 201 (200, 202) → delivered, the push message's `Location` as the provider id; 404 / 410
 * (RFC 8030 §7.3: the subscription expired or was removed) → bounced, gone; 429 and 5xx → deferred;
 * 400 / 401 / 403 (the VAPID signature refused) / 413 → failed. An endpoint the guard refuses →
 * bounced (the subscription is unusable), not gone.
 */
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import webpush from "web-push";
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { WebPushChannelJob } from "../../../shared/link/channel-job.ts";
import type { ChannelConfig } from "./config.ts";
import { vetEndpoint } from "./endpoint-guard.ts";
import { bounced, delivered, deferred, failed, parseRetryAfter } from "./outcome.ts";
import type { ChannelAdapter } from "./types.ts";

/** RFC 8291 §4: one 4096-octet record holds at most 3993 octets of plaintext. */
export const MAX_WEB_PUSH_PLAINTEXT = 3993;
const MAX_ANSWER_BYTES = 16 * 1024;

export function createWebPushAdapter(
  config: Pick<ChannelConfig, "CHANNEL_ALLOW_PRIVATE">,
): ChannelAdapter<WebPushChannelJob> {
  return {
    async send(job, { timeoutMs }) {
      const sub = job.target.subscription;
      const payload = JSON.stringify(job.content);
      if (Buffer.byteLength(payload) > MAX_WEB_PUSH_PLAINTEXT)
        return failed(
          job,
          `web push: the payload is ${Buffer.byteLength(payload)} bytes, over ${MAX_WEB_PUSH_PLAINTEXT}`,
        );
      const vetted = await vetEndpoint(sub.endpoint, config.CHANNEL_ALLOW_PRIVATE);
      if (!vetted.ok)
        return vetted.transient
          ? deferred(job, `web push: ${vetted.reason}`)
          : bounced(job, `web push endpoint refused: ${vetted.reason}`);
      let details: { headers: Record<string, string | number>; body: Buffer | null };
      try {
        details = webpush.generateRequestDetails(sub, payload, {
          vapidDetails: {
            subject: job.provider.subject,
            publicKey: job.provider.publicKey,
            privateKey: job.provider.privateKey,
          },
          contentEncoding: "aes128gcm",
          ...(job.target.ttl !== undefined ? { TTL: job.target.ttl } : {}),
          ...(job.target.urgency ? { urgency: job.target.urgency } : {}),
          ...(job.target.topic ? { topic: job.target.topic } : {}),
        }) as unknown as typeof details;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        // The VAPID trio is the connection's; the keys of a subscription are the recipient's.
        return /vapid/i.test(message)
          ? failed(job, `web push: the VAPID connection is unusable: ${message}`)
          : bounced(job, `web push: the subscription is unusable: ${message}`);
      }
      const answer = await post(vetted.url, vetted.address, details.headers, details.body, timeoutMs);
      return classify(job, answer);
    },
  };
}

interface Answer {
  status: number;
  location: string | undefined;
  retryAfter: string | undefined;
  text: string;
  latencyMs: number;
}

function post(
  url: URL,
  address: string,
  headers: Record<string, string | number>,
  body: Buffer | null,
  timeoutMs: number,
): Promise<Answer> {
  const started = Date.now();
  const transport = url.protocol === "https:" ? https : http;
  return new Promise<Answer>((resolve, reject) => {
    const req = transport.request(
      {
        method: "POST",
        // The vetted address, not the name (endpoint-guard.ts); the name goes in SNI and Host.
        host: address,
        port: url.port || (url.protocol === "https:" ? 443 : 80),
        path: `${url.pathname}${url.search}`,
        // SNI carries names only (RFC 6066 §3); an IP-literal endpoint is verified against its address.
        ...(isIP(url.hostname.replace(/^\[|\]$/g, "")) ? {} : { servername: url.hostname }),
        headers: {
          ...Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, String(v)])),
          host: url.host,
        },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            location: typeof res.headers.location === "string" ? res.headers.location : undefined,
            retryAfter:
              typeof res.headers["retry-after"] === "string" ? res.headers["retry-after"] : undefined,
            text: Buffer.concat(chunks).toString("utf8"),
            latencyMs: Date.now() - started,
          }),
        );
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`web push: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body ?? undefined);
  });
}

function classify(job: WebPushChannelJob, a: Answer): RecipientOutcome {
  const response = `push service ${a.status}${a.text ? `: ${a.text.slice(0, 200)}` : ""}`;
  if (a.status === 200 || a.status === 201 || a.status === 202)
    return delivered(
      job,
      a.location,
      `push service ${a.status}${a.location ? ` ${a.location}` : ""}`,
      a.latencyMs,
    );
  if (a.status === 404 || a.status === 410)
    return bounced(job, response, { gone: true, latencyMs: a.latencyMs });
  if (a.status === 429 || a.status >= 500)
    return deferred(job, response, parseRetryAfter(a.retryAfter), a.latencyMs);
  return failed(job, response, a.latencyMs);
}
