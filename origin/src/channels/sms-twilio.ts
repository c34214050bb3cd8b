/**
 * SMS through Twilio's Messages API: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, a form
 * body (To, From or MessagingServiceSid, Body) and HTTP basic auth with the account SID and auth
 * token (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource).
 *
 * Twilio answers 201 with the Message resource (`sid` SM…: the provider message id). Errors carry
 * Twilio's numeric `code` (https://www.twilio.com/docs/api/errors), mapped in `classify`.
 */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { SmsChannelJob } from "../../../shared/link/channel-job.ts";
import type { ChannelConfig } from "./config.ts";
import { basicAuth, parseJson, providerRequest } from "./http.ts";
import { bounced, byHttpStatus, delivered, deferred, failed, parseRetryAfter } from "./outcome.ts";
import type { ChannelAdapter } from "./types.ts";

type TwilioJob = SmsChannelJob & { provider: { kind: "twilio" } };

/** Error codes that say the recipient number itself is unusable (https://www.twilio.com/docs/api/errors). */
const BAD_NUMBER = new Set([
  21211, // Invalid 'To' phone number
  21217, // Phone number does not appear to be valid
  21401, // Invalid phone number
  21407, // This phone number type does not support SMS
  21421, // Phone number is invalid
  21612, // The 'To' phone number is not currently reachable via SMS
  21614, // 'To' number is not a valid mobile number
]);
/** The recipient opted out (replied STOP) or is blocked: a policy refusal, not a bad number. */
const BLOCKED = new Set([21610]);

export function createTwilioAdapter(
  config: Pick<ChannelConfig, "CHANNEL_TWILIO_API_URL">,
): ChannelAdapter<TwilioJob> {
  return {
    async send(job, { timeoutMs }) {
      const p = job.provider;
      const form = new URLSearchParams({ To: job.target.to, Body: job.content.body });
      if (p.messagingServiceSid) form.set("MessagingServiceSid", p.messagingServiceSid);
      else form.set("From", p.from!);
      const url = `${config.CHANNEL_TWILIO_API_URL}/2010-04-01/Accounts/${encodeURIComponent(p.accountSid)}/Messages.json`;
      const answer = await providerRequest(
        url,
        {
          headers: {
            authorization: basicAuth(p.accountSid, p.authToken),
            "content-type": "application/x-www-form-urlencoded",
            accept: "application/json",
          },
          body: form.toString(),
        },
        timeoutMs,
      );
      return classify(job, answer.status, answer.text, answer.headers.get("retry-after"), answer.latencyMs);
    },
  };
}

function classify(
  job: TwilioJob,
  status: number,
  text: string,
  retryAfter: string | null,
  latencyMs: number,
): RecipientOutcome {
  const body = parseJson(text) as
    { sid?: unknown; status?: unknown; code?: unknown; message?: unknown } | undefined;
  if (status === 200 || status === 201) {
    const sid = typeof body?.sid === "string" ? body.sid : undefined;
    return delivered(
      job,
      sid,
      `twilio: ${String(body?.status ?? "accepted")} ${sid ?? ""}`.trim(),
      latencyMs,
    );
  }
  const code = typeof body?.code === "number" ? body.code : undefined;
  const response = `twilio ${status}${code !== undefined ? ` (${code})` : ""}: ${
    typeof body?.message === "string" ? body.message : text.slice(0, 200)
  }`;
  if (code !== undefined && BAD_NUMBER.has(code)) return bounced(job, response, { latencyMs });
  if (code !== undefined && BLOCKED.has(code))
    return bounced(job, response, { bounceType: "block", latencyMs });
  // 20429: too many requests; Twilio sends 429 for it.
  if (status === 429 || code === 20429)
    return deferred(job, response, parseRetryAfter(retryAfter), latencyMs);
  // 401 (20003: authentication), 404 (20404: no such account), 400 (a From the account does not own…).
  if (status < 500) return failed(job, response, latencyMs);
  return byHttpStatus(job, status, response, retryAfter, latencyMs);
}
