/**
 * Mobile push through Expo's push service (https://docs.expo.dev/push-notifications/sending-notifications/):
 * `POST /--/api/v2/push/send` with a JSON array of messages (`to`, `title`, `body`, `data`, `sound`,
 * `badge`), and `Authorization: Bearer <access token>` when the project requires one. The answer has
 * one push ticket per message: `{status: "ok", id}` (the id names the later receipt: the provider
 * message id) or `{status: "error", message, details: {error}}`.
 *
 * Mapping: ok → delivered; DeviceNotRegistered → bounced, gone; MessageRateExceeded, 429, 5xx →
 * deferred; MessageTooBig, MismatchSenderId, InvalidCredentials, 400 / 401 / 403 → failed. Receipts
 * (a later DeviceNotRegistered from APNs or FCM) are not polled (docs/channels.md#known-limits).
 */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { PushChannelJob } from "../../../shared/link/channel-job.ts";
import type { ChannelConfig } from "./config.ts";
import { parseJson, providerRequest } from "./http.ts";
import { bounced, byHttpStatus, delivered, deferred, failed } from "./outcome.ts";
import type { ChannelAdapter } from "./types.ts";

type ExpoJob = PushChannelJob & { provider: { kind: "expo" } };

export function createExpoAdapter(
  config: Pick<ChannelConfig, "CHANNEL_EXPO_API_URL">,
): ChannelAdapter<ExpoJob> {
  return {
    async send(job, { timeoutMs }) {
      const c = job.content;
      const message = {
        to: job.target.token,
        ...(c.title !== undefined ? { title: c.title } : {}),
        body: c.body,
        ...(c.data ? { data: c.data } : {}),
        ...(c.sound !== undefined ? { sound: c.sound } : {}),
        ...(c.badge !== undefined ? { badge: c.badge } : {}),
      };
      const answer = await providerRequest(
        `${config.CHANNEL_EXPO_API_URL}/--/api/v2/push/send`,
        {
          headers: {
            "content-type": "application/json",
            accept: "application/json",
            ...(job.provider.accessToken ? { authorization: `Bearer ${job.provider.accessToken}` } : {}),
          },
          body: JSON.stringify([message]),
        },
        timeoutMs,
      );
      return classify(job, answer.status, answer.text, answer.headers.get("retry-after"), answer.latencyMs);
    },
  };
}

function classify(
  job: ExpoJob,
  status: number,
  text: string,
  retryAfter: string | null,
  latencyMs: number,
): RecipientOutcome {
  const body = parseJson(text) as
    | {
        data?: unknown;
        errors?: { code?: unknown; message?: unknown }[];
      }
    | undefined;
  if (status !== 200) {
    const first = body?.errors?.[0];
    const response = `expo ${status}${first?.code ? ` ${String(first.code)}` : ""}: ${
      typeof first?.message === "string" ? first.message : text.slice(0, 200)
    }`;
    return byHttpStatus(job, status, response, retryAfter, latencyMs);
  }
  const data = body?.data;
  const ticket = (Array.isArray(data) ? data[0] : data) as
    { status?: unknown; id?: unknown; message?: unknown; details?: { error?: unknown } } | undefined;
  if (ticket?.status === "ok") {
    const id = typeof ticket.id === "string" ? ticket.id : undefined;
    return delivered(job, id, `expo: ticket ${id ?? "ok"}`, latencyMs);
  }
  if (ticket?.status !== "error")
    return deferred(job, `expo: unreadable answer: ${text.slice(0, 200)}`, undefined, latencyMs);
  const code = typeof ticket.details?.error === "string" ? ticket.details.error : "";
  const response = `expo ${code || "error"}: ${typeof ticket.message === "string" ? ticket.message : ""}`;
  if (code === "DeviceNotRegistered") return bounced(job, response, { gone: true, latencyMs });
  if (code === "MessageRateExceeded") return deferred(job, response, undefined, latencyMs);
  // "… is not a valid Expo push token" comes without details.
  if (!code && /not a valid Expo push token/i.test(response))
    return bounced(job, response, { gone: true, latencyMs });
  return failed(job, response, latencyMs);
}
