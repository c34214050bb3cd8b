/**
 * The Worker's side of the OriginHub shards: stubs placed in their region, acceptance of one
 * request's messages, read-your-writes, and the cron's calls (docs/architecture.md, "The accept path").
 */
import type { Bindings, Config } from "../env.ts";
import type { OriginHub, OutboxEntry } from "../objects/origin-hub.ts";
import {
  allShards,
  hubName,
  inLayout,
  layoutOf,
  legacyShardFor,
  shardFor,
  type ShardRef,
} from "../lib/shards.ts";

/**
 * A shard's stub. A regional shard is created with its region as `locationHint`, so its SQLite lives
 * near the requests that use it (developers.cloudflare.com/durable-objects/reference/data-location/);
 * the hint only matters when the object is first created, and every caller passes the same one.
 */
export function hubStub(env: Bindings, shard: ShardRef): DurableObjectStub<OriginHub> {
  return env.ORIGIN_HUB.getByName(
    hubName(shard),
    shard.region ? { locationHint: shard.region } : undefined,
  ) as DurableObjectStub<OriginHub>;
}

/** The shard that holds a message not yet in the D1 catalog; null when its id names no configured shard. */
export function ownerOf(config: Config, messageId: string): ShardRef | null {
  const shard = shardFor(messageId);
  // Never a stub for a shard the layout does not have: ids come from the URL, and a made-up one
  // must not create a Durable Object.
  return shard && inLayout(layoutOf(config), shard) ? shard : null;
}

/**
 * The sweeper's legacy guard: hands messages accepted before the hub was the point of acceptance
 * (ids that name no shard) to the unplaced shard they were enqueued on then.
 */
export async function enqueueLegacy(env: Bindings, config: Config, entries: OutboxEntry[]): Promise<void> {
  const byShard = new Map<number, OutboxEntry[]>();
  for (const e of entries) {
    const shard = legacyShardFor(e.messageId, config.HUB_SHARDS).index;
    byShard.set(shard, [...(byShard.get(shard) ?? []), e]);
  }
  await Promise.all([...byShard].map(([index, list]) => hubStub(env, { region: null, index }).enqueue(list)));
}

/** Asks every shard to write what waits for D1; returns how many messages are still not catalogued. */
export async function flushAllShards(env: Bindings, config: Config): Promise<number> {
  const counts = await Promise.all(
    allShards(layoutOf(config)).map(async (s) => (await hubStub(env, s).flush()).uncatalogued),
  );
  return counts.reduce((a, b) => a + b, 0);
}
