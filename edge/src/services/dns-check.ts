/**
 * Reads TXT records through a DNS-over-HTTPS resolver's JSON API (the `application/dns-json` format
 * Cloudflare and Google serve). The resolver URL is operator configuration (DNS_RESOLVER_URL);
 * tests point it at a resolver on loopback.
 */

export type TxtLookup = (name: string) => Promise<string[]>;

interface DohAnswer {
  Status: number;
  Answer?: { name: string; type: number; data: string }[];
}

const TXT = 16;
const NXDOMAIN = 3;

export function dohTxtLookup(resolverUrl: string, fetcher: typeof fetch = fetch): TxtLookup {
  return async (name) => {
    const url = new URL(resolverUrl);
    url.searchParams.set("name", name);
    url.searchParams.set("type", "TXT");
    const res = await fetcher(url, { headers: { accept: "application/dns-json" } });
    if (!res.ok) throw new Error(`DNS resolver answered HTTP ${res.status} for ${name}`);
    const body = (await res.json()) as DohAnswer;
    if (body.Status === NXDOMAIN) return [];
    if (body.Status !== 0) throw new Error(`DNS resolver answered rcode ${body.Status} for ${name}`);
    return (body.Answer ?? []).filter((a) => a.type === TXT).map((a) => joinTxtStrings(a.data));
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
