/** What every channel adapter is (index.ts dispatches a channel job to one by its provider's kind). */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";

export interface SendOptions {
  /** How long this job's provider requests may take in all (the job deadline and CHANNEL_TIMEOUT_MS). */
  timeoutMs: number;
}

export interface ChannelAdapter<J> {
  /** One outcome for the job; throws only for a network error / timeout or a ConnectionConfigError. */
  send(job: J, opts: SendOptions): Promise<RecipientOutcome>;
  /** Closes pooled connections (APNs' HTTP/2 sessions). */
  close?(): void;
}
