/**
 * The IP pools a hub shard knows of (docs/api/sendgrid.md#ip-pools, docs/link-protocol.md#ip-pools).
 *
 * Pools are configured on the origins (IP_POOLS), not at the edge: each origin names its pools in
 * every `hello`, and the shard keeps each node's latest list in its own SQLite storage, so after a
 * restart of the hub a send naming a pool is accepted before any origin has reconnected. A pool is
 * known when a node announced it in a hello within POOL_MEMORY_MS; a node's next hello replaces its
 * list, so a pool removed from every node stops being accepted as soon as they have reconnected.
 *
 * Dispatch: a job naming a pool goes only to a link whose node announced it (`poolsOfNode`); the
 * hub's due query filters on the outbox row's `ip_pool` column, so such a row never holds back the
 * rows behind it, and until a node with the pool connects it waits in the outbox (its queue age
 * still runs). An origin that gets one anyway (its hello changed meanwhile) defers it.
 *
 * When no node has announced any pool, no `ip_pool_name` is valid: such a send is refused with
 * SendGrid's 400 rather than accepted and left for no origin to deliver. Pools belong to the
 * deployment, not to a tenant: every tenant may name every pool. Names compare exactly (case
 * included), as the origins' configuration spells them.
 */

/** How long a node's announcement counts after its last hello (a decommissioned node ages out). */
export const POOL_MEMORY_MS = 7 * 86_400_000;

/** Storages whose table exists already (one CREATE per object instance, not per call). */
const ready = new WeakSet<SqlStorage>();

/** Creates the table on first use, so the hub's own schema code needs no change for it. */
function ensureTable(sql: SqlStorage): void {
  if (ready.has(sql)) return;
  sql.exec(`CREATE TABLE IF NOT EXISTS origin_pools (
    node_id TEXT PRIMARY KEY,
    pools TEXT NOT NULL,
    announced_at INTEGER NOT NULL
  )`);
  ready.add(sql);
}

/** A node's hello: its pools replace what it announced before (absent = none, an older origin). */
export function recordAnnouncedPools(
  sql: SqlStorage,
  nodeId: string,
  pools: readonly string[] | undefined,
  now: number,
): void {
  ensureTable(sql);
  const list = [...new Set(pools ?? [])].sort();
  sql.exec(
    `INSERT INTO origin_pools (node_id, pools, announced_at) VALUES (?, ?, ?)
     ON CONFLICT(node_id) DO UPDATE SET pools = excluded.pools, announced_at = excluded.announced_at`,
    nodeId,
    JSON.stringify(list),
    now,
  );
}

/** Every pool some node announced within POOL_MEMORY_MS. */
export function knownPools(sql: SqlStorage, now: number): Set<string> {
  ensureTable(sql);
  const out = new Set<string>();
  const rows = sql
    .exec<{ pools: string }>("SELECT pools FROM origin_pools WHERE announced_at > ?", now - POOL_MEMORY_MS)
    .toArray();
  for (const row of rows) for (const pool of JSON.parse(row.pools) as string[]) out.add(pool);
  return out;
}

/** The first pool named in `wanted` that no node announced, or null when every one is known (or none is named). */
export function unknownPool(
  sql: SqlStorage,
  wanted: readonly (string | undefined)[],
  now: number,
): string | null {
  const named = wanted.filter((p): p is string => p !== undefined);
  if (named.length === 0) return null;
  const known = knownPools(sql, now);
  return named.find((p) => !known.has(p)) ?? null;
}

// ---------------------------------------------------------------- dispatch

/** The pools a node announced in its latest hello (none if it never announced any). */
export function poolsOfNode(sql: SqlStorage, nodeId: string): ReadonlySet<string> {
  ensureTable(sql);
  const row = sql
    .exec<{ pools: string }>("SELECT pools FROM origin_pools WHERE node_id = ?", nodeId)
    .toArray()[0];
  return new Set(row ? (JSON.parse(row.pools) as string[]) : []);
}
