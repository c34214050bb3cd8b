/**
 * Reads TXT and MX records through a DNS-over-HTTPS resolver's JSON API (the `application/dns-json` format
 * Cloudflare and Google serve). The resolver URL is operator configuration (DNS_RESOLVER_URL, which
 * edge/src/env.ts requires to be https:// except on loopback); tests point it at a resolver on loopback.
 *
 * Every lookup has a deadline (DNS_TIMEOUT_MS, default 5 s) covering the whole exchange, headers and
 * body: a resolver that never answers makes that check fail with a message saying so, and the
 * verify request still answers, instead of hanging until the platform cancels it.
 */

/**
 * A TXT lookup: the record values, or a TxtAnswer that also says whether the name exists at all
 * (NXDOMAIN), so verification can tell "no such name" from "the name has no TXT record".
 */
export type TxtLookup = (name: string) => Promise<string[] | TxtAnswer>;

export interface TxtAnswer {
  /** The name does not exist (rcode 3); `values` is then empty. */
  nxdomain: boolean;
  values: string[];
}

export const toTxtAnswer = (r: string[] | TxtAnswer): TxtAnswer =>
  Array.isArray(r) ? { nxdomain: false, values: r } : r;

/** An MX look-up: each record's preference and exchange (lower case, no final dot; "" for a null MX, RFC 7505). */
export type MxLookup = (name: string) => Promise<MxAnswer>;

export interface MxAnswer {
  nxdomain: boolean;
  values: { preference: number; exchange: string }[];
}

/** The part of `fetch` a lookup uses; a service binding's `fetch` fits too. */
export type DohFetcher = (url: string, init: RequestInit) => Promise<Response>;

export const DEFAULT_DNS_TIMEOUT_MS = 5000;

interface DohAnswer {
  Status: number;
  Answer?: { name: string; type: number; data: string }[];
}

const TXT = 16;
const MX = 15;
const NXDOMAIN = 3;

/** TXT values only; a name that does not exist reads as no records. */
export function dohTxtLookup(
  resolverUrl: string,
  fetcher: DohFetcher = (url, init) => fetch(url, init),
  timeoutMs: number = DEFAULT_DNS_TIMEOUT_MS,
): (name: string) => Promise<string[]> {
  const query = dohTxtQuery(resolverUrl, fetcher, timeoutMs);
  return async (name) => (await query(name)).values;
}

/** TXT values and whether the name exists (NXDOMAIN), for precise verification errors. */
export function dohTxtQuery(
  resolverUrl: string,
  fetcher: DohFetcher = (url, init) => fetch(url, init),
  timeoutMs: number = DEFAULT_DNS_TIMEOUT_MS,
): (name: string) => Promise<TxtAnswer> {
  const query = dohQuery(resolverUrl, fetcher, timeoutMs, "TXT", TXT);
  return async (name) => {
    const a = await query(name);
    return { nxdomain: a.nxdomain, values: a.data.map(joinTxtStrings) };
  };
}

/** MX records (`<preference> <exchange>.` in DoH JSON) and whether the name exists. */
export function dohMxQuery(
  resolverUrl: string,
  fetcher: DohFetcher = (url, init) => fetch(url, init),
  timeoutMs: number = DEFAULT_DNS_TIMEOUT_MS,
): MxLookup {
  const query = dohQuery(resolverUrl, fetcher, timeoutMs, "MX", MX);
  return async (name) => {
    const a = await query(name);
    return { nxdomain: a.nxdomain, values: a.data.map(parseMxData) };
  };
}

/** `10 mx.example.com.` → {10, "mx.example.com"}; `0 .` (a null MX) has the exchange "". */
export function parseMxData(data: string): { preference: number; exchange: string } {
  const m = /^\s*(\d+)\s+(\S*)\s*$/.exec(data);
  if (!m) throw new Error(`DNS resolver answered an MX record that does not parse: ${JSON.stringify(data)}`);
  return { preference: Number(m[1]), exchange: m[2]!.replace(/\.$/, "").toLowerCase() };
}

/** One DoH JSON query: the answers' data of `typeNumber` (CNAMEs on the way are skipped). */
function dohQuery(
  resolverUrl: string,
  fetcher: DohFetcher,
  timeoutMs: number,
  type: string,
  typeNumber: number,
): (name: string) => Promise<{ nxdomain: boolean; data: string[] }> {
  return async (name) => {
    const url = new URL(resolverUrl);
    url.searchParams.set("name", name);
    url.searchParams.set("type", type);
    // One signal for the request and the body read: a resolver that sends headers and then stalls
    // is cut off too.
    const signal = AbortSignal.timeout(timeoutMs);
    let body: DohAnswer;
    try {
      // A resolver has no reason to redirect; not following keeps the lookup on the configured host.
      const res = await fetcher(url.toString(), {
        headers: { accept: "application/dns-json" },
        redirect: "manual",
        signal,
      });
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`DNS resolver answered HTTP ${res.status} for ${name}`);
      }
      body = (await res.json()) as DohAnswer;
    } catch (err) {
      if (signal.aborted) {
        throw new Error(`DNS resolver did not answer within ${timeoutMs} ms for ${name}`, { cause: err });
      }
      throw err;
    }
    if (body.Status === NXDOMAIN) return { nxdomain: true, data: [] };
    if (body.Status !== 0) throw new Error(`DNS resolver answered rcode ${body.Status} for ${name}`);
    return {
      nxdomain: false,
      data: (body.Answer ?? []).filter((a) => a.type === typeNumber).map((a) => a.data),
    };
  };
}

/**
 * A TXT record is a list of character-strings (each ≤ 255 bytes); DoH JSON shows them quoted,
 * e.g. `"v=DKIM1; k=rsa; " "p=MIIB…"`. The record's value is their concatenation (RFC 6376 §3.6.2.2).
 */
export function joinTxtStrings(data: string): string {
  const parts = [...data.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, "$1"));
  return parts.length > 0 ? parts.join("") : data;
}

/** Parses `k=v; k=v` tag lists (DKIM, DMARC). */
export function parseTags(record: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of record.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    tags.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).replace(/\s+/g, ""));
  }
  return tags;
}
