/**
 * The SSRF guard for webhook URLs (docs/api/webhooks.md#ssrf-guard). A tenant chooses the URL, the
 * edge makes the request: it must not be a way to reach the operator's own network. Every hop of a
 * POST (the URL and each redirect) is checked before it is requested:
 *  - the scheme is https (http only for allowlisted destinations, or with DEV_MODE);
 *  - no user name or password in the URL (they would be sent along);
 *  - the host is a literal address, or a name resolved through the configured DNS-over-HTTPS
 *    resolver (A and AAAA); every address must be public: loopback, private (RFC 1918, ULA), CGNAT,
 *    link-local (and so the 169.254.169.254 / fd00:ec2::254 metadata services), multicast, reserved,
 *    documentation and unspecified ranges are refused, IPv4-mapped, NAT64 and 6to4 addresses by the
 *    IPv4 address inside them; `localhost` and `*.localhost` are refused without a look-up;
 *  - unless the operator's WEBHOOK_ALLOW_PRIVATE lists the host name, or an address or CIDR range
 *    holding every non-public address it resolves to.
 * Redirects are followed by hand (at most MAX_REDIRECTS), each Location checked like the URL.
 *
 * Why a DoH look-up and not the runtime's: a Worker cannot see the address `fetch` connects to. The
 * runtime resolves the name again when it connects, so a name that changes its answer between the
 * two look-ups (DNS rebinding) is not caught here; on Cloudflare's network that does not matter,
 * because a Worker's subrequests go out to the public Internet and cannot reach private or metadata
 * addresses at all. The guard is what protects a self-hosted workerd, and it refuses the URL early
 * with a reason the tenant can read.
 */

export const MAX_REDIRECTS = 3;

export type Resolver = (host: string) => Promise<string[]>;

export interface Allowlist {
  hosts: Set<string>;
  ranges: { v6: boolean; bits: bigint; prefix: number }[];
}

/** WEBHOOK_ALLOW_PRIVATE: comma-separated host names, addresses and CIDR ranges. */
export function parseAllowlist(spec: string): Allowlist | string {
  const out: Allowlist = { hosts: new Set(), ranges: [] };
  for (const raw of spec
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)) {
    const [addr, len] = raw.split("/") as [string, string | undefined];
    const ip = parseIp(addr.replace(/^\[|\]$/g, ""));
    if (ip) {
      const max = ip.v6 ? 128 : 32;
      const prefix = len === undefined ? max : Number(len);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return `bad prefix length in "${raw}"`;
      out.ranges.push({ ...ip, prefix });
    } else if (len === undefined && /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(raw)) {
      out.hosts.add(raw);
    } else {
      return `"${raw}" is neither a host name, an address nor a CIDR range`;
    }
  }
  return out;
}

interface Ip {
  v6: boolean;
  bits: bigint;
}

