/**
 * RateLimiter: one Durable Object per limited key (e.g. "mail.send:<tenant id>"), so every edge
 * location sees the same bucket (docs/api/sendgrid.md#rate-limits). A token bucket holding one
 * window's worth of requests (`limit`), refilled continuously at `limit` per `windowMs`. State is kept
 * in memory on purpose: the windows are seconds long, and writing storage on every call would cost
 * more than the call. If the object is evicted the bucket starts full again, which errs towards
 * letting traffic through.
 *
 * Leases (`LeasedBucket` below): an isolate does not ask the object about every request. It leases a
 * block of tokens (`lease`), spends them locally, renews before it runs out (in the background, so a
 * warm request never waits on the object) and gives back what it did not spend when its lease
 * expires (`giveBack`). The object stays the authority: a token is spent only after the object handed
 * it out, and every token is handed out once.
 *
 * The bound. For any interval I = [t, t + T]:
 *
 *     admitted(I) ≤ limit + limit · T / windowMs + outstanding(t)
 *
 * where `limit + limit · T / windowMs` is what the bucket alone admits in I (a full bucket plus
 * its refill) and outstanding(t) is the sum, over all isolates, of tokens leased and neither spent
 * nor given back at t. Why: a request admitted in I spends a token that was either outstanding at t
 * or leased during I; the tokens leased during I, minus those given back during I, are at most what
 * the bucket held at t plus its refill (give-backs are capped at `limit`, so they never mint
 * tokens); and no token is spent twice. An isolate asks for what its waiting requests need (spent
 * at once) plus at most `maxLease(limit)` (a tenth of the limit) held in advance, sized to its own
 * recent rate, so outstanding(t) is at most isolates × maxLease and in practice about a quarter
 * second of the key's traffic. Tokens held by an isolate that goes away are
 * never returned: that only makes the limit stricter until the bucket refills.
 * test/edge/rate-limit.leases.test.ts checks the bound under a 10× burst from concurrent callers.
 */
import { DurableObject } from "cloudflare:workers";

export interface TakeResult {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Unix seconds at which the bucket is full again. */
  resetAt: number;
  /** Seconds to wait before one request fits (0 when allowed). */
  retryAfter: number;
}

export interface LeaseGrant {
  /** Tokens handed to the caller (0 … wanted); 0 means the bucket is empty. */
  granted: number;
  limit: number;
  /** Whole tokens left in the bucket after this grant. */
  remaining: number;
  /** Unix seconds at which the bucket is full again. */
  resetAt: number;
  /** Seconds until one token is back, rounded up (0 when granted > 0). */
  retryAfter: number;
  /** The same in milliseconds, unrounded, so a caller can wait exactly that long before asking again. */
  retryAfterMs: number;
}

export class RateLimiter extends DurableObject {
  private tokens = 0;
  private updatedAt = 0;
  private limit = 0;

  /** Takes `cost` tokens from a bucket of `limit` tokens per `windowMs`. */
  take(limit: number, windowMs: number, cost = 1, at = Date.now()): TakeResult {
    const now = this.refill(limit, windowMs, at);
    const rate = limit / windowMs;
    const allowed = this.tokens >= cost;
    if (allowed) this.tokens -= cost;
    const resetAt = Math.ceil((now + (limit - this.tokens) / rate) / 1000);
    const retryAfter = allowed ? 0 : Math.max(1, Math.ceil((cost - this.tokens) / rate / 1000));
    return { allowed, limit, remaining: Math.floor(this.tokens), resetAt, retryAfter };
  }

  /** Hands out up to `want` whole tokens at once (see the header: leases). */
  lease(limit: number, windowMs: number, want: number, at = Date.now()): LeaseGrant {
    const now = this.refill(limit, windowMs, at);
    const rate = limit / windowMs;
    const granted = Math.max(0, Math.min(Math.floor(want), Math.floor(this.tokens)));
    this.tokens -= granted;
    const resetAt = Math.ceil((now + (limit - this.tokens) / rate) / 1000);
    const retryAfterMs = granted > 0 ? 0 : (1 - this.tokens) / rate;
    return {
      granted,
      limit,
      remaining: Math.floor(this.tokens),
      resetAt,
      retryAfter: granted > 0 ? 0 : Math.max(1, Math.ceil(retryAfterMs / 1000)),
      retryAfterMs,
    };
  }

