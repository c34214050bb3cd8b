/**
 * A bounded, time-limited cache held in one isolate's memory (docs/configuration.md, AUTH_CACHE_TTL_MS).
 *
 * Invariants:
 *  - An entry is served for at most `ttlMs` after it was loaded; the TTL is passed on every read, so
 *    a changed setting applies at once and an entry is never served longer than the current TTL.
 *  - Size is bounded twice: at most `maxEntries` positive entries and at most `maxNegative` negative
 *    ones ("known not to exist"), each evicted least-recently-used first (a Map keeps insertion
 *    order; a hit re-inserts). A flood of random unknown keys can only churn the negative half and
 *    never pushes real principals out of the positive half.
 *  - Concurrent misses for one key share one load (the promise is cached until it settles), so a
 *    burst on a cold isolate costs one storage read per key, not one per request.
 *  - A failed load is never cached.
 *  - `delete` takes effect at once, also against a load that was in flight when it was called: that
 *    load's result is returned to its callers but not stored (it may predate the change).
 */

export type Clock = () => number;

interface Entry<V> {
  value: V;
  loadedAt: number;
}

/** The value a loader returns for "does not exist"; cached in the negative half. */
export const MISSING = Symbol("missing");
export type Loaded<V> = V | typeof MISSING;

export class IsolateCache<K, V> {
  private readonly positive = new Map<K, Entry<V>>();
  private readonly negative = new Map<K, Entry<typeof MISSING>>();
  private readonly inflight = new Map<K, Promise<Loaded<V>>>();

  constructor(
    private readonly maxEntries: number,
    private readonly maxNegative: number,
    private readonly clock: Clock = Date.now,
  ) {}

  /** The cached value (or MISSING) if younger than `ttlMs`; undefined on a miss. */
  peek(key: K, ttlMs: number): Loaded<V> | undefined {
    const now = this.clock();
    const hit = this.positive.get(key) ?? this.negative.get(key);
    if (!hit) return undefined;
    const half = hit.value === MISSING ? this.negative : this.positive;
    if (now - hit.loadedAt >= ttlMs || now < hit.loadedAt) {
      half.delete(key);
      return undefined;
    }
    // Least-recently-used order: a hit moves to the end.
    half.delete(key);
    (half as Map<K, Entry<Loaded<V>>>).set(key, hit);
    return hit.value;
  }

  /** Serves from memory, or runs `load` once for all concurrent callers and caches what it returns. */
  async get(key: K, ttlMs: number, load: () => Promise<Loaded<V>>): Promise<Loaded<V>> {
    if (ttlMs > 0) {
      const hit = this.peek(key, ttlMs);
      if (hit !== undefined) return hit;
      const pending = this.inflight.get(key);
      if (pending) return pending;
    }
    // The entry's age counts from when the read started: what it saw may be that old.
    const startedAt = this.clock();
    const promise = load();
    if (ttlMs <= 0) return promise;
    this.inflight.set(key, promise);
    try {
      const value = await promise;
      // Still ours: no delete() (which drops the in-flight load) happened while it ran.
      if (this.inflight.get(key) === promise) this.store(key, value, startedAt);
      return value;
    } finally {
      if (this.inflight.get(key) === promise) this.inflight.delete(key);
    }
  }

  /**
   * Several keys at once: hits from memory, loads in flight are joined, and the remaining misses are
   * loaded by ONE call to `loadMissing` (one storage round trip for the lot). Keys it does not
   * return are cached as MISSING.
   */
  async getMany(
    keys: readonly K[],
    ttlMs: number,
    loadMissing: (missing: K[]) => Promise<Map<K, V>>,
  ): Promise<Map<K, Loaded<V>>> {
    const out = new Map<K, Loaded<V>>();
    const joined: [K, Promise<Loaded<V>>][] = [];
    const missing: K[] = [];
    for (const key of new Set(keys)) {
      const hit = ttlMs > 0 ? this.peek(key, ttlMs) : undefined;
      if (hit !== undefined) out.set(key, hit);
      else if (ttlMs > 0 && this.inflight.has(key)) joined.push([key, this.inflight.get(key)!]);
      else missing.push(key);
    }
    if (missing.length > 0) {
      const startedAt = this.clock();
      const batch = loadMissing(missing);
      const perKey = missing.map((key) => {
        const promise = batch.then((found): Loaded<V> => found.get(key) ?? MISSING);
        // Only joined callers await these; they see the rejection through their own await.
        promise.catch(() => undefined);
        return [key, promise] as const;
      });
      if (ttlMs > 0) for (const [key, promise] of perKey) this.inflight.set(key, promise);
      let found: Map<K, V>;
      try {
        found = await batch;
      } catch (err) {
        for (const [key, promise] of perKey) {
          if (this.inflight.get(key) === promise) this.inflight.delete(key);
        }
        throw err;
      }
      for (const [key, promise] of perKey) {
        const value = found.get(key) ?? MISSING;
        out.set(key, value);
        // Still ours: no delete() dropped this load while it ran.
        if (this.inflight.get(key) === promise) {
          this.inflight.delete(key);
          this.store(key, value, startedAt);
        }
      }
    }
    for (const [key, promise] of joined) out.set(key, await promise);
    return out;
  }

  /** Forgets a key at once (a change made through this isolate); a load in flight is not stored. */
  delete(key: K): void {
    this.positive.delete(key);
    this.negative.delete(key);
    this.inflight.delete(key);
  }

  clear(): void {
    this.positive.clear();
    this.negative.clear();
    this.inflight.clear();
  }

  get size(): { positive: number; negative: number } {
    return { positive: this.positive.size, negative: this.negative.size };
  }

  private store(key: K, value: Loaded<V>, loadedAt: number): void {
    if (value === MISSING) {
      this.positive.delete(key);
      this.negative.delete(key);
      this.negative.set(key, { value: MISSING, loadedAt });
      evictOldest(this.negative, this.maxNegative);
    } else {
      this.negative.delete(key);
      this.positive.delete(key);
      this.positive.set(key, { value: value as V, loadedAt });
      evictOldest(this.positive, this.maxEntries);
    }
  }
}

function evictOldest<K>(map: Map<K, unknown>, max: number): void {
  while (map.size > max) {
    const oldest = map.keys().next().value as K;
    map.delete(oldest);
  }
}
