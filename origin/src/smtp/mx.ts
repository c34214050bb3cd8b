/**
 * Where to deliver a domain's mail, per RFC 5321 §5.1:
 *  - MX records sorted by preference, equal preferences shuffled so load spreads;
 *  - no MX records at all → the domain itself is the one, implicit MX (its A/AAAA records);
 *  - a null MX (RFC 7505: one record, exchange ".") → the domain takes no mail, permanent failure;
 *  - every MX name resolved to its addresses, IPv4 first (IPv6 sending is more often rejected on
 *    reputation and reverse-DNS grounds);
 *  - addresses that are not public (loopback, RFC 1918, link-local, CGNAT, cloud metadata, …; see
 *    address-policy.ts) are dropped unless `allowPrivate` is set (the operator's ALLOW_PRIVATE_MX,
 *    docs/configuration.md). A host left without addresses is skipped; when no host keeps one, the
 *    look-up fails with MX_ERROR_CODES.nonPublic, which bounces (hard, RFC 3463 5.4.4 "unable to
 *    route"): the domain's own published DNS sends its mail where we will never connect, which is
 *    a misconfiguration (or an attempt to reach the operator's network) that retrying for days
 *    cannot fix, like NXDOMAIN or a null MX. If some look-up also failed temporarily, the answer
 *    may be incomplete and the recipients are deferred instead.
 *
 * Results are cached. Node's resolveMx does not expose TTLs, so an entry lives as long as the
 * shortest A/AAAA TTL in it, capped by `maxCacheTtlMs`. Failures are never cached: the edge's
 * retry schedule already spaces out the next look-up.
 */
import { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import { domainToASCII } from "node:url";
import { MX_ERROR_CODES } from "../delivery/classify.ts";
import { nonPublicReason } from "./address-policy.ts";

export interface MxHost {
  /** The MX name (or the domain itself for an implicit MX); TLS SNI and logs use it. */
  exchange: string;
  preference: number;
  /** IP addresses to try in order. */
  addresses: string[];
}

export type MxErrorCode = (typeof MX_ERROR_CODES)[keyof typeof MX_ERROR_CODES];

export class MxResolutionError extends Error {
  override name = "MxResolutionError";
  constructor(
    readonly code: MxErrorCode,
    message: string,
    readonly domain: string,
  ) {
    super(message);
  }
  get permanent(): boolean {
    return this.code !== MX_ERROR_CODES.temporary;
  }
}

export interface MxResolverOptions {
  /** DNS servers as "ip" or "ip:port" (tests use a loopback server); the system's when absent. */
  servers?: string[];
  /** Per-query timeout; c-ares retries `tries` times before giving up. */
  timeoutMs?: number;
  tries?: number;
  /** Upper bound for how long a lookup is reused, whatever the TTLs say. 0 disables caching. */
  maxCacheTtlMs?: number;
  /**
   * Keep addresses that are not public (loopback, private, link-local, metadata…). Off by default:
   * only for operators whose recipients really are on their own network, and for tests.
   */
  allowPrivate?: boolean;
  /** Injected so tests can pin the shuffle and the clock. */
  random?: () => number;
  now?: () => number;
}

export interface MxResolver {
  resolve(domain: string): Promise<MxHost[]>;
  clearCache(): void;
  /** Cancels look-ups in flight (they fail as temporary) and empties the cache. */
  close(): void;
}

const MAX_CACHE_ENTRIES = 10_000;

interface DnsError {
  code?: string;
}
const dnsCode = (err: unknown): string | undefined =>
  typeof err === "object" && err !== null ? (err as DnsError).code : undefined;
/** Node's c-ares codes for "the name exists but has no such record" and "the name does not exist". */
const isNoData = (err: unknown) => dnsCode(err) === "ENODATA";
const isNxDomain = (err: unknown) => dnsCode(err) === "ENOTFOUND";

interface CacheEntry {
  hosts: MxHost[];
  expiresAt: number;
}

interface AddressLookup {
  addresses: string[];
  ttlSeconds: number;
  /** Set when a query failed for a reason other than "no such name/record". */
  temporary: boolean;
}

function normalizeDomain(domain: string): string {
  const trimmed = domain.trim().replace(/\.$/, "").toLowerCase();
  // IDNs go on the wire as A-labels; domainToASCII returns "" for names that cannot be one.
  return domainToASCII(trimmed) || trimmed;
}

function shuffleEqualPreferences(hosts: MxHost[], random: () => number): MxHost[] {
  const sorted = [...hosts].sort((a, b) => a.preference - b.preference);
  let start = 0;
  while (start < sorted.length) {
    let end = start;
    while (end + 1 < sorted.length && sorted[end + 1]?.preference === sorted[start]?.preference) end++;
    for (let i = end; i > start; i--) {
      // Fisher-Yates within [start, end]
      const j = start + Math.floor(random() * (i - start + 1));
      [sorted[i], sorted[j]] = [sorted[j] as MxHost, sorted[i] as MxHost];
    }
    start = end + 1;
  }
  return sorted;
}

export function createMxResolver(options: MxResolverOptions = {}): MxResolver {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 5_000, tries: options.tries ?? 2 });
  if (options.servers?.length) resolver.setServers(options.servers);
  const maxCacheTtlMs = options.maxCacheTtlMs ?? 300_000;
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const cache = new Map<string, CacheEntry>();
  const allowPrivate = options.allowPrivate ?? false;

  /** Splits addresses into those we may connect to and those refused, with the reason. */
  function screen(name: string, addresses: string[], refused: string[]): string[] {
    if (allowPrivate) return addresses;
    return addresses.filter((address) => {
      const reason = nonPublicReason(address);
      if (reason !== null) refused.push(`${name} → ${address} (${reason})`);
      return reason === null;
    });
  }
  const refusedError = (domain: string, refused: string[]) =>
    new MxResolutionError(
      MX_ERROR_CODES.nonPublic,
      `no public address to deliver mail for ${domain} to: ${refused.join(", ")}`,
      domain,
    );

  async function lookupAddresses(name: string): Promise<AddressLookup> {
    if (isIP(name)) return { addresses: [name], ttlSeconds: Infinity, temporary: false };
    const [v4, v6] = await Promise.allSettled([
      resolver.resolve4(name, { ttl: true }),
      resolver.resolve6(name, { ttl: true }),
    ]);
    const result: AddressLookup = { addresses: [], ttlSeconds: Infinity, temporary: false };
    for (const settled of [v4, v6]) {
      if (settled.status === "fulfilled") {
        for (const record of settled.value) {
          result.addresses.push(record.address);
          result.ttlSeconds = Math.min(result.ttlSeconds, record.ttl);
        }
      } else if (!isNoData(settled.reason) && !isNxDomain(settled.reason)) {
        result.temporary = true;
      }
    }
    return result;
  }

  async function lookup(domain: string): Promise<CacheEntry> {
    let records: { exchange: string; priority: number }[];
    try {
      records = await resolver.resolveMx(domain);
    } catch (err) {
      if (isNxDomain(err))
        throw new MxResolutionError(
          MX_ERROR_CODES.nxDomain,
          `domain ${domain} does not exist (NXDOMAIN)`,
          domain,
        );
      if (!isNoData(err)) {
        throw new MxResolutionError(
          MX_ERROR_CODES.temporary,
          `MX lookup for ${domain} failed: ${dnsCode(err) ?? String(err)}`,
          domain,
        );
      }
      records = [];
    }

    // RFC 7505 §3: a single MX with an empty exchange (the root, ".") means "no mail here".
    // c-ares reports the root as "" and some resolvers as ".".
    if (records.some((r) => r.exchange === "" || r.exchange === ".")) {
      throw new MxResolutionError(
        MX_ERROR_CODES.nullMx,
        `domain ${domain} does not accept mail (null MX, RFC 7505)`,
        domain,
      );
    }

    if (records.length === 0) {
      // RFC 5321 §5.1: no MX records → the domain is its own MX with preference 0.
      const implicit = await lookupAddresses(domain);
      const refused: string[] = [];
      const addresses = screen(domain, implicit.addresses, refused);
      if (addresses.length === 0 && refused.length > 0) {
        if (implicit.temporary) {
          throw new MxResolutionError(
            MX_ERROR_CODES.temporary,
            `address lookup for ${domain} failed in part, and ${refused.join(", ")} is refused`,
            domain,
          );
        }
        throw refusedError(domain, refused);
      }
      if (implicit.addresses.length === 0) {
        if (implicit.temporary) {
          throw new MxResolutionError(
            MX_ERROR_CODES.temporary,
            `address lookup for ${domain} failed`,
            domain,
          );
        }
        throw new MxResolutionError(
          MX_ERROR_CODES.noAddress,
          `domain ${domain} has no MX, A or AAAA records`,
          domain,
        );
      }
      return {
        hosts: [{ exchange: domain, preference: 0, addresses }],
        expiresAt: now() + Math.min(implicit.ttlSeconds * 1_000, maxCacheTtlMs),
      };
    }

    const lookups = await Promise.all(records.map((r) => lookupAddresses(r.exchange.replace(/\.$/, ""))));
    const hosts: MxHost[] = [];
    const refused: string[] = [];
    let ttlSeconds = Infinity;
    records.forEach((record, i) => {
      const found = lookups[i];
      const exchange = record.exchange.replace(/\.$/, "").toLowerCase();
      const addresses = found ? screen(exchange, found.addresses, refused) : [];
      if (addresses.length === 0) return; // an MX name without (usable) addresses is skipped, the next one may work
      hosts.push({ exchange, preference: record.priority, addresses });
      ttlSeconds = Math.min(ttlSeconds, found?.ttlSeconds ?? Infinity);
    });
    if (hosts.length === 0 && refused.length > 0 && !lookups.some((l) => l.temporary)) {
      throw refusedError(domain, refused);
    }
    if (hosts.length === 0) {
      // MX names that do not resolve are usually a fixable misconfiguration: retry rather than bounce.
      throw new MxResolutionError(MX_ERROR_CODES.temporary, `no MX host of ${domain} has an address`, domain);
    }
    return { hosts, expiresAt: now() + Math.min(ttlSeconds * 1_000, maxCacheTtlMs) };
  }

  return {
    async resolve(rawDomain) {
      const domain = normalizeDomain(rawDomain);
      const cached = cache.get(domain);
      let entry: CacheEntry;
      if (cached && cached.expiresAt > now()) {
        entry = cached;
      } else {
        cache.delete(domain);
        entry = await lookup(domain);
        if (maxCacheTtlMs > 0 && entry.expiresAt > now()) {
          // Bounded: Map keeps insertion order, so the first key is the oldest entry.
          if (cache.size >= MAX_CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
          cache.set(domain, entry);
        }
      }
      // Shuffle on every call, not once per cache entry, so equal-preference hosts share the load.
      return shuffleEqualPreferences(entry.hosts, random);
    },
    clearCache() {
      cache.clear();
    },
    close() {
      resolver.cancel();
      cache.clear();
    },
  };
}
