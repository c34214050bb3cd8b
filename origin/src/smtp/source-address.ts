/**
 * IP pools: named sets of local source addresses the origin binds its outbound SMTP connections to
 * (docs/configuration.md#ip-pools). A send names a pool with SendGrid's `ip_pool_name`; the job carries
 * it as `ipPool` (docs/link-protocol.md#ip-pools). Mailbox providers judge a sender by the address its
 * mail comes from, so transactional and bulk mail are kept apart on their own addresses.
 *
 *   IP_POOLS            "transactional=192.0.2.10,192.0.2.11;marketing=192.0.2.20,2001:db8::20"
 *   IP_POOL_DEFAULT     the pool of jobs that name none; unset = the system picks the address, as without pools
 *   IP_POOL_HELO_NAMES  "192.0.2.10=mta1.example.com,…": the EHLO name per address (its reverse DNS);
 *                       addresses not listed use HELO_NAME
 *
 * Choosing an address (`SourceAddresses.acquire`): among the pool's addresses of the family of the MX
 * address to be tried first, the one with the fewest transactions in progress on this node, ties broken
 * round-robin; a pool with addresses of both families also names one of the other family, for MX
 * addresses of that family. The transport keys its idle sessions by source address, so a session is
 * never reused for a job of a pool that does not hold its address.
 *
 * Everything is checked when the node starts: the syntax here (config.ts), and `assertBindable`, which
 * binds a socket to every address, so an address this host does not have stops the node at start
 * instead of failing every delivery later.
 */
import net from "node:net";

export class IpPoolConfigError extends Error {
  override name = "IpPoolConfigError";
}

/** As SendGrid bounds `ip_pool_name`; the separators of IP_POOLS cannot appear in a name. */
const POOL_NAME = /^[^=;,\s](?:[^=;,]{0,62}[^=;,\s])$/;
/** A host name as RFC 5321 §4.1.2 `Domain` (letters, digits, hyphens, dots). */
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** One address in its canonical text form (IPv6 compressed and lower-case), or null if it is not one. */
export function canonicalAddress(text: string): string | null {
  const v = text.trim();
  const family = net.isIP(v);
  if (family === 4) return v;
  if (family === 6) return new URL(`http://[${v}]`).hostname.slice(1, -1);
  return null;
}

export const familyOf = (address: string): 4 | 6 | 0 => net.isIP(address) as 4 | 6 | 0;

/** Addresses that cannot be a connection's source: the unspecified, broadcast and multicast ones. */
function unusable(address: string): string | null {
  if (address === "0.0.0.0" || address === "::") return "the unspecified address binds any address";
  if (address === "255.255.255.255") return "the broadcast address";
  const first = Number(address.split(".")[0]);
  if (familyOf(address) === 4 && first >= 224 && first <= 239) return "a multicast address";
  if (familyOf(address) === 6 && address.startsWith("ff")) return "a multicast address";
  return null;
}

/** IP_POOLS → pool name → its addresses (canonical, in the order given). Throws IpPoolConfigError. */
export function parseIpPools(spec: string | undefined): Map<string, string[]> {
  const pools = new Map<string, string[]>();
  for (const raw of (spec ?? "").split(";")) {
    const entry = raw.trim();
    if (!entry) continue;
    const eq = entry.indexOf("=");
    if (eq < 0)
      throw new IpPoolConfigError(
        `invalid pool "${entry}": use name=address,address (pools separated by ";")`,
      );
    const name = entry.slice(0, eq).trim();
    if (!POOL_NAME.test(name))
      throw new IpPoolConfigError(
        `invalid pool name "${name}": 2 to 64 characters (SendGrid's ip_pool_name rule), none of "=", ";", ","`,
      );
    if (pools.has(name)) throw new IpPoolConfigError(`pool "${name}" is defined twice`);
    const addresses: string[] = [];
    for (const part of entry.slice(eq + 1).split(",")) {
      if (!part.trim()) continue;
      const address = canonicalAddress(part);
      if (address === null)
        throw new IpPoolConfigError(`pool "${name}": "${part.trim()}" is not an IPv4 or IPv6 address`);
      const why = unusable(address);
      if (why) throw new IpPoolConfigError(`pool "${name}": ${address} cannot be a source address (${why})`);
      if (addresses.includes(address))
        throw new IpPoolConfigError(`pool "${name}": ${address} is listed twice`);
      addresses.push(address);
    }
    if (addresses.length === 0) throw new IpPoolConfigError(`pool "${name}" has no address`);
    pools.set(name, addresses);
  }
  return pools;
}

