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
  /** True when this call took the claim (SET NX): nobody else holds `jobId` for the next `ttlMs`. */
  claimJob(jobId: string, nodeId: string, ttlMs: number): Promise<boolean>;
  /** Stores `resultJson` for `ttlMs` and drops the claim on `jobId`, in one step. */
  completeJob(jobId: string, resultJson: string, ttlMs: number): Promise<void>;
  /** The result stored by `completeJob`, or null. */
  getCompletedJob(jobId: string): Promise<string | null>;
  /** Stops timers and closes connections; slots still held expire by their TTL. */
  close(): Promise<void>;
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
