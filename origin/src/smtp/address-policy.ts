/**
 * Which IP addresses an MX (or implicit-MX) answer may send us to. A tenant controls its
 * recipients' domains, and so their DNS: without this check a domain whose MX resolves to 127.0.0.1,
 * 10.0.0.5 or 169.254.169.254 makes the origin connect to the operator's own network and report
 * that server's replies in the tenant's events (issue 6, item 14; Haraka's `local_mx_ok` is the
 * same idea).
 *
 * An address is "not public" when the IANA special-purpose address registries mark it as not
 * globally reachable, or it is multicast/reserved space:
 *   https://www.iana.org/assignments/iana-ipv4-special-registry/
 *   https://www.iana.org/assignments/iana-ipv6-special-registry/
 * IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:0:0/96, the NAT64 prefix 64:ff9b::/96,
 * 6to4 2002::/16) are judged by the IPv4 address inside, so `::ffff:127.0.0.1` is loopback too.
 * Matching uses node:net's BlockList over parsed addresses, never string prefixes ("10." would
 * miss "010.0.0.1"-style spellings and match "10.example").
 *
 * The check is on the addresses we will connect to (the transport connects to these IPs, it does
 * not resolve the name again), so a DNS answer that changes between look-up and connect cannot
 * slip past it.
 */
import { BlockList, isIP } from "node:net";

interface Range {
  network: string;
  prefix: number;
  reason: string;
}

const V4_RANGES: Range[] = [
  { network: "0.0.0.0", prefix: 8, reason: '"this network" / unspecified (RFC 791)' },
  { network: "10.0.0.0", prefix: 8, reason: "private (RFC 1918)" },
  { network: "100.64.0.0", prefix: 10, reason: "shared address space / CGNAT (RFC 6598)" },
  { network: "127.0.0.0", prefix: 8, reason: "loopback (RFC 1122)" },
  { network: "169.254.169.254", prefix: 32, reason: "cloud instance metadata service" },
  { network: "169.254.0.0", prefix: 16, reason: "link-local (RFC 3927)" },
  { network: "172.16.0.0", prefix: 12, reason: "private (RFC 1918)" },
  { network: "192.0.0.0", prefix: 24, reason: "IETF protocol assignments (RFC 6890)" },
  { network: "192.0.2.0", prefix: 24, reason: "documentation (RFC 5737)" },
  { network: "192.88.99.0", prefix: 24, reason: "6to4 relay anycast, deprecated (RFC 7526)" },
  { network: "192.168.0.0", prefix: 16, reason: "private (RFC 1918)" },
  { network: "198.18.0.0", prefix: 15, reason: "benchmarking (RFC 2544)" },
  { network: "198.51.100.0", prefix: 24, reason: "documentation (RFC 5737)" },
  { network: "203.0.113.0", prefix: 24, reason: "documentation (RFC 5737)" },
  { network: "224.0.0.0", prefix: 4, reason: "multicast (RFC 5771)" },
  { network: "255.255.255.255", prefix: 32, reason: "limited broadcast (RFC 919)" },
  { network: "240.0.0.0", prefix: 4, reason: "reserved (RFC 1112)" },
];

const V6_RANGES: Range[] = [
  { network: "::", prefix: 128, reason: "unspecified (RFC 4291)" },
  { network: "::1", prefix: 128, reason: "loopback (RFC 4291)" },
  // ::ffff:0:0/96 (IPv4-mapped) is judged by its IPv4 address, below; the rest of ::/96 is the
  // deprecated IPv4-compatible form (RFC 4291 §2.5.5.1) that no MX should publish.
  { network: "::", prefix: 96, reason: "IPv4-compatible, deprecated (RFC 4291)" },
  { network: "64:ff9b:1::", prefix: 48, reason: "local-use NAT64 (RFC 8215)" },
  { network: "100::", prefix: 64, reason: "discard-only (RFC 6666)" },
  { network: "2001:2::", prefix: 48, reason: "benchmarking (RFC 5180)" },
  { network: "2001:db8::", prefix: 32, reason: "documentation (RFC 3849)" },
  { network: "3fff::", prefix: 20, reason: "documentation (RFC 9637)" },
  { network: "fd00:ec2::254", prefix: 128, reason: "cloud instance metadata service" },
  { network: "fc00::", prefix: 7, reason: "unique local (RFC 4193)" },
  { network: "fe80::", prefix: 10, reason: "link-local (RFC 4291)" },
  { network: "fec0::", prefix: 10, reason: "site-local, deprecated (RFC 3879)" },
  { network: "ff00::", prefix: 8, reason: "multicast (RFC 4291)" },
];