/** IP_POOL_HELO_NAMES → address → EHLO name. Throws IpPoolConfigError. */
export function parseHeloNames(spec: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of (spec ?? "").split(",")) {
    const entry = raw.trim();
    if (!entry) continue;
    // An IPv6 address has colons, never "=": the last "=" separates address and name.
    const eq = entry.lastIndexOf("=");
    const address = eq > 0 ? canonicalAddress(entry.slice(0, eq)) : null;
    const name = eq > 0 ? entry.slice(eq + 1).trim() : "";
    if (address === null || !HOST_NAME.test(name))
      throw new IpPoolConfigError(`invalid EHLO name entry "${entry}": use address=host.name`);
    if (out.has(address)) throw new IpPoolConfigError(`EHLO name of ${address} is given twice`);
    out.set(address, name);
  }
  return out;
}

export interface IpPoolSettings {
  IP_POOLS?: string | undefined;
  IP_POOL_DEFAULT?: string | undefined;
  IP_POOL_HELO_NAMES?: string | undefined;
}

export interface IpPoolConfig {
  pools: Map<string, string[]>;
  /** The pool of a job that names none; null = no binding (the system's choice). */
  defaultPool: string | null;
  heloNames: Map<string, string>;
}

/** The three settings together, cross-checked. Throws IpPoolConfigError naming the setting. */
export function loadIpPoolConfig(env: IpPoolSettings): IpPoolConfig {
  const at = <T>(setting: string, parse: () => T): T => {
    try {
      return parse();
    } catch (err) {
      throw new IpPoolConfigError(`${setting}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  const pools = at("IP_POOLS", () => parseIpPools(env.IP_POOLS));
  const heloNames = at("IP_POOL_HELO_NAMES", () => parseHeloNames(env.IP_POOL_HELO_NAMES));
  const defaultPool = env.IP_POOL_DEFAULT?.trim() || null;
  if (defaultPool !== null && !pools.has(defaultPool))
    throw new IpPoolConfigError(
      `IP_POOL_DEFAULT: "${defaultPool}" is not a pool of IP_POOLS (${[...pools.keys()].join(", ") || "none defined"})`,
    );
  const all = new Set([...pools.values()].flat());
  for (const address of heloNames.keys())
    if (!all.has(address))
      throw new IpPoolConfigError(`IP_POOL_HELO_NAMES: ${address} is not an address of any pool in IP_POOLS`);
  return { pools, defaultPool, heloNames };
}

/**
 * Binds a TCP socket to each address (port 0) and closes it: an address this host does not have
 * (EADDRNOTAVAIL) or may not use stops the node at start. Throws IpPoolConfigError listing every failure.
 */
export async function assertBindable(config: IpPoolConfig): Promise<void> {
  const failures: string[] = [];
  for (const [pool, addresses] of config.pools) {
    for (const address of addresses) {
      const error = await new Promise<string | null>((resolve) => {
        const server = net.createServer();
        server.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        server.listen({ host: address, port: 0, exclusive: true }, () => server.close(() => resolve(null)));
      });
      if (error !== null)
        failures.push(
          `${address} (pool "${pool}"): ${error}${error === "EADDRNOTAVAIL" ? ", not an address of this host" : ""}`,
        );
    }
  }
  if (failures.length > 0)
    throw new IpPoolConfigError(`IP_POOLS: cannot bind source addresses: ${failures.join("; ")}`);
}

/** The source address of one session, with its EHLO name when one is configured for it. */
export interface SourceBinding {
  address: string;
  heloName?: string;
}

/** What the transport binds to, per address family of the MX address it connects to. */
export interface SourceChoice {
  pool: string;
  /** The address counted (warm-up, least-connections): the one of the family tried first. */
  primary: SourceBinding;
  byFamily: { 4?: SourceBinding; 6?: SourceBinding };
  /** Ends this transaction's use of `primary`; idempotent. */
  release(): void;
}

/** How a job's pool resolves on this node. */
export type PoolLookup =
  | { kind: "none" }
  | { kind: "pool"; pool: string }
  /** The job names a pool this node does not have: it must not be sent from another address. */
  | { kind: "missing"; pool: string };

export interface SourceAddresses {
  /** Pool names, for the hello. */
  readonly names: string[];
  /** Every configured address once (warm-up gauges). */
  readonly addresses: string[];
  lookup(ipPool: string | undefined): PoolLookup;
  /**
   * An address of `pool` for an MX address of `family` (0 = a host name: IPv4 first), else one of
   * the other family; null only for a pool this node does not have.
   */
  acquire(pool: string, family: 4 | 6 | 0): SourceChoice | null;
  /** Transactions in progress per address on this node (tests, metrics). */
  inFlight(): Map<string, number>;
}

export function createSourceAddresses(config: IpPoolConfig): SourceAddresses {
  const busy = new Map<string, number>();
  const cursor = new Map<string, number>();
  const binding = (address: string): SourceBinding => {
    const heloName = config.heloNames.get(address);
    return heloName ? { address, heloName } : { address };
  };
  /** Least busy address of the family, ties broken round-robin per pool and family. */
  const pick = (pool: string, family: 4 | 6): string | undefined => {
    const candidates = (config.pools.get(pool) ?? []).filter((a) => familyOf(a) === family);
    if (candidates.length === 0) return undefined;
    const key = `${pool}\u0000${family}`;
    const start = cursor.get(key) ?? 0;
    let best: string | undefined;
    let bestBusy = Infinity;
    for (let i = 0; i < candidates.length; i++) {
      const address = candidates[(start + i) % candidates.length]!;
      const n = busy.get(address) ?? 0;
      if (n < bestBusy) {
        best = address;
        bestBusy = n;
      }
    }
    cursor.set(key, (candidates.indexOf(best!) + 1) % candidates.length);
    return best;
  };
  return {
    names: [...config.pools.keys()],
    addresses: [...new Set([...config.pools.values()].flat())],
    lookup(ipPool) {
      const pool = ipPool ?? config.defaultPool;
      if (pool === null || pool === undefined) return { kind: "none" };
      return config.pools.has(pool) ? { kind: "pool", pool } : { kind: "missing", pool };
    },
    acquire(pool, family) {
      const first: 4 | 6 = family === 6 ? 6 : 4;
      const other: 4 | 6 = first === 4 ? 6 : 4;
      let primaryFamily: 4 | 6 = first;
      let primary = pick(pool, first);
      // No address of that family: one of the other, for the MX addresses of that family (the
      // transport skips the ones it cannot reach from it).
      if (primary === undefined) {
        primaryFamily = other;
        primary = pick(pool, other);
      }
      if (primary === undefined) return null;
      busy.set(primary, (busy.get(primary) ?? 0) + 1);
      const secondFamily: 4 | 6 = primaryFamily === 4 ? 6 : 4;
      const second = pick(pool, secondFamily);
      const byFamily: SourceChoice["byFamily"] = { [primaryFamily]: binding(primary) };
      if (second !== undefined) byFamily[secondFamily] = binding(second);
      let released = false;
      const used = primary;
      return {
        pool,
        primary: binding(primary),
        byFamily,
        release() {
          if (released) return;
          released = true;
          const n = (busy.get(used) ?? 1) - 1;
          if (n > 0) busy.set(used, n);
          else busy.delete(used);
        },
      };
    },
    inFlight: () => new Map(busy),
  };
}
