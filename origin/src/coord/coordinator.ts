/**
 * Coordinator: what several origin nodes must agree on, behind one small port (docs/architecture.md, "Origin node").
 *
 *  - Host slots: at most `limit` SMTP connections to one MX host across every node. A slot is a lease
 *    with an expiry, so the slots of a node that crashed free themselves.
 *  - Job claims and results: a message being delivered by one node is not delivered by another at the
 *    same time, and a node that is handed work another node already finished gets the stored result.
 *
 * Two adapters: `createMemoryCoordinator()` for a single process (the same semantics, in memory) and
 * `createRedisCoordinator(url)` for several processes or hosts. Neither is the durable store: the
 * edge's outbox is. Losing the coordinator's state costs at most a duplicate delivery (at-least-once),
 * never a lost message.
 */

/** Frees a host slot. Never rejects: a slot that cannot be released expires by its TTL. */
export type ReleaseSlot = () => Promise<void>;

export interface AcquireHostSlotOptions {
  /** Give up after waiting this long while the host is full; unlimited when absent. */
  waitMs?: number;
}

export interface Coordinator {
  /** Which adapter this is, for logs and /readyz. */
  readonly kind: "memory" | "redis";
  /**
   * Waits for one of `limit` slots for `host` and returns the function that frees it. The slot is held
   * for `ttlMs` and renewed while it is held; a holder that dies stops renewing and the slot frees itself.
   * Throws `HostSlotTimeoutError` when `waitMs` passes while the host stays full.
   */
  acquireHostSlot(
    host: string,
    limit: number,
    ttlMs: number,
    options?: AcquireHostSlotOptions,
  ): Promise<ReleaseSlot>;
  /**
   * True when this call took the claim: nobody else holds `jobId` for the next `ttlMs`. `owner` is
   * `claimOwner(nodeId, bootId)`. A claim left by an EARLIER process of the same node id (same node,
   * older boot id, see `newBootId`) is taken over: the edge lets only one process per node id hold a link (a hello
   * with a new boot id retires the old one, docs/link-protocol.md), so that process is gone, and
   * waiting out its claim would undo the edge's immediate re-dispatch after a restart. The same
   * owner claiming twice gets false (one message, one delivery at a time).
   */
  claimJob(jobId: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Stores `resultJson` for `ttlMs` and drops the claim on `jobId`, in one step. */
  completeJob(jobId: string, resultJson: string, ttlMs: number): Promise<void>;
  /** The result stored by `completeJob`, or null. */
  getCompletedJob(jobId: string): Promise<string | null>;
  /** Stops timers and closes connections; slots still held expire by their TTL. */
  close(): Promise<void>;
}

/**
 * A boot id for this process: its start time (fixed-width base 36, so later boots sort after earlier
 * ones as plain strings) and random bits. Never contains "/".
 */
export function newBootId(now = Date.now()): string {
  return `${now.toString(36).padStart(10, "0")}-${crypto.randomUUID()}`;
}

/** The claim owner of one origin process: its node id and its boot id. */
export const claimOwner = (nodeId: string, bootId: string): string => `${nodeId}/${bootId}`;

/** The node part of a claim owner, with its trailing "/" (boot ids never contain "/"; node ids may). */
export const ownerNode = (owner: string): string => owner.slice(0, owner.lastIndexOf("/") + 1);

/** True when `held` was written by an EARLIER boot of the node that `owner` names. */
export function isEarlierBootOfSameNode(held: string, owner: string): boolean {
  const node = ownerNode(owner);
  if (node === "" || ownerNode(held) !== node) return false;
  return held.slice(node.length) < owner.slice(node.length);
}

/** The host stayed full for the whole wait: the delivery is deferred, the edge retries it later. */
export class HostSlotTimeoutError extends Error {
  readonly code = "host_slot_timeout";
  constructor(
    readonly host: string,
    readonly waitedMs: number,
  ) {
    super(`no free connection slot for ${host} after ${waitedMs} ms`);
    this.name = "HostSlotTimeoutError";
  }
}
