/**
 * What the accept path reads on every request and what rarely changes, held in isolate memory
 * (docs/configuration.md, AUTH_CACHE_TTL_MS; docs/api/sendgrid.md#authentication): API key hash →
 * principal, and (tenant, sender domain) → the domain row `requireVerifiedDomains` and
 * `buildOutboxEntry` need (verified, active, DKIM selector and sealed private key).
 *
 * Invariants:
 *  - Staleness: a change made through ANOTHER isolate (a key revoked, a tenant suspended, a domain
 *    un-verified) is seen here within AUTH_CACHE_TTL_MS (default 10 s) plus the read replica's lag.
 *    A change made through THIS isolate's admin routes calls `forget*` and is seen at once: the
 *    entry is dropped and, for the TTL that follows, misses read the primary (a replica may not have
 *    the change yet, and re-caching its older answer would undo the invalidation).
 *  - A refusal is never decided on a replica's word: an unknown, revoked or expired key, a suspended
 *    tenant, and a missing or unverified domain are read again on the primary before they are
 *    cached or answered. So a key created or a domain verified a moment ago elsewhere is never
 *    refused because a replica lagged, and negative entries are as fresh as the primary.
 *  - A refused domain is re-read on the primary at most once per REFUSAL_RECHECK_MS per
 *    (tenant, domain) in this isolate: a domain verified through another isolate starts working
 *    here within that second, while a client hammering with an unverified domain costs at most one
 *    D1 read per second and isolate, not one per request.
 *  - Bounded memory: MAX_KEYS principals + MAX_UNKNOWN_KEYS negative entries, MAX_DOMAINS domain
 *    rows + MAX_UNKNOWN_DOMAINS negative ones, least recently used evicted first (lib/isolate-cache.ts).
 *  - `last_used_at` never costs the request a round trip: it is written behind the response
 *    (waitUntil), at most once per TOUCH_INTERVAL_MS per key and isolate.
 *  - AUTH_CACHE_TTL_MS = 0 turns the cache off (every request reads D1, as before this cache).
 *
 * Reads that miss use the D1 Sessions API (developers.cloudflare.com/d1/best-practices/read-replication/):
 *  - `first-unconstrained` for the first look: the nearest replica answers, which is the point (a
 *    far edge location then pays a short round trip, not one to the primary's region). What a
 *    replica says is at most its replication lag old, which only matters for answers that ADMIT a
 *    request (a key still valid, a domain still verified): those are served for the TTL anyway, so
 *    the lag adds to the same staleness window rather than opening a new kind of hole.
 *  - `first-primary` to confirm a refusal, and for every miss during the TTL after this isolate made
 *    a change, as explained above. Without read replication enabled on the database both go to the
 *    primary, and all of the above still holds.
 */
import type { DomainRow } from "../db/domains.ts";
import { tenantDomains } from "../db/domains.ts";
import { findApiKeyByHash } from "../db/api-keys.ts";
import { createDb, type Db } from "../db/client.ts";
import { IsolateCache, MISSING, type Clock } from "../lib/isolate-cache.ts";

export const DEFAULT_AUTH_CACHE_TTL_MS = 10_000;
export const MAX_KEYS = 10_000;
export const MAX_UNKNOWN_KEYS = 2_000;
export const MAX_DOMAINS = 10_000;
export const MAX_UNKNOWN_DOMAINS = 2_000;
export const REFUSAL_RECHECK_MS = 1_000;
/** Only write last_used_at when it is older than this, so hot keys don't turn every request into a write. */
export const TOUCH_INTERVAL_MS = 60_000;

/** What authentication needs to know about a key; expiry is checked on every use against the clock. */
export interface KeyRecord {
  keyId: string;
  tenantId: string;
  environment: "live" | "test";
  scopes: readonly string[];
  tenantStatus: "active" | "suspended";
  revokedAt: number | null;
  expiresAt: number | null;
  /** last_used_at as D1 had it, or as this isolate last wrote it. Mutable: the write-behind updates it. */
  lastUsedAt: number | null;
}

type Constraint = "first-unconstrained" | "first-primary";

/** A drizzle handle over one D1 session. Drizzle only calls prepare() and batch(), which a session has. */
function sessionDb(d1: D1Database, constraint: Constraint): Db {
  return createDb(d1.withSession(constraint) as unknown as D1Database);
}

const refuses = (r: KeyRecord | typeof MISSING, now: number): boolean =>
  r === MISSING ||
  r.revokedAt !== null ||
  (r.expiresAt !== null && r.expiresAt <= now) ||
  r.tenantStatus !== "active";

const domainKey = (tenantId: string, domain: string) => `${tenantId}\u0000${domain}`;

export class CatalogCache {
  /** The TTL applied to reads made without an explicit one (set from config on every request). */
  ttlMs = DEFAULT_AUTH_CACHE_TTL_MS;
  private primaryReadsUntil = Number.NEGATIVE_INFINITY;
  private readonly keys: IsolateCache<string, KeyRecord>;
  private readonly domains: IsolateCache<string, DomainRow>;
  private readonly refusalCheckedAt = new Map<string, number>();

  /** Replaceable so tests can step through a TTL without waiting it out. */
  constructor(public clock: Clock = Date.now) {
    this.keys = new IsolateCache(MAX_KEYS, MAX_UNKNOWN_KEYS, () => this.clock());
    this.domains = new IsolateCache(MAX_DOMAINS, MAX_UNKNOWN_DOMAINS, () => this.clock());
  }

  now(): number {
    return this.clock();
  }

