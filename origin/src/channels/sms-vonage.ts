/**
 * SMS through Vonage's SMS API: `POST /sms/json` with a form body (api_key, api_secret, from, to
 * without "+", text, type) (https://developer.vonage.com/en/api/sms). Vonage answers 200 for every
 * message it processed, errors included: `messages[0].status` is "0" for accepted (with its
 * `message-id`) or an error code
 * (https://developer.vonage.com/en/messaging/sms/guides/troubleshooting-sms), mapped in `classify`.
 */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { SmsChannelJob } from "../../../shared/link/channel-job.ts";
import type { ChannelConfig } from "./config.ts";
import { parseJson, providerRequest } from "./http.ts";
import { bounced, byHttpStatus, delivered, deferred, failed } from "./outcome.ts";
import type { ChannelAdapter } from "./types.ts";

type VonageJob = SmsChannelJob & { provider: { kind: "vonage" } };

/** Try again later: throttled, internal error, communications failure. */
const TRANSIENT = new Set(["1", "5", "13"]);
/** The destination is unusable: invalid message / unrecognised number, invalid network, number de-activated. */
const BAD_NUMBER = new Set(["6", "22", "33"]);
/** The destination is barred. */
const BARRED = new Set(["7"]);

export function createVonageAdapter(
  config: Pick<ChannelConfig, "CHANNEL_VONAGE_API_URL">,
): ChannelAdapter<VonageJob> {
  return {
    async send(job, { timeoutMs }) {
      const p = job.provider;
      const text = job.content.body;
      const form = new URLSearchParams({
        api_key: p.apiKey,
        api_secret: p.apiSecret,
        from: p.from.replace(/^\+/, ""),
        to: job.target.to.slice(1),
        text,
        // Outside ASCII the text must go as UCS-2, or Vonage replaces the characters it cannot encode.
        type: /[^\x20-\x7e\n\r]/.test(text) ? "unicode" : "text",
      });
      const answer = await providerRequest(
        `${config.CHANNEL_VONAGE_API_URL}/sms/json`,
        {
          headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
          body: form.toString(),
        },
        timeoutMs,
      );
      return classify(job, answer.status, answer.text, answer.headers.get("retry-after"), answer.latencyMs);
    },
  };
}

function classify(
  job: VonageJob,
  status: number,
  text: string,
  retryAfter: string | null,
  latencyMs: number,
): RecipientOutcome {
  if (status !== 200)
    return byHttpStatus(job, status, `vonage ${status}: ${text.slice(0, 200)}`, retryAfter, latencyMs);
  const body = parseJson(text) as
    { messages?: { status?: unknown; "message-id"?: unknown; "error-text"?: unknown }[] } | undefined;
  // A long text goes as several parts, each with its own status and id: accepted only when every one is.
  const parts = (body?.messages ?? []).filter((m) => typeof m?.status === "string");
  if (parts.length === 0)
    return deferred(job, `vonage: unreadable answer: ${text.slice(0, 200)}`, undefined, latencyMs);
  const first = parts.find((m) => m.status !== "0");
  if (!first) {
    const id = typeof parts[0]!["message-id"] === "string" ? parts[0]!["message-id"] : undefined;
    return delivered(
      job,
      id,
      `vonage: accepted ${id ?? ""}${parts.length > 1 ? ` (${parts.length} parts)` : ""}`.trim(),
      latencyMs,
    );
  }
  const code = first.status as string;
  const response = `vonage status ${code}: ${typeof first["error-text"] === "string" ? first["error-text"] : ""}`;
  if (TRANSIENT.has(code)) return deferred(job, response, undefined, latencyMs);
  if (BAD_NUMBER.has(code)) return bounced(job, response, { latencyMs });
  if (BARRED.has(code)) return bounced(job, response, { bounceType: "block", latencyMs });
  // 2/3 parameters, 4 credentials, 8 account barred, 9 quota, 15 sender, 29 non-whitelisted (trial)…
  return failed(job, response, latencyMs);
}
