/**
 * RateLimiter: one Durable Object per limited key (e.g. "mail.send:<tenant id>"), so every edge
 * location sees the same bucket. A token bucket holding one window's worth of requests, refilled
 * continuously. State is kept in memory on purpose: the windows are seconds long, and writing
 * storage on every request would cost more than the request. If the object is evicted the bucket
 * starts full again, which errs towards letting traffic through.
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

export class RateLimiter extends DurableObject {
  private tokens = 0;
  private updatedAt = 0;
  private limit = 0;

  /** Takes `cost` tokens from a bucket of `limit` tokens per `windowMs`. */
  take(limit: number, windowMs: number, cost = 1, at = Date.now()): TakeResult {
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
    const allowed = this.tokens >= cost;
    if (allowed) this.tokens -= cost;
    const resetAt = Math.ceil((now + (limit - this.tokens) / rate) / 1000);
    const retryAfter = allowed ? 0 : Math.max(1, Math.ceil((cost - this.tokens) / rate / 1000));
    return { allowed, limit, remaining: Math.floor(this.tokens), resetAt, retryAfter };
  }
}
