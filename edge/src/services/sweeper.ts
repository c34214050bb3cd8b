/**
 * The cron sweeper. Since the hub shard is the point of acceptance (docs/architecture.md, "The
 * accept path"), a live message cannot "miss the hub" any more: it exists only once its shard
 * committed it, and the shard alone moves it on. So the sweeper no longer re-enqueues such
 * messages (doing so could only race the shard and send one twice). What it does now:
 *  1. Wakes every configured shard and asks it to write what waits for D1 (`flush`): a shard that
 *     restarted and lost its timers writes its catalog rows and re-arms its alarm. Its alarm does the
 *     same on its own; this is the backstop that needs nothing from the shard's memory.
 *  2. Legacy guard: live messages accepted before that change (ids that name no shard) that are still
 *     not terminal and untouched for STALE_AFTER_MS may have lost their enqueue after the D1 write, as
 *     the old send path could; they are handed to the unplaced shard they were enqueued on then.
 *     Enqueue is idempotent per message id, so a message the hub already holds is untouched.
 */
import type { Db } from "../db/client.ts";
import { tenantDomains } from "../db/domains.ts";
import { findStaleLiveMessages, getRecipientsByStatus } from "../db/messages.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";
import { buildOutboxEntry, domainOf } from "./outbox-entry.ts";

export const STALE_AFTER_MS = 10 * 60_000;
const BATCH = 200;

export interface SweepDeps {
  db: Db;
  /** Hands legacy messages to the shard they were enqueued on (hub-client.ts enqueueLegacy). */
  enqueueLegacy: (entries: OutboxEntry[]) => Promise<void>;
  /** Asks every shard to flush; returns how many messages are still not in the catalog. */
  flushShards: () => Promise<number>;
}

export interface SweepResult {
  /** Legacy messages handed back to their hub. */
  requeued: number;
  /** Accepted messages whose catalog rows are still not in D1 after the flush (D1 failing). */
  uncatalogued: number;
}

export async function sweep(deps: SweepDeps, now: number): Promise<SweepResult> {
  const uncatalogued = await deps.flushShards();
  const requeued = await sweepLegacyMessages(deps.db, deps.enqueueLegacy, now);
  return { requeued, uncatalogued };
}

export async function sweepLegacyMessages(
  db: Db,
  enqueue: (entries: OutboxEntry[]) => Promise<void>,
  now: number,
): Promise<number> {
  const stale = await findStaleLiveMessages(db, now - STALE_AFTER_MS, BATCH);
  const entries: OutboxEntry[] = [];
  for (const m of stale) {
    const [domain] = await tenantDomains(db, m.tenantId).findDomainsByNames([domainOf(m.fromEmail)]);
    const pending = await getRecipientsByStatus(db, m.id, ["pending", "deferred"]);
    if (pending.length === 0) continue;
    entries.push(buildOutboxEntry(m, domain, pending));
  }
  if (entries.length > 0) await enqueue(entries);
  return entries.length;
}