/** One BlockList per range, so a match can say which range it was (the first match wins). */
const TABLE = [
  ...V4_RANGES.map((r) => ({ ...r, type: "ipv4" as const })),
  ...V6_RANGES.map((r) => ({ ...r, type: "ipv6" as const })),
].map((range) => {
  const list = new BlockList();
  list.addSubnet(range.network, range.prefix, range.type);
  return { ...range, list };
});

/** The 16 bytes of an IPv6 address (isIP must have said 6), a trailing dotted quad included. */
function ipv6Bytes(address: string): Uint8Array {
  // "::ffff:1.2.3.4" → "::ffff:102:304": the quad is the last two 16-bit words.
  const text = address.replace(
    /(\d+)\.(\d+)\.(\d+)\.(\d+)$/,
    (_m, a: string, b: string, c: string, d: string) =>
      [(Number(a) << 8) | Number(b), (Number(c) << 8) | Number(d)].map((w) => w.toString(16)).join(":"),
  );
  const parse = (part: string | undefined) =>
    part === undefined || part === "" ? [] : part.split(":").map((w) => parseInt(w, 16));
  const [head, tail] = text.split("::");
  const headWords = parse(head);
  const tailWords = parse(tail);
  const fill = tail === undefined ? 0 : 8 - headWords.length - tailWords.length;
  const words = [...headWords, ...Array<number>(Math.max(0, fill)).fill(0), ...tailWords];
  const bytes = new Uint8Array(16);
  words.slice(0, 8).forEach((w, i) => {
    bytes[2 * i] = (w >> 8) & 0xff;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

const dottedQuad = (b: Uint8Array, at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
const zeros = (b: Uint8Array, from: number, to: number) => b.slice(from, to).every((x) => x === 0);

/** The IPv4 address an IPv6 address carries (mapped, NAT64 well-known prefix, 6to4), if any. */
export function embeddedIPv4(address: string): string | null {
  if (isIP(address) !== 6) return null;
  const b = ipv6Bytes(address);
  // ::ffff:a.b.c.d (RFC 4291 §2.5.5.2)
  if (zeros(b, 0, 10) && b[10] === 0xff && b[11] === 0xff) return dottedQuad(b, 12);
  // 64:ff9b::a.b.c.d (RFC 6052 §2.1)
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(b, 4, 12))
    return dottedQuad(b, 12);
  // 2002:aabb:ccdd::/48 (RFC 3056 §2)
  if (b[0] === 0x20 && b[1] === 0x02) return dottedQuad(b, 2);
  return null;
}

/**
 * Why `address` is not a public unicast address, or null when it is one. A string that is not an
 * IP address at all is refused too (nothing else should reach the transport).
 */
export function nonPublicReason(rawAddress: string): string | null {
  const address = rawAddress.replace(/%.*$/, ""); // a zone id ("fe80::1%eth0") only ever goes with link-local
  const family = isIP(address);
  if (family === 0) return "not an IP address";
  if (family === 6) {
    const inner = embeddedIPv4(address);
    if (inner !== null) {
      const innerReason = nonPublicReason(inner);
      return innerReason === null ? null : `${innerReason}, in IPv6 form`;
    }
  }
  const type = family === 4 ? "ipv4" : "ipv6";
  for (const range of TABLE) if (range.type === type && range.list.check(address, type)) return range.reason;
  return null;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** True for 127.0.0.0/8, ::1, ::ffff:127.x.y.z and the name "localhost" (RFC 6761 §6.3). */
export function isLoopbackHost(rawHost: string): boolean {
  const host = rawHost
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "")
    .toLowerCase();
  if (host === "localhost") return true;
  const family = isIP(host);
  if (family === 4) return LOOPBACK.check(host, "ipv4");
  if (family !== 6) return false;
  const b = ipv6Bytes(host);
  const mapped = zeros(b, 0, 10) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? LOOPBACK.check(dottedQuad(b, 12), "ipv4") : LOOPBACK.check(host, "ipv6");
}
