/**
 * Runs a channel job (shared/link/channel-job.ts) with the adapter for its provider and answers its
 * outcome, one per job recipient (there is one), like the delivery engine does for an email job: the
 * job runner journals and reports it the same way (origin/src/worker/job-runner.ts). It never throws:
 * a network error or a timeout defers the job (the edge retries it by its policy), a connection that
 * cannot work as configured fails it, and anything else unexpected defers it with the error.
 * docs/channels.md.
 */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { ChannelJob } from "../../../shared/link/channel-job.ts";
import type { ChannelConfig } from "./config.ts";
import { ConnectionConfigError } from "./http.ts";
import { deferred, failed } from "./outcome.ts";
import { createApnsAdapter } from "./push-apns.ts";
import { createExpoAdapter } from "./push-expo.ts";
import { createFcmAdapter } from "./push-fcm.ts";
import { createTwilioAdapter } from "./sms-twilio.ts";
import { createVonageAdapter } from "./sms-vonage.ts";
import { createWebPushAdapter } from "./web-push.ts";

export interface ChannelRunner {
  /** `onStage("sending")` as the provider request starts (docs/link-protocol.md#stages). */
  run(
    job: ChannelJob,
    opts: { deadlineAt: number; onStage?: (stage: "rendered" | "sending") => void },
  ): Promise<RecipientOutcome[]>;
  close(): void;
}

export function createChannelRunner(
  config: ChannelConfig,
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void = () => {},
): ChannelRunner {
  const twilio = createTwilioAdapter(config);
  const vonage = createVonageAdapter(config);
  const fcm = createFcmAdapter(config);
  const apns = createApnsAdapter(config);
  const expo = createExpoAdapter(config);
  const webPush = createWebPushAdapter(config);

  function dispatch(job: ChannelJob, timeoutMs: number): Promise<RecipientOutcome> {
    const opts = { timeoutMs };
    if (job.channel === "web-push") return webPush.send(job, opts);
    if (job.channel === "sms") {
      const p = job.provider;
      return p.kind === "twilio"
        ? twilio.send({ ...job, provider: p }, opts)
        : vonage.send({ ...job, provider: p }, opts);
    }
    const p = job.provider;
    switch (p.kind) {
      case "fcm":
        return fcm.send({ ...job, provider: p }, opts);
      case "apns":
        return apns.send({ ...job, provider: p }, opts);
      case "expo":
        return expo.send({ ...job, provider: p }, opts);
    }
  }

  return {
    async run(job, { deadlineAt, onStage }) {
      const timeoutMs = Math.min(config.CHANNEL_TIMEOUT_MS, deadlineAt - Date.now());
      if (timeoutMs <= 0) return [deferred(job, "channel job reached its deadline before it started")];
      const started = Date.now();
      onStage?.("sending");
      try {
        return [await dispatch(job, timeoutMs)];
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof ConnectionConfigError) return [failed(job, message)];
        log("warn", "channel provider request failed; deferring", {
          jobId: job.jobId,
          channel: job.channel,
          provider: job.provider.kind,
          error: message,
        });
        const timedOut =
          err instanceof Error && (err.name === "TimeoutError" || /within \d+ ms/.test(message));
        return [
          deferred(
            job,
            `${job.provider.kind}: ${timedOut ? "timed out" : "request failed"}: ${message}${causeOf(err)}`,
            undefined,
            Date.now() - started,
          ),
        ];
      }
    },
    close() {
      apns.close?.();
    },
  };
}

/** fetch's TypeError("fetch failed") hides the socket error in `cause`. */
function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause ? ` (${cause.code ?? cause.message ?? ""})` : "";
}

export { channelConfig, channelConfigShape, type ChannelConfig } from "./config.ts";