function parseIpv4(s: string): bigint | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  let v = 0n;
  for (const part of m.slice(1)) {
    const n = Number(part);
    if (n > 255 || (part.length > 1 && part.startsWith("0"))) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseIpv6(s: string): bigint | null {
  if (!s.includes(":") || s.includes("%")) return null;
  let tail: bigint[] = [];
  let text = s;
  // An embedded IPv4 address in the last 32 bits (::ffff:10.0.0.1).
  const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const n = parseIpv4(v4[2]!);
    if (n === null) return null;
    tail = [n >> 16n, n & 0xffffn];
    text = v4[1]!.endsWith("::") ? v4[1]! : v4[1]!.slice(0, -1);
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const group = (h: string) => (h === "" ? [] : h.split(":"));
  const head = group(halves[0]!);
  const rest = halves.length === 2 ? group(halves[1]!) : [];
  const known = head.length + rest.length + tail.length;
  if (halves.length === 1 ? known !== 8 : known > 7) return null;
  const groups = [...head, ...Array<string>(8 - known).fill("0"), ...rest];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return null;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  for (const t of tail) v = (v << 16n) | t;
  return v;
}

export function parseIp(s: string): Ip | null {
  const v4 = parseIpv4(s);
  if (v4 !== null) return { v6: false, bits: v4 };
  const v6 = parseIpv6(s);
  return v6 === null ? null : { v6: true, bits: v6 };
}

const inRange = (ip: Ip, r: { v6: boolean; bits: bigint; prefix: number }) => {
  if (ip.v6 !== r.v6) return false;
  const shift = BigInt((ip.v6 ? 128 : 32) - r.prefix);
  return ip.bits >> shift === r.bits >> shift;
};

const cidr = (text: string) => {
  const [a, p] = text.split("/") as [string, string];
  return { ...parseIp(a)!, prefix: Number(p) };
};

const NON_PUBLIC_V4 = [
  "0.0.0.0/8", // "this" network
  "10.0.0.0/8", // private (RFC 1918)
  "100.64.0.0/10", // CGNAT (RFC 6598)
  "127.0.0.0/8", // loopback
  "169.254.0.0/16", // link-local, cloud metadata (169.254.169.254)
  "172.16.0.0/12", // private
  "192.0.0.0/24", // IETF protocol assignments
  "192.0.2.0/24", // documentation
  "192.88.99.0/24", // 6to4 relay anycast
  "192.168.0.0/16", // private
  "198.18.0.0/15", // benchmarking
  "198.51.100.0/24", // documentation
  "203.0.113.0/24", // documentation
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved, broadcast
].map(cidr);

const NON_PUBLIC_V6 = [
  "::/127", // unspecified, loopback
  "100::/64", // discard
  "2001:db8::/32", // documentation
  "fc00::/7", // unique local (fd00:ec2::254, the EC2 metadata service, is here)
  "fe80::/10", // link-local
  "fec0::/10", // site-local (deprecated)
  "ff00::/8", // multicast
].map(cidr);

/** Address ranges that carry an IPv4 address, judged by that address: mapped, NAT64, 6to4. */
function embeddedV4(ip: Ip): Ip | null {
  if (!ip.v6) return null;
  if (ip.bits >> 32n === 0xffffn || ip.bits >> 32n === 0x64ff9b0000000000000000n)
    return { v6: false, bits: ip.bits & 0xffffffffn };
  if (ip.bits >> 112n === 0x2002n) return { v6: false, bits: (ip.bits >> 80n) & 0xffffffffn };
  return null;
}

export function isNonPublic(ip: Ip): boolean {
  const inner = embeddedV4(ip);
  if (inner) return isNonPublic(inner);
  return (ip.v6 ? NON_PUBLIC_V6 : NON_PUBLIC_V4).some((r) => inRange(ip, r));
}

export class UnsafeUrlError extends Error {
  override readonly name = "UnsafeUrlError";
}

export interface GuardOptions {
  resolve: Resolver;
  allow: Allowlist;
  /** DEV_MODE: plain http to any (otherwise checked) destination. */
  allowHttpAnywhere: boolean;
}

/** Throws UnsafeUrlError with a reason a tenant can read, or returns the checked URL. */
export async function checkUrl(raw: string, opts: GuardOptions): Promise<URL> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UnsafeUrlError("is not a valid URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new UnsafeUrlError("must be https://");
  if (url.username || url.password) throw new UnsafeUrlError("must not carry a user name or password");
  const host = url.hostname
    .toLowerCase()
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "");
  const hostAllowed = opts.allow.hosts.has(host);
  const literal = parseIp(host);
  let addresses: Ip[];
  if (literal) {
    addresses = [literal];
  } else if (hostAllowed) {
    addresses = [];
  } else {
    if (host === "localhost" || host.endsWith(".localhost"))
      throw new UnsafeUrlError(`${host} is a loopback name`);
    let answers: string[];
    try {
      answers = await opts.resolve(host);
    } catch (err) {
      throw new UnsafeUrlError(
        `${host} could not be resolved: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    addresses = answers.map((a) => parseIp(a)).filter((a): a is Ip => a !== null);
    if (addresses.length === 0) throw new UnsafeUrlError(`${host} has no address`);
  }
  const privateOnes = addresses.filter(isNonPublic);
  const allAllowed = privateOnes.every((a) => opts.allow.ranges.some((r) => inRange(a, r)));
  if (!hostAllowed && !allAllowed) {
    const shown = literal ? host : `${host} resolves to a non-public address`;
    throw new UnsafeUrlError(
      `${literal ? `${shown} is a non-public address` : shown} (not allowed for webhooks)`,
    );
  }
  // An allowlisted destination is the operator's own receiver: plain http is its choice.
  const allowlisted = hostAllowed || (privateOnes.length > 0 && privateOnes.length === addresses.length);
  if (url.protocol === "http:" && !opts.allowHttpAnywhere && !allowlisted)
    throw new UnsafeUrlError("must be https://");
  return url;
}

export interface PostOutcome {
  status: number | null;
  error: string | null;
  durationMs: number;
}

/**
 * POSTs `body` to `url` through the guard, following redirects by hand (the same method, body and
 * headers at every hop: a 301/302/303 is not turned into a GET, since a webhook has nothing to GET).
 * Never throws: a refused hop, a network error or the deadline is an outcome with `error`.
 */
export async function guardedPost(
  url: string,
  init: { headers: Record<string, string>; body: string; timeoutMs: number },
  opts: GuardOptions & { fetch: (req: Request) => Promise<Response>; now: () => number },
): Promise<PostOutcome> {
  const started = opts.now();
  const signal = AbortSignal.timeout(init.timeoutMs);
  let target = url;
  try {
    for (let hop = 0; ; hop++) {
      const checked = await checkUrl(target, opts);
      const res = await untilAborted(
        opts.fetch(
          new Request(checked.toString(), {
            method: "POST",
            headers: init.headers,
            body: init.body,
            redirect: "manual",
            signal,
          }),
        ),
        signal,
      );
      const location = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        if (hop >= MAX_REDIRECTS) return done(res.status, `more than ${MAX_REDIRECTS} redirects`);
        target = new URL(location, checked).toString();
        continue;
      }
      // The answer's body is not needed; reading it would let a receiver hold the request open.
      await res.body?.cancel();
      return done(res.status, res.status >= 200 && res.status < 300 ? null : `HTTP ${res.status}`);
    }
  } catch (err) {
    if (err instanceof UnsafeUrlError) return done(null, `refused: ${target} ${err.message}`);
    if (signal.aborted) return done(null, `no answer within ${init.timeoutMs / 1000} s`);
    return done(null, err instanceof Error ? err.message : String(err));
  }
  function done(status: number | null, error: string | null): PostOutcome {
    return { status, error, durationMs: opts.now() - started };
  }
}

/** The deadline holds even if a fetch implementation does not watch its signal. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** A/AAAA through a DNS-over-HTTPS JSON resolver (the one DNS_RESOLVER_URL names). */
export function dohAddressResolver(
  resolverUrl: string,
  timeoutMs: number,
  fetcher: (url: string, init: RequestInit) => Promise<Response> = (u, i) => fetch(u, i),
): Resolver {
  const ask = async (name: string, type: "A" | "AAAA"): Promise<string[]> => {
    const url = new URL(resolverUrl);
    url.searchParams.set("name", name);
    url.searchParams.set("type", type);
    const res = await fetcher(url.toString(), {
      headers: { accept: "application/dns-json" },
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`DNS resolver answered HTTP ${res.status}`);
    }
    const body = (await res.json()) as { Status: number; Answer?: { type: number; data: string }[] };
    if (body.Status === 3) return [];
    if (body.Status !== 0) throw new Error(`DNS resolver answered rcode ${body.Status}`);
    const want = type === "A" ? 1 : 28;
    return (body.Answer ?? []).filter((a) => a.type === want).map((a) => a.data);
  };
  return async (name) => (await Promise.all([ask(name, "A"), ask(name, "AAAA")])).flat();
}