  /** Takes back tokens a lease did not spend; never fills the bucket beyond `limit`. */
  giveBack(limit: number, windowMs: number, tokens: number, at = Date.now()): void {
    this.refill(limit, windowMs, at);
    if (this.limit !== limit) return;
    this.tokens = Math.min(limit, this.tokens + Math.max(0, Math.floor(tokens)));
  }

  private refill(limit: number, windowMs: number, at: number): number {
    const rate = limit / windowMs;
    // Time never runs backwards for a bucket (isolates' clocks may differ slightly): no negative refill.
    const now = Math.max(at, this.updatedAt);
    if (this.limit !== limit) {
      // First use, or the operator changed the limit: start from a full bucket of the new size.
      this.limit = limit;
      this.tokens = limit;
      this.updatedAt = now;
    }
    this.tokens = Math.min(limit, this.tokens + (now - this.updatedAt) * rate);
    this.updatedAt = now;
    return now;
  }
}

/** What a LeasedBucket needs from the object: its RPC stub, or anything with the same two methods. */
export interface LeaseAuthority {
  lease(limit: number, windowMs: number, want: number, at?: number): Promise<LeaseGrant>;
  giveBack(limit: number, windowMs: number, tokens: number, at?: number): Promise<void>;
}

/** Background work that must outlive the request (ExecutionContext.waitUntil). */
export type Background = (work: Promise<unknown>) => void;

/** A lease lives this long; tokens still unspent then go back to the object. */
export const LEASE_MS = 1000;
/** A lease covers about this much of the isolate's own recent traffic. */
export const LEASE_HORIZON_MS = 250;
/** A request that keeps losing the race for fresh tokens gives up (429) after this many renewals. */
const MAX_RENEWALS_PER_REQUEST = 32;
/** At most this share of the limit is held in advance by one isolate for one key. */
export const maxLease = (limit: number): number => Math.max(1, Math.floor(limit / 10));

/**
 * One isolate's side of a bucket: the tokens it holds and spends without asking the object.
 * Invariants: `tokens` is what was granted and neither spent nor given back (the isolate's share of
 * outstanding(t) in the bound above); tokens are spent only before `expiresAt`; one renewal at a
 * time (concurrent requests that find no token wait for the same one).
 */
export class LeasedBucket {
  private tokens = 0;
  private expiresAt = 0;
  private limit = 0;
  private last: LeaseGrant | null = null;
  private refusedUntil = 0;
  private renewing: Promise<number> | null = null;
  private waiting = 0;
  /** Admissions in the current and previous 1-second slots: the isolate's recent rate. */
  private slotStart = 0;
  private slotCount = 0;
  private prevSlotCount = 0;

  /**
   * `testClock` (tests only) replaces this isolate's clock and is also handed to the object as the
   * time of each call; without it the object reads its own clock, as in production.
   */
  constructor(private readonly testClock?: () => number) {}

  private clock(): number {
    return this.testClock ? this.testClock() : Date.now();
  }

  private at(now: number): number | undefined {
    return this.testClock ? now : undefined;
  }

  /** Tokens this isolate holds for the key (its part of the outstanding leases). */
  get outstanding(): number {
    return this.tokens;
  }

  async take(
    limit: number,
    windowMs: number,
    authority: LeaseAuthority,
    background: Background,
  ): Promise<TakeResult> {
    if (limit !== this.limit) {
      // The object starts a new bucket for a new limit; what this isolate held belongs to the old one.
      this.limit = limit;
      this.tokens = 0;
      this.last = null;
      this.refusedUntil = 0;
    }
    // Tokens a renewal brought may be taken by the other requests that waited for it; then the
    // next renewal asks for all who still wait. Only a renewal that brought none (the object's "no")
    // refuses, so a burst on one isolate is admitted up to what the bucket holds, not starved.
    for (let attempt = 0; attempt < MAX_RENEWALS_PER_REQUEST; attempt++) {
      const now = this.clock();
      this.expire(now, limit, windowMs, authority, background);
      if (this.tokens >= 1) {
        this.tokens -= 1;
        this.count(now);
        this.prefetch(now, limit, windowMs, authority, background);
        return this.answer(true, now);
      }
      if (now < this.refusedUntil) return this.answer(false, now);
      this.waiting += 1;
      let granted: number;
      try {
        granted = await this.renew(limit, windowMs, authority);
      } finally {
        this.waiting -= 1;
      }
      if (granted === 0) return this.answer(false, this.clock());
    }
    return this.answer(false, this.clock());
  }

