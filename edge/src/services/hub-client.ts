import type { Bindings } from "../env.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";
import { hubName, shardFor } from "../lib/shards.ts";

/** Sends outbox entries to the hub shard that owns each message. */
export async function enqueueOnHubs(env: Bindings, shards: number, entries: OutboxEntry[]): Promise<void> {
  const byShard = new Map<number, OutboxEntry[]>();
  for (const e of entries) {
    const shard = shardFor(e.messageId, shards);
    const list = byShard.get(shard) ?? [];
    list.push(e);
    byShard.set(shard, list);
  }
  await Promise.all(
    [...byShard].map(([shard, list]) => env.ORIGIN_HUB.getByName(hubName(shard)).enqueue(list)),
  );
}
