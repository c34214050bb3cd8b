/**
 * The outcome of one channel job, in the link's RecipientOutcome shape (docs/channels.md#outcomes):
 * accepted → delivered; try again later → deferred; the target is refused for good → bounced (hard,
 * `gone` when it no longer exists); the connection is wrong → failed.
 */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { ChannelJob } from "../../../shared/link/channel-job.ts";

/** The most of a provider's answer kept in `response`. */
const MAX_RESPONSE = 1_000;
/** RecipientOutcomeSchema's bound on retryAfterMs. */
const MAX_RETRY_AFTER_MS = 31 * 86_400_000;

const clip = (s: string) => (s.length > MAX_RESPONSE ? `${s.slice(0, MAX_RESPONSE)}…` : s);
const recipientOf = (job: ChannelJob) => job.recipients[0]!;

export function delivered(
  job: ChannelJob,
  providerMessageId: string | undefined,
  response: string,
  latencyMs: number,
): RecipientOutcome {
  return {
    recipient: recipientOf(job),
    status: "delivered",
    response: clip(response),
    ...(providerMessageId ? { providerMessageId: providerMessageId.slice(0, 256) } : {}),
    latencyMs,
  };
}

export function deferred(
  job: ChannelJob,
  response: string,
  retryAfterMs?: number,
  latencyMs?: number,
): RecipientOutcome {
  return {
    recipient: recipientOf(job),
    status: "deferred",
    response: clip(response),
    ...(retryAfterMs !== undefined
      ? { retryAfterMs: Math.min(MAX_RETRY_AFTER_MS, Math.max(0, retryAfterMs)) }
      : {}),
    ...(latencyMs !== undefined ? { latencyMs } : {}),
  };
}

export function bounced(
  job: ChannelJob,
  response: string,
  opts: { gone?: boolean; bounceType?: "hard" | "block"; latencyMs?: number } = {},
): RecipientOutcome {
  return {
    recipient: recipientOf(job),
    status: "bounced",
    bounceType: opts.bounceType ?? "hard",
    response: clip(response),
    ...(opts.gone ? { gone: true as const } : {}),
    ...(opts.latencyMs !== undefined ? { latencyMs: opts.latencyMs } : {}),
  };
}

export function failed(job: ChannelJob, response: string, latencyMs?: number): RecipientOutcome {
  return {
    recipient: recipientOf(job),
    status: "failed",
    response: clip(response),
    ...(latencyMs !== undefined ? { latencyMs } : {}),
  };
}

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as ms from `now`; undefined when
 * absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(MAX_RETRY_AFTER_MS, Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, at - now));
}

/** The common answer to a status no adapter rule claimed: 429 / 5xx retry, 401 / 403 the connection, else failed. */
export function byHttpStatus(
  job: ChannelJob,
  status: number,
  response: string,
  retryAfter: string | null | undefined,
  latencyMs: number,
): RecipientOutcome {
  if (status === 429 || status >= 500 || status === 408)
    return deferred(job, response, parseRetryAfter(retryAfter), latencyMs);
  return failed(job, response, latencyMs);
}
