/**
 * Coordinator: what several origin nodes must agree on, behind one small port (docs/architecture.md, "Origin node").
 *
 *  - Host slots: at most `limit` SMTP connections to one MX host across every node. A slot is a lease
 *    with an expiry, so the slots of a node that crashed free themselves.
 *  - Job claims and results: a message being delivered by one node is not delivered by another at the
 *    same time, and a node that is handed work another node already finished gets the stored result.
 *
 *  - Destination counters (docs/operations.md, "Throttling and warm-up"): a rate-token bucket per
 *    destination (GCRA, with reservations so a caller may wait for its turn), the back-off state of a
 *    destination that pushed back (421 / 4xx), and warm-up volume per sender per day. The per-domain
 *    connection limit reuses host slots under the key `domainSlotKey(domain)`.
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
  /**
   * Takes `cost` rate tokens for destination `key` (GCRA: one token every `emissionMs`, bursts up to
   * `burst`). When the tokens are due within `maxWaitMs` they are reserved and `waitMs` says how long
   * to wait before using them; otherwise nothing is taken and `retryAfterMs` says when they would be.
   */
  takeRateTokens(key: string, opts: RateTokenRequest): Promise<RateDecision>;
  /** The back-off state of destination `key` now (level 0, not paused, when it never pushed back). */
  backoffState(key: string, opts: BackoffPolicy): Promise<BackoffState>;
  /**
   * Destination `key` pushed back: unless it is paused already (one episode, however many sessions
   * saw it), its level goes up by one and it is paused for `min(maxMs, baseMs × 2^(level−1))`.
   */
  reportPushback(key: string, opts: BackoffPolicy): Promise<BackoffState>;
  /**
   * Counts up to `requested` recipients against `allowance` for warm-up key `key` on UTC day `day`
   * ("YYYY-MM-DD"), atomically: `granted` of them may go now, `used` is the day's count after it.
   */
  takeWarmup(key: string, day: string, requested: number, allowance: number): Promise<WarmupGrant>;
  /** Stops timers and closes connections; slots still held expire by their TTL. */
  close(): Promise<void>;
}

export interface RateTokenRequest {
  cost: number;
  /** Milliseconds per token (interval / rate). */
  emissionMs: number;
  /** Tokens that may be taken at once after a quiet spell (the bucket size). */
  burst: number;
  /** Reserve the tokens only when they are due within this long. */
  maxWaitMs: number;
}

export type RateDecision = { granted: true; waitMs: number } | { granted: false; retryAfterMs: number };

export interface BackoffPolicy {
  /** Pause after the first pushback; doubled for each level above 1. */
  baseMs: number;
  /** Longest pause. */
  maxMs: number;
  /** After its pause, a destination drops one level per `decayMs` without pushback. */
  decayMs: number;
}

export interface BackoffState {
  level: number;
  /** > 0 while the destination is paused. */
  pausedForMs: number;
}

export interface WarmupGrant {
  granted: number;
  used: number;
}

/** Highest back-off level: with the default base of 60 s the pause is capped by `maxMs` well before. */
export const MAX_BACKOFF_LEVEL = 10;

/** The per-domain connection limit is a host-slot semaphore under this key (":" is never in a host name). */
export const domainSlotKey = (domain: string): string => `domain:${domain.toLowerCase()}`;

/**
 * One GCRA step (https://en.wikipedia.org/wiki/Generic_cell_rate_algorithm), the same arithmetic as
 * the Redis adapter's Lua: `tat` is the theoretical arrival time of the bucket (0 when unknown). The
 * tokens are usable at `max(now, max(tat, now) + (min(cost, burst) − burst) × T)`, and the bucket is
 * charged the whole cost: a transaction with more recipients than the burst goes once the bucket is
 * full and leaves it in debt, rather than never fitting.
 */
export function gcra(tat: number, now: number, r: RateTokenRequest): { decision: RateDecision; tat: number } {
  const base = Math.max(tat, now);
  const next = base + r.cost * r.emissionMs;
  const at = Math.max(now, base + (Math.min(r.cost, r.burst) - r.burst) * r.emissionMs);
  if (at - now > r.maxWaitMs) return { decision: { granted: false, retryAfterMs: at - now }, tat };
  return { decision: { granted: true, waitMs: at - now }, tat: next };
}

/** Stored back-off of one destination: level and the end of its pause (Unix ms). */
export interface StoredBackoff {
  level: number;
  until: number;
}

/** The level at `now`: kept while paused, then one less per `decayMs` without pushback. */
export function effectiveBackoff(
  stored: StoredBackoff | undefined,
  now: number,
  p: BackoffPolicy,
): BackoffState {
  if (!stored) return { level: 0, pausedForMs: 0 };
  if (now < stored.until) return { level: stored.level, pausedForMs: stored.until - now };
  const decayed = Math.floor((now - stored.until) / Math.max(1, p.decayMs));
  return { level: Math.max(0, stored.level - decayed), pausedForMs: 0 };
}

/** The stored back-off after a pushback at `now` (unchanged while paused). */
export function pushback(stored: StoredBackoff | undefined, now: number, p: BackoffPolicy): StoredBackoff {
  if (stored && now < stored.until) return stored;
  const level = Math.min(MAX_BACKOFF_LEVEL, effectiveBackoff(stored, now, p).level + 1);
  const pause = Math.min(p.maxMs, p.baseMs * 2 ** (level - 1));
  return { level, until: now + pause };
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