  /** The key with this SHA-256 (hex), or undefined if no such key exists. */
  async keyByHash(d1: D1Database, keyHash: string, ttlMs = this.ttlMs): Promise<KeyRecord | undefined> {
    const found = await this.keys.get(keyHash, ttlMs, async () => {
      const first = await readKey(sessionDb(d1, this.firstConstraint()), keyHash);
      if (!refuses(first, this.clock())) return first;
      return readKey(sessionDb(d1, "first-primary"), keyHash);
    });
    return found === MISSING ? undefined : found;
  }

  /**
   * The tenant's domain rows among `names` (same contract as db/domains.ts findDomainsByNames).
   * Every name costs at most one D1 read per TTL; all misses of one call share one query.
   */
  async domainsByNames(
    d1: D1Database,
    tenantId: string,
    names: string[],
    ttlMs = this.ttlMs,
  ): Promise<DomainRow[]> {
    const keyed = names.map((n) => domainKey(tenantId, n));
    const load = (constraint: Constraint) => async (missing: string[]) => {
      const wanted = missing.map((k) => k.slice(tenantId.length + 1));
      const rows = await tenantDomains(sessionDb(d1, constraint), tenantId).findDomainsByNames(wanted);
      return new Map(rows.map((r) => [domainKey(tenantId, r.domain), r]));
    };
    let got = await this.domains.getMany(keyed, ttlMs, load(this.firstConstraint()));
    const now = this.clock();
    const refused = keyed.filter((k) => {
      const row = got.get(k);
      return row === undefined || row === MISSING || !row.verified || !row.isActive;
    });
    const recheck = refused.filter(
      (k) => now - (this.refusalCheckedAt.get(k) ?? -Infinity) >= REFUSAL_RECHECK_MS,
    );
    if (recheck.length > 0) {
      for (const k of recheck) {
        this.refusalCheckedAt.delete(k);
        this.refusalCheckedAt.set(k, now);
        this.domains.delete(k);
      }
      while (this.refusalCheckedAt.size > MAX_UNKNOWN_DOMAINS) {
        this.refusalCheckedAt.delete(this.refusalCheckedAt.keys().next().value as string);
      }
      const fresh = await this.domains.getMany(recheck, ttlMs, load("first-primary"));
      got = new Map([...got, ...fresh]);
    }
    const out: DomainRow[] = [];
    for (const v of got.values()) if (v !== MISSING) out.push(v);
    return out;
  }

  /** A key was created or changed through this isolate. */
  forgetKey(keyHash: string): void {
    this.keys.delete(keyHash);
    this.readPrimaryForAWhile();
  }

  /** Every key (e.g. a tenant's status changed: it is part of each of its keys' records). */
  forgetAllKeys(): void {
    this.keys.clear();
    this.readPrimaryForAWhile();
  }

  /** A sender domain was added, verified, un-verified or changed through this isolate. */
  forgetDomain(tenantId: string, domain: string): void {
    this.domains.delete(domainKey(tenantId, domain));
    this.refusalCheckedAt.delete(domainKey(tenantId, domain));
    this.readPrimaryForAWhile();
  }

  /** Every domain row (e.g. a re-seal replaced sealed DKIM keys across tenants). */
  forgetAllDomains(): void {
    this.domains.clear();
    this.refusalCheckedAt.clear();
    this.readPrimaryForAWhile();
  }

  /**
   * Whether last_used_at is due for a write now; if so, records it as written (the caller writes
   * it behind the response), so concurrent requests of one key write once.
   */
  touchDue(record: KeyRecord, now = this.clock()): boolean {
    if (record.lastUsedAt !== null && now - record.lastUsedAt <= TOUCH_INTERVAL_MS) return false;
    record.lastUsedAt = now;
    return true;
  }

  /** Forgets everything and reads the replicas again (tests). */
  clear(): void {
    this.keys.clear();
    this.domains.clear();
    this.refusalCheckedAt.clear();
    this.primaryReadsUntil = Number.NEGATIVE_INFINITY;
  }

  size() {
    return { keys: this.keys.size, domains: this.domains.size };
  }

  private firstConstraint(): Constraint {
    return this.clock() < this.primaryReadsUntil ? "first-primary" : "first-unconstrained";
  }

  /**
   * After a change made here, misses read the primary for at least one TTL (whatever a replica
   * cached would otherwise be served that long) and at least 10 s, which covers a replica's usual
   * lag even when the TTL is set very short.
   */
  private readPrimaryForAWhile(): void {
    this.primaryReadsUntil = this.clock() + Math.max(this.ttlMs, DEFAULT_AUTH_CACHE_TTL_MS);
  }
}

async function readKey(db: Db, keyHash: string): Promise<KeyRecord | typeof MISSING> {
  const found = await findApiKeyByHash(db, keyHash);
  if (!found) return MISSING;
  return {
    keyId: found.key.id,
    tenantId: found.key.tenantId,
    environment: found.key.environment,
    scopes: found.key.scopes,
    tenantStatus: found.tenantStatus,
    revokedAt: found.key.revokedAt,
    expiresAt: found.key.expiresAt,
    lastUsedAt: found.key.lastUsedAt,
  };
}

/** This isolate's cache: module state lives as long as the isolate (developers.cloudflare.com/workers/reference/how-workers-works/). */
export const catalogCache = new CatalogCache();

/**
 * The tenant's domain rows among `names`, through this isolate's cache. Takes the drizzle handle the
 * send path already has; the raw binding under it is what opens D1 sessions.
 */
export function cachedDomainsByNames(db: Db, tenantId: string, names: string[]): Promise<DomainRow[]> {
  return catalogCache.domainsByNames(db.$client, tenantId, names);
}
