/**
 * The cron sweeper: a live message that is still not terminal and has not changed for a while
 * may have missed the hub (the enqueue after the D1 write failed). Handing it to the hub again is
 * safe because enqueue is idempotent per message id; a message the hub already holds is untouched.
 */
import type { Db } from "../db/client.ts";
import { findDomainsByNames } from "../db/domains.ts";
import { findStaleLiveMessages, getRecipientsByStatus } from "../db/messages.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";
import { buildOutboxEntry, domainOf } from "./outbox-entry.ts";

export const STALE_AFTER_MS = 10 * 60_000;
const BATCH = 200;

export async function sweepStaleMessages(
  db: Db,
  enqueue: (entries: OutboxEntry[]) => Promise<void>,
  now: number,
): Promise<number> {
  const stale = await findStaleLiveMessages(db, now - STALE_AFTER_MS, BATCH);
  const entries: OutboxEntry[] = [];
  for (const m of stale) {
    const [domain] = await findDomainsByNames(db, m.tenantId, [domainOf(m.fromEmail)]);
    const pending = await getRecipientsByStatus(db, m.id, ["pending", "deferred"]);
    if (pending.length === 0) continue;
    entries.push(buildOutboxEntry(m, domain, pending));
  }
  if (entries.length > 0) await enqueue(entries);
  return entries.length;
}