  /**
   * Tokens wanted from the next lease: what the requests waiting now need, plus ~LEASE_HORIZON_MS
   * of this isolate's recent traffic held in advance (at most maxLease). Waiting requests spend
   * theirs at once, so what stays outstanding is the part held in advance.
   */
  private want(now: number, limit: number): number {
    const elapsed = Math.min(1000, Math.max(0, now - this.slotStart));
    const perMs = (this.prevSlotCount * (1 - elapsed / 1000) + this.slotCount) / 1000;
    const ahead = Math.min(maxLease(limit), Math.ceil(perMs * LEASE_HORIZON_MS));
    return Math.min(limit, Math.max(1, ahead + this.waiting));
  }

  private count(now: number): void {
    if (now - this.slotStart >= 1000) {
      this.prevSlotCount = now - this.slotStart >= 2000 ? 0 : this.slotCount;
      this.slotCount = 0;
      this.slotStart = now;
    }
    this.slotCount += 1;
  }

  /**
   * Renews in the background once half the expected block is spent or the lease nears its end, so a
   * steady client never finds the isolate empty. Only for an isolate with real traffic (a block of 2 or more): a lone request
   * leases one token and is done, and nothing is held on its behalf.
   */
  private prefetch(
    now: number,
    limit: number,
    windowMs: number,
    authority: LeaseAuthority,
    background: Background,
  ): void {
    const block = this.want(now, limit) - this.waiting;
    if (block < 2 || this.renewing || now < this.refusedUntil) return;
    // Renew when half the block is spent, or when the lease is in its last quarter (a renewal
    // extends it), so steady traffic never meets an expired lease and waits for a new one.
    const expiring = now >= this.expiresAt - LEASE_MS / 4;
    if (this.tokens > block / 2 && !expiring) return;
    background(this.renew(limit, windowMs, authority).catch(() => undefined));
  }

  /** Asks the object for a block (one request at a time); resolves to how many tokens it granted. */
  private renew(limit: number, windowMs: number, authority: LeaseAuthority): Promise<number> {
    if (this.renewing) return this.renewing;
    const startedAt = this.clock();
    const want = this.want(startedAt, limit);
    const renewal: Promise<number> = Promise.resolve()
      .then(() => authority.lease(limit, windowMs, want, this.at(startedAt)))
      .then((grant) => {
        if (grant.limit !== this.limit) return 0;
        this.tokens += grant.granted;
        this.last = grant;
        // Counted from when the lease was asked for: the isolate never holds a lease longer than the
        // object could assume.
        if (grant.granted > 0) this.expiresAt = startedAt + Math.min(LEASE_MS, windowMs);
        else this.refusedUntil = startedAt + grant.retryAfterMs;
        return grant.granted;
      })
      .finally(() => {
        if (this.renewing === renewal) this.renewing = null;
      });
    this.renewing = renewal;
    return this.renewing;
  }

  private expire(
    now: number,
    limit: number,
    windowMs: number,
    authority: LeaseAuthority,
    background: Background,
  ): void {
    if (this.tokens <= 0 || now < this.expiresAt) return;
    const unspent = Math.floor(this.tokens);
    this.tokens = 0;
    background(authority.giveBack(limit, windowMs, unspent, this.at(now)).catch(() => undefined));
  }

  private answer(allowed: boolean, now: number): TakeResult {
    const last = this.last;
    const limit = last?.limit ?? this.limit;
    const retryAfter = allowed
      ? 0
      : Math.max(1, Math.ceil(Math.max(0, this.refusedUntil - now) / 1000), last?.retryAfter ?? 1);
    return {
      allowed,
      limit,
      // What the object had left after the last grant, plus what this isolate still holds.
      remaining: Math.max(0, (last?.remaining ?? limit) + Math.floor(this.tokens)),
      resetAt: last?.resetAt ?? Math.ceil(now / 1000),
      retryAfter,
    };
  }
}
