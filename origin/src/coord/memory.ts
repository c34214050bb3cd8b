/**
 * The in-process Coordinator, for a single origin node (no REDIS_URL).
 *
 * Host slots are a counting semaphore per host with a FIFO queue: a releasing holder hands its slot
 * straight to the next waiter, so the count never dips and nobody jumps the queue. Slot TTLs are not
 * needed here: a holder cannot die without this memory dying with it, and `release` runs in a `finally`.
 * Claims and results expire lazily by TTL; results are also capped in number, oldest dropped first.
 * Destination counters (rate buckets, back-off, warm-up) use the pure functions of coordinator.ts,
 * the same arithmetic the Redis adapter runs in Lua; a bucket or back-off that has gone back to its
 * resting state is dropped, and warm-up keeps only the current day per key.
 */
import {
  effectiveBackoff,
  gcra,
  HostSlotTimeoutError,
  isEarlierBootOfSameNode,
  pushback,
  type StoredBackoff,
  type AcquireHostSlotOptions,
  type Coordinator,
  type ReleaseSlot,
} from "./coordinator.ts";

export interface MemoryCoordinatorOptions {
  /** Upper bound on stored job results (oldest dropped first). */
  maxResults?: number;
  now?: () => number;
}

interface Waiter {
  grant: () => void;
}

export function createMemoryCoordinator(options: MemoryCoordinatorOptions = {}): Coordinator {
  const now = options.now ?? Date.now;
  const maxResults = options.maxResults ?? 10_000;
  const active = new Map<string, number>();
  const waiting = new Map<string, Waiter[]>();
  const claims = new Map<string, { nodeId: string; expiresAt: number }>();
  const results = new Map<string, { json: string; expiresAt: number }>();
  const timers = new Set<NodeJS.Timeout>();
  const buckets = new Map<string, number>();
  const backoffs = new Map<string, StoredBackoff>();
  const warmups = new Map<string, { day: string; used: number }>();
  /** Bounds the maps when a node sees very many destinations: resting entries go first. */
  const sweep = () => {
    const t = now();
    if (buckets.size > 10_000) for (const [k, tat] of buckets) if (tat <= t) buckets.delete(k);
  };

  function releaser(host: string): ReleaseSlot {
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      const queue = waiting.get(host);
      const next = queue?.shift();
      if (queue?.length === 0) waiting.delete(host);
      // Hand the slot over directly, so the count stays as it is.
      if (next) return next.grant();
      const left = (active.get(host) ?? 1) - 1;
      if (left <= 0) active.delete(host);
      else active.set(host, left);
    };
  }

  async function acquireHostSlot(
    host: string,
    limit: number,
    _ttlMs: number,
    opts: AcquireHostSlotOptions = {},
  ): Promise<ReleaseSlot> {
    const count = active.get(host) ?? 0;
    if (count < Math.max(1, limit)) {
      active.set(host, count + 1);
      return releaser(host);
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { grant: () => resolve() };
      const queue = waiting.get(host) ?? [];
      queue.push(waiter);
      waiting.set(host, queue);
      if (opts.waitMs === undefined || !Number.isFinite(opts.waitMs)) return;
      const waitMs = opts.waitMs;
      const timer = setTimeout(() => {
        timers.delete(timer);
        // Leave the queue first, so a later release never hands a slot to a waiter that gave up.
        const q = waiting.get(host);
        const i = q?.indexOf(waiter) ?? -1;
        if (q && i >= 0) q.splice(i, 1);
        if (q?.length === 0) waiting.delete(host);
        reject(new HostSlotTimeoutError(host, waitMs));
      }, waitMs);
      timers.add(timer);
      waiter.grant = () => {
        clearTimeout(timer);
        timers.delete(timer);
        resolve();
      };
    });
    return releaser(host);
  }

  return {
    kind: "memory",
    acquireHostSlot,
    async claimJob(jobId, owner, ttlMs) {
      const held = claims.get(jobId);
      if (held && held.expiresAt > now() && !isEarlierBootOfSameNode(held.nodeId, owner)) return false;
      claims.set(jobId, { nodeId: owner, expiresAt: now() + ttlMs });
      return true;
    },
    async completeJob(jobId, resultJson, ttlMs) {
      results.delete(jobId); // re-insert at the end: the map's order is the eviction order
      results.set(jobId, { json: resultJson, expiresAt: now() + ttlMs });
      claims.delete(jobId);
      while (results.size > maxResults) {
        const oldest = results.keys().next().value;
        if (oldest === undefined) break;
        results.delete(oldest);
      }
    },
    async getCompletedJob(jobId) {
      const stored = results.get(jobId);
      if (!stored) return null;
      if (stored.expiresAt <= now()) {
        results.delete(jobId);
        return null;
      }
      return stored.json;
    },
    async takeRateTokens(key, request) {
      const result = gcra(buckets.get(key) ?? 0, now(), request);
      buckets.set(key, result.tat);
      sweep();
      return result.decision;
    },
    async backoffState(key, policy) {
      const state = effectiveBackoff(backoffs.get(key), now(), policy);
      if (state.level === 0 && state.pausedForMs === 0) backoffs.delete(key);
      return state;
    },
    async reportPushback(key, policy) {
      const t = now();
      const next = pushback(backoffs.get(key), t, policy);
      backoffs.set(key, next);
      return effectiveBackoff(next, t, policy);
    },
    async takeWarmup(key, day, requested, allowance) {
      const held = warmups.get(key);
      const used = held && held.day === day ? held.used : 0;
      const granted = Math.max(0, Math.min(requested, allowance - used));
      warmups.set(key, { day, used: used + granted });
      return { granted, used: used + granted };
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
    },
  };
}
