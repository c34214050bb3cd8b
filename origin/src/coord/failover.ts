/**
 * A Redis outage degrades the shared limits to per-node ones, never to lost or stuck mail
 * (docs/operations.md, "Throttling and warm-up"). The limits (host and domain connection slots,
 * rate tokens, back-off, warm-up counts) go to an in-memory coordinator of this node while Redis does
 * not answer, with one warning when that starts and one note when Redis is back. Job claims and
 * results are not limits: they still go to Redis only, and their errors reach the job runner as before.
 *
 * After a failure Redis is left alone for `retryMs`, so a dead Redis costs one command timeout per
 * `retryMs`, not one per delivery. Counters kept in memory meanwhile are not copied to Redis when it
 * returns: for that while each node may send up to the full limit on its own.
 */
import { HostSlotTimeoutError, type Coordinator } from "./coordinator.ts";
import { createMemoryCoordinator } from "./memory.ts";

export interface FailoverOptions {
  log?: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  /** How long to use the in-memory limits after a Redis failure before trying Redis again. */
  retryMs?: number;
  now?: () => number;
}

export interface FailoverCoordinator extends Coordinator {
  /** True while the limits are per node because the shared store did not answer. */
  readonly degraded: boolean;
}

export function withMemoryFallback(primary: Coordinator, options: FailoverOptions = {}): FailoverCoordinator {
  const fallback = createMemoryCoordinator();
  const log = options.log ?? (() => {});
  const retryMs = options.retryMs ?? 5_000;
  const now = options.now ?? Date.now;
  let degradedUntil = 0;
  let degraded = false;

  async function limit<T>(what: string, call: (c: Coordinator) => Promise<T>): Promise<T> {
    if (degraded && now() < degradedUntil) return call(fallback);
    try {
      const result = await call(primary);
      if (degraded) {
        degraded = false;
        log("info", "redis answers again: per-destination limits are shared across nodes again");
      }
      return result;
    } catch (err) {
      // A full host is an answer, not an outage.
      if (err instanceof HostSlotTimeoutError) throw err;
      if (!degraded) {
        log("warn", "redis unavailable: per-destination limits are kept per node until it is back", {
          operation: what,
          error: err instanceof Error ? err.message : String(err),
        });
      }
      degraded = true;
      degradedUntil = now() + retryMs;
      return call(fallback);
    }
  }

  return {
    get kind() {
      return primary.kind;
    },
    get degraded() {
      return degraded;
    },
    acquireHostSlot: (host, max, ttlMs, opts) =>
      limit("acquireHostSlot", (c) => c.acquireHostSlot(host, max, ttlMs, opts)),
    takeRateTokens: (key, r) => limit("takeRateTokens", (c) => c.takeRateTokens(key, r)),
    backoffState: (key, p) => limit("backoffState", (c) => c.backoffState(key, p)),
    reportPushback: (key, p) => limit("reportPushback", (c) => c.reportPushback(key, p)),
    takeWarmup: (key, day, n, allowance) => limit("takeWarmup", (c) => c.takeWarmup(key, day, n, allowance)),
    claimJob: (jobId, owner, ttlMs) => primary.claimJob(jobId, owner, ttlMs),
    completeJob: (jobId, json, ttlMs) => primary.completeJob(jobId, json, ttlMs),
    getCompletedJob: (jobId) => primary.getCompletedJob(jobId),
    async close() {
      await Promise.all([primary.close(), fallback.close()]);
    },
  };
}
