/**
 * ScaiKey's signing keys (the JWKS at SCAIKEY_JWKS_URL, docs/configuration.md#scaikey), held in
 * isolate memory so verifying a JWT costs no round trip.
 *
 * Invariants:
 *  - A fetched key set is used for at most JWKS_MAX_AGE_MS, then fetched again: a key the issuer
 *    removed stops verifying within that window.
 *  - A token whose `kid` is not in the set refetches at once (the issuer rotated), but fetches for
 *    one URL start at most once per JWKS_REFETCH_INTERVAL_MS: a flood of tokens with made-up kids
 *    costs the issuer one request per interval and isolate, and is answered from memory meanwhile.
 *  - Concurrent fetches of one URL share one request; a failed fetch is never cached, and a set
 *    that was good keeps serving (until the next allowed attempt) when a refresh fails.
 *  - The answer must be a 200 JSON Web Key Set of at most JWKS_MAX_BYTES; redirects are not
 *    followed (the URL is the operator's, checked to be https or loopback in edge/src/env.ts).
 */
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWSHeaderParameters } from "jose";
import { AppError } from "../../../shared/errors.ts";
import type { Clock } from "../lib/isolate-cache.ts";

export const JWKS_MAX_AGE_MS = 10 * 60_000;
export const JWKS_REFETCH_INTERVAL_MS = 30_000;
export const JWKS_FETCH_TIMEOUT_MS = 5_000;
export const JWKS_MAX_BYTES = 64 * 1024;
/** Key sets kept at once (one per configured URL; more only while a setting changes). */
const MAX_URLS = 4;

export type JwksFetcher = (url: string, init: RequestInit) => Promise<Response>;
type Resolver = ReturnType<typeof createLocalJWKSet>;

interface KeySet {
  resolve: Resolver;
  fetchedAt: number;
}

export class JwksCache {
  private readonly sets = new Map<string, KeySet>();
  private readonly attemptedAt = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<KeySet>>();

  /** Replaceable so tests can step through the intervals and serve a local issuer's JWKS. */
  constructor(
    public clock: Clock = Date.now,
    public fetcher: JwksFetcher = (url, init) => fetch(url, init),
  ) {}

  /** The public key the token's header names; throws jose's JWKSNoMatchingKey if the issuer has none. */
  async keyFor(url: string, header: JWSHeaderParameters): Promise<CryptoKey> {
    const now = this.clock();
    let set = this.sets.get(url);
    if (!set || now - set.fetchedAt >= JWKS_MAX_AGE_MS || now < set.fetchedAt) {
      set = await this.refresh(url, set);
    }
    try {
      return (await set.resolve(header)) as CryptoKey;
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || !this.mayFetch(url)) throw err;
      const fresh = await this.refresh(url, set);
      return (await fresh.resolve(header)) as CryptoKey;
    }
  }

  clear(): void {
    this.sets.clear();
    this.attemptedAt.clear();
    this.inflight.clear();
  }

  private mayFetch(url: string): boolean {
    const last = this.attemptedAt.get(url);
    const now = this.clock();
    return last === undefined || now - last >= JWKS_REFETCH_INTERVAL_MS || now < last;
  }

  private async refresh(url: string, previous: KeySet | undefined): Promise<KeySet> {
    const pending = this.inflight.get(url);
    if (pending) return pending;
    if (!this.mayFetch(url)) {
      if (previous) return previous;
      throw new AppError("unavailable", "The identity provider's signing keys could not be fetched");
    }
    this.attemptedAt.set(url, this.clock());
    const promise = this.load(url);
    this.inflight.set(url, promise);
    try {
      const set = await promise;
      this.sets.delete(url);
      this.sets.set(url, set);
      while (this.sets.size > MAX_URLS) this.sets.delete(this.sets.keys().next().value!);
      return set;
    } catch (err) {
      if (previous) return previous;
      throw err;
    } finally {
      if (this.inflight.get(url) === promise) this.inflight.delete(url);
    }
  }

  private async load(url: string): Promise<KeySet> {
    const fetchedAt = this.clock();
    let text: string;
    try {
      const res = await this.fetcher(url, {
        headers: { accept: "application/json" },
        redirect: "manual",
        signal: AbortSignal.timeout(JWKS_FETCH_TIMEOUT_MS),
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      text = await res.text();
    } catch (err) {
      throw new AppError("unavailable", "The identity provider's signing keys could not be fetched", {
        cause: err,
      });
    }
    if (text.length > JWKS_MAX_BYTES) {
      throw new AppError("unavailable", "The identity provider's key set is larger than allowed");
    }
    try {
      return { resolve: createLocalJWKSet(JSON.parse(text) as JSONWebKeySet), fetchedAt };
    } catch (err) {
      throw new AppError("unavailable", "The identity provider's key set is not a JSON Web Key Set", {
        cause: err,
      });
    }
  }
}

/** This isolate's key sets. */
export const jwksCache = new JwksCache();
