/**
 * The OriginHub's side of a channel message (docs/channels.md#the-job): its outbox entry's channel
 * part becomes a channel job at dispatch, with the provider connection's credentials opened then
 * (services/provider-connections.ts), as a delivery job's DKIM keys are. The job is checked with
 * the link's schema before it costs a credit: an origin refuses a whole frame that does not parse,
 * so a job that would not must fail its own message here (the hub's `failUnsendable` path) instead.
 */
import { ChannelJobSchema, type ChannelJob } from "../../../shared/link/channel-job.ts";
import { jobIdFor } from "../../../shared/link/protocol.ts";
import type { Keyring } from "../lib/secret-box.ts";
import { openCredentials } from "./provider-connections.ts";
import type { ChannelEntry } from "./senderkit/channel-send.ts";

export async function channelJobOf(
  keys: Keyring,
  row: { message_id: string; tenant_id: string; recipients: string },
  entry: ChannelEntry,
  dispatch: number,
  /** The outbox entry's `freshFrom` (POST /v3/messages/{id}/retry), as a delivery job carries it. */
  freshFrom?: number,
): Promise<ChannelJob> {
  let provider: ChannelJob["provider"];
  try {
    provider = await openCredentials(keys, entry.connectionId, entry.credentialsSealed);
  } catch (err) {
    throw new Error(
      `the credentials of provider connection ${entry.connectionId} could not be opened (${err instanceof Error ? err.message : String(err)}); ` +
        "if SECRETS_KEY was changed, see the key rotation steps in docs/operations.md",
    );
  }
  const job = ChannelJobSchema.safeParse({
    jobId: jobIdFor(row.message_id, dispatch),
    messageId: row.message_id,
    tenantId: row.tenant_id,
    attempt: dispatch,
    recipients: JSON.parse(row.recipients) as string[],
    connectionId: entry.connectionId,
    ...(freshFrom !== undefined ? { freshFrom } : {}),
    channel: entry.channel,
    target: entry.target,
    content: entry.content,
    provider,
  });
  if (!job.success) {
    const first = job.error.issues[0];
    throw new Error(`the channel job is not valid: ${first?.path.join(".")}: ${first?.message}`);
  }
  return job.data;
}
