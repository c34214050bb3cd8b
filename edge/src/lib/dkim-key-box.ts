/**
 * The one place that opens a sender domain's sealed DKIM private key for a delivery job.
 * The OriginHub calls this per outbox row; a key that cannot be opened throws, and the hub fails
 * that one message with the error's text instead of stalling its batch.
 */
import type { Config } from "../env.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";
import { open } from "./secret-box.ts";

export async function openDkimPrivateKey(
  config: Config,
  dkim: NonNullable<OutboxEntry["dkim"]>,
): Promise<string> {
  return open(config.SECRETS_KEY, dkim.privateKeySealed);
}
