/**
 * MTA-STS (RFC 8461): a recipient domain publishes, in DNS and over HTTPS, that its MX hosts speak
 * TLS with valid certificates, and which host names those are. This module finds, fetches, parses
 * and caches that policy; smtp/transport.ts applies it (docs/operations.md, "TLS and MTA-STS").
 *
 * Discovery (§3.1, §3.3, §5.1), per recipient domain:
 *  1. TXT `_mta-sts.<domain>` through the same DNS servers as MX look-ups. Records not starting with
 *     `v=STSv1;` are ignored; anything but exactly one valid record means "no live policy".
 *  2. A policy cached under the same `id` and not past its `max_age` is used as it is; a new or
 *     changed `id` (or none cached) fetches `https://mta-sts.<domain>/.well-known/mta-sts.txt`:
 *     a certificate valid for that name (Node's roots plus `ca`), HTTP 200 only, no redirects
 *     (node:https never follows them), `text/plain`, at most 64 KiB, within `fetchTimeoutMs`.
 *  3. The body is parsed strictly (`parsePolicy`, §3.2); a policy that fails to parse is no policy.
 *  4. When no live policy can be had (no TXT record, DNS failure, fetch or parse failure), a cached
 *     policy that has not expired still applies (§5.1: "the sender MUST apply that cached policy");
 *     without one the domain is treated as having no policy (opportunistic TLS, as before).
 *
 * SSRF: the policy host's name is the recipient domain's to choose, so its addresses are screened
 * like MX addresses (address-policy.ts): not public → not fetched unless `allowPrivate`
 * (ALLOW_PRIVATE_MX). The request goes to the screened address itself, with the policy host name
 * as SNI, Host header and certificate identity, so a DNS answer that changes in between cannot
 * slip past the check.
 *
 * Cache invariants: at most `maxEntries` domains (oldest dropped first); an entry's policy is
 * used only before its `expiresAt` (fetch time + max_age); DNS is asked again for a domain once
 * `recheckMs` has passed since it was last asked (so an `id` change is seen within `recheckMs`,
 * and a domain without a policy costs one TXT query per `recheckMs`, not one per message);
 * concurrent look-ups for one domain share one DNS query and one fetch. `policyFor` never throws.
 */
import { Resolver } from "node:dns/promises";
import type { ClientRequest } from "node:http";
import { request } from "node:https";
import { isIP } from "node:net";
import { createSecureContext, rootCertificates } from "node:tls";
import { domainToASCII } from "node:url";
import { nonPublicReason } from "./address-policy.ts";

export type MtaStsMode = "enforce" | "testing" | "none";

export interface MtaStsPolicy {
  mode: MtaStsMode;
  /** MX host patterns, lower case: "mx.example.com" or "*.example.com" (one left-most label). */
  mx: string[];
  /** Seconds the policy may be cached, at most MAX_AGE_LIMIT_S. */
  maxAgeS: number;
}

/** A policy as it applies to one recipient domain: the TXT record's `id` it was fetched under. */
export interface DomainPolicy extends MtaStsPolicy {
  domain: string;
  id: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

/** RFC 8461 §3.2: "maximum value of 31557600" (one year). Larger values are capped to it. */
export const MAX_AGE_LIMIT_S = 31_557_600;
/** RFC 8461 §3.3: policy bodies "SHOULD be limited to 64 kilobytes". */
export const MAX_POLICY_BYTES = 64 * 1024;
/** Shorter than the one minute RFC 8461 §3.3 suggests: a fetch runs inside a job's deadline. */
const DEFAULT_FETCH_TIMEOUT_MS = 20_000;
const DEFAULT_RECHECK_MS = 300_000;
const DEFAULT_MAX_ENTRIES = 10_000;
const POLICY_PATH = "/.well-known/mta-sts.txt";

// RFC 8461 §3.1 / §3.2 grammar pieces.
const EXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const TXT_ID = /^[A-Za-z0-9]{1,32}$/;
const TXT_EXT_VALUE = /^[\x21-\x3a\x3c\x3e-\x7e]+$/;
const MAX_AGE_VALUE = /^[0-9]{1,10}$/;
// ["*."] Domain (RFC 5321 §4.1.2): LDH labels, no leading/trailing hyphen.
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const MX_PATTERN = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`);
// sts-policy-vchar: visible ASCII or UTF-8 beyond it, with inner spaces/tabs.
const POLICY_VALUE = /^[^\s\x00-\x1f\x7f](?:[^\x00-\x08\x0a-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$/;

/**
 * The `id` of one `_mta-sts` TXT record (its character-strings already joined), or an error. The
 * RFC 8461 §3.1 ABNF: `v=STSv1` first, then `;`-separated `name=value` fields, one of them `id`
 * (1–32 letters and digits); a repeated field keeps its first value; a trailing `;` is allowed.
 */
export function parseStsRecord(record: string): ParseResult<string> {
  const parts = record.split(";");
  if (parts.length < 2 || !/^v=STSv1[ \t]*$/.test(parts[0] ?? ""))
    return { ok: false, error: "does not start with v=STSv1;" };
  let id: string | undefined;
  for (let i = 1; i < parts.length; i++) {
    const last = i === parts.length - 1;
    // Spaces and tabs around a ";" belong to the separator (sts-sep = *WSP ";" *WSP).
    const field = last
      ? (parts[i] ?? "").replace(/^[ \t]+/, "")
      : (parts[i] ?? "").replace(/^[ \t]+|[ \t]+$/g, "");
    if (field === "" && last) continue;
    const eq = field.indexOf("=");
    if (eq < 1) return { ok: false, error: `malformed field ${JSON.stringify(field)}` };
    const name = field.slice(0, eq);
    const value = field.slice(eq + 1);
    if (name === "id" && id === undefined) {
      if (!TXT_ID.test(value)) return { ok: false, error: "id must be 1 to 32 letters or digits" };
      id = value;
    } else if (!EXT_NAME.test(name) || !TXT_EXT_VALUE.test(value)) {
      return { ok: false, error: `malformed field ${JSON.stringify(field)}` };
    }
  }
  return id === undefined ? { ok: false, error: "no id field" } : { ok: true, value: id };
}

/**
 * The one usable record among a TXT answer's records (each a list of character-strings), per
 * RFC 8461 §3.1: records not starting with `v=STSv1;` are discarded first; zero or several left,
 * or an invalid one, and the domain has no live policy.
 */
export function selectStsRecord(records: string[][]): ParseResult<string> {
  const candidates = records.map((strings) => strings.join("")).filter((r) => /^v=STSv1[ \t]*;/.test(r));
  if (candidates.length === 0) return { ok: false, error: "no v=STSv1 TXT record" };
  if (candidates.length > 1) return { ok: false, error: `${candidates.length} v=STSv1 TXT records` };
  return parseStsRecord(candidates[0] as string);
}

/**
 * A policy body parsed strictly per RFC 8461 §3.2: `name: value` lines ended by LF or CRLF; field
 * names and the `mode` value are case-sensitive; `version: STSv1`, `mode` and `max_age` once
 * (repeats keep the first, §3.2), `mx` one or more times unless the mode is "none", each
 * `["*."] Domain`; unknown fields ignored. A line that is not a field makes the whole policy
 * invalid. Blank lines are tolerated (many published policies end with one, and refusing them
 * would turn an enforced policy into none).
 */
export function parsePolicy(body: string): ParseResult<MtaStsPolicy> {
  const text = body.replace(/^\uFEFF/, "");
  let version: string | undefined;
  let mode: string | undefined;
  let maxAge: string | undefined;
  const mx: string[] = [];
  for (const rawLine of text.split("\n")) {
    const line = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    if (/^[ \t]*$/.test(line)) continue;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    // field-delim = ":" *WSP, and trailing *WSP after the value.
    const value = colon > 0 ? line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "") : "";
    if (!EXT_NAME.test(name) || !POLICY_VALUE.test(value))
      return { ok: false, error: `malformed line ${JSON.stringify(line.slice(0, 80))}` };
    switch (name) {
      case "version":
        version ??= value;
        break;
      case "mode":
        mode ??= value;
        break;
      case "max_age":
        maxAge ??= value;
        break;
      case "mx": {
        const pattern = value.toLowerCase().replace(/\.$/, "");
        if (!MX_PATTERN.test(pattern) || pattern.length > 255)
          return { ok: false, error: `invalid mx pattern ${JSON.stringify(value.slice(0, 80))}` };
        if (!mx.includes(pattern)) mx.push(pattern);
        break;
      }
      default:
        break; // an extension field: ignored (§3.2)
    }
  }
  if (version !== "STSv1")
    return { ok: false, error: version ? `version ${version} is not STSv1` : "no version" };
  if (mode !== "enforce" && mode !== "testing" && mode !== "none")
    return { ok: false, error: mode ? `invalid mode ${JSON.stringify(mode)}` : "no mode" };
  if (maxAge === undefined || !MAX_AGE_VALUE.test(maxAge))
    return { ok: false, error: maxAge ? `invalid max_age ${JSON.stringify(maxAge)}` : "no max_age" };
  if (mode !== "none" && mx.length === 0) return { ok: false, error: "no mx field" };
  return { ok: true, value: { mode, mx, maxAgeS: Math.min(Number(maxAge), MAX_AGE_LIMIT_S) } };
}

/**
 * Whether an MX host name matches one of a policy's patterns (RFC 8461 §4.1): exact match, or
 * "*.example.com" standing for exactly one left-most label ("mx.example.com", but neither
 * "example.com" nor "a.mx.example.com"). Case and a trailing dot do not matter.
 */
export function mxMatches(host: string, patterns: readonly string[]): boolean {
  const name = normalizeName(host);
  if (name === "" || name.includes("*")) return false;
  return patterns.some((raw) => {
    const pattern = normalizeName(raw);
    if (!pattern.startsWith("*.")) return pattern === name;
    const suffix = pattern.slice(1); // ".example.com"
    return (
      name.endsWith(suffix) && name.length > suffix.length && !name.slice(0, -suffix.length).includes(".")
    );
  });
}

function normalizeName(name: string): string {
  const trimmed = name.trim().replace(/\.$/, "").toLowerCase();
  return domainToASCII(trimmed) || trimmed;
}

export interface MtaStsResolverOptions {
  /** DNS servers as "ip" or "ip:port", as for MX look-ups; the system's when absent. */
  servers?: string[];
  dnsTimeoutMs?: number;
  dnsTries?: number;
  /** Fetch policies from non-public addresses too (ALLOW_PRIVATE_MX; tests). */
  allowPrivate?: boolean;
  /** Extra trusted CA certificates (PEM) beside Node's bundled roots (MTA_STS_CA_FILE). */
  ca?: string;
  /** Port of the policy host; 443 per RFC 8461 §3.3, others only in tests. */
  port?: number;
  fetchTimeoutMs?: number;
  /** How long a domain's DNS answer (policy id, or no policy) is reused before asking again. */
  recheckMs?: number;
  maxEntries?: number;
  now?: () => number;
  log?: (level: "debug" | "info" | "warn", message: string, fields?: Record<string, unknown>) => void;
}

export interface MtaStsResolver {
  /**
   * The policy that applies to mail for `domain` now (mode "none" included), or null when the
   * domain has none. Never throws; failures are logged and mean "no live policy" (see header).
   */
  policyFor(domain: string): Promise<DomainPolicy | null>;
  /** Cached domains, for tests and /metrics. */
  size(): number;
  close(): void;
}

interface CacheEntry {
  /** When DNS was last asked for this domain. */
  checkedAt: number;
  policy: DomainPolicy | null;
  /** When `policy` stops applying (fetch time + max_age). */
  expiresAt: number;
}

interface DnsError {
  code?: string;
}
const dnsCode = (err: unknown): string | undefined =>
  typeof err === "object" && err !== null ? (err as DnsError).code : undefined;
/** "No such record" and "no such name": the domain simply has no policy. */
const isAbsent = (err: unknown) => dnsCode(err) === "ENODATA" || dnsCode(err) === "ENOTFOUND";

export function createMtaStsResolver(options: MtaStsResolverOptions = {}): MtaStsResolver {
  const resolver = new Resolver({ timeout: options.dnsTimeoutMs ?? 5_000, tries: options.dnsTries ?? 2 });
  if (options.servers?.length) resolver.setServers(options.servers);
  const now = options.now ?? Date.now;
  const recheckMs = options.recheckMs ?? DEFAULT_RECHECK_MS;
  const maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES);
  const fetchTimeoutMs = options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const port = options.port ?? 443;
  // Built once: `ca` replaces Node's bundled roots, so the extra CA is added to them.
  const secureContext = options.ca
    ? createSecureContext({ ca: [...rootCertificates, options.ca] })
    : undefined;
  const log = options.log ?? (() => {});
  const cache = new Map<string, CacheEntry>();
  const inFlight = new Map<string, Promise<DomainPolicy | null>>();
  /** Policy requests under way, ended by close() so a drain does not wait out their timeouts. */
  const requests = new Set<ClientRequest>();
  let closed = false;

  function store(domain: string, entry: CacheEntry): void {
    cache.delete(domain); // re-inserted last: Map order is the eviction order
    if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string);
    cache.set(domain, entry);
  }

  /** The addresses of the policy host we may connect to, or an error saying why there are none. */
  async function policyHostAddresses(host: string): Promise<ParseResult<string[]>> {
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
    const found: string[] = [];
    for (const settled of [v4, v6]) {
      if (settled.status === "fulfilled") found.push(...settled.value);
      else if (!isAbsent(settled.reason))
        return {
          ok: false,
          error: `address look-up for ${host} failed: ${dnsCode(settled.reason) ?? "error"}`,
        };
    }
    if (found.length === 0) return { ok: false, error: `${host} has no A or AAAA record` };
    if (options.allowPrivate) return { ok: true, value: found };
    const usable = found.filter((a) => nonPublicReason(a) === null);
    if (usable.length === 0) {
      const refused = found.map((a) => `${a} (${nonPublicReason(a)})`).join(", ");
      return { ok: false, error: `${host} resolves only to addresses that are not public: ${refused}` };
    }
    return { ok: true, value: usable };
  }

  /** One HTTPS GET of the policy from one address; resolves with the body or an error. */
  function get(host: string, address: string, deadline: number): Promise<ParseResult<string>> {
    return new Promise((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let req: ClientRequest | undefined;
      const done = (result: ParseResult<string>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (req) requests.delete(req);
        if (!result.ok) req?.destroy();
        resolve(result);
      };
      const tooLarge = { ok: false as const, error: `policy larger than ${MAX_POLICY_BYTES} bytes` };
      try {
        req = request(
          {
            host: address,
            family: isIP(address),
            port,
            path: POLICY_PATH,
            method: "GET",
            servername: host,
            headers: { host: port === 443 ? host : `${host}:${port}`, accept: "text/plain" },
            rejectUnauthorized: true,
            ...(secureContext ? { secureContext } : {}),
            // A fresh connection each time: no session verified under other options is reused.
            agent: false,
          },
          (res) => {
            if (res.statusCode !== 200) {
              // 3xx included: RFC 8461 §3.3 "HTTP 3xx redirects MUST NOT be followed".
              return done({
                ok: false,
                error: `HTTP ${res.statusCode ?? "?"} from https://${host}${POLICY_PATH}`,
              });
            }
            const type = (res.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
            if (type !== "text/plain") {
              const got = JSON.stringify(res.headers["content-type"] ?? "");
              return done({ ok: false, error: `Content-Type ${got} is not text/plain` });
            }
            if (Number(res.headers["content-length"] ?? 0) > MAX_POLICY_BYTES) return done(tooLarge);
            const chunks: Buffer[] = [];
            let bytes = 0;
            res.on("data", (chunk: Buffer) => {
              bytes += chunk.length;
              if (bytes > MAX_POLICY_BYTES) return done(tooLarge);
              chunks.push(chunk);
            });
            res.on("end", () => done({ ok: true, value: Buffer.concat(chunks).toString("utf8") }));
            res.on("error", (err) => done({ ok: false, error: err.message }));
            res.on("close", () => {
              if (!res.complete) done({ ok: false, error: "response cut short" });
            });
          },
        );
      } catch (err) {
        return done({ ok: false, error: err instanceof Error ? err.message : String(err) });
      }
      requests.add(req);
      req.on("error", (err) => done({ ok: false, error: err.message }));
      req.on("close", () => done({ ok: false, error: "connection closed before a response" }));
      timer = setTimeout(
        () => done({ ok: false, error: `no policy within ${fetchTimeoutMs} ms` }),
        Math.max(0, deadline - Date.now()),
      );
      req.end();
    });
  }

  async function fetchPolicy(domain: string): Promise<ParseResult<MtaStsPolicy>> {
    const host = `mta-sts.${domain}`;
    // Real time, not the injected clock: this bounds a network wait.
    const deadline = Date.now() + fetchTimeoutMs;
    const addresses = await policyHostAddresses(host);
    if (!addresses.ok) return addresses;
    let error = `no policy within ${fetchTimeoutMs} ms`;
    // The next address only when one fails (refused, reset, bad certificate, HTTP error).
    for (const address of addresses.value) {
      if (Date.now() >= deadline) break;
      const got = await get(host, address, deadline);
      if (got.ok) return parsePolicy(got.value);
      error = got.error;
    }
    return { ok: false, error };
  }

  async function refresh(domain: string, cached: CacheEntry | undefined): Promise<DomainPolicy | null> {
    const stillValid = cached?.policy && cached.expiresAt > now() ? cached.policy : null;
    const keep = (reason: string): DomainPolicy | null => {
      if (stillValid)
        log("info", "no live MTA-STS policy, applying the cached one", { domain, reason, id: stillValid.id });
      return stillValid;
    };
    let records: string[][];
    try {
      records = await resolver.resolveTxt(`_mta-sts.${domain}`);
    } catch (err) {
      if (!isAbsent(err)) {
        // Not remembered: the next message asks again (the cached policy still applies meanwhile).
        log("info", "MTA-STS TXT look-up failed", { domain, code: dnsCode(err) ?? String(err) });
        return keep(`TXT look-up failed: ${dnsCode(err) ?? "error"}`);
      }
      records = [];
    }
    const checkedAt = now();
    const record = selectStsRecord(records);
    if (!record.ok) {
      if (records.length > 0) log("info", "unusable MTA-STS TXT record", { domain, error: record.error });
      store(domain, { checkedAt, policy: stillValid, expiresAt: cached?.expiresAt ?? 0 });
      return keep(record.error);
    }
    if (stillValid && stillValid.id === record.value) {
      store(domain, { checkedAt, policy: stillValid, expiresAt: cached?.expiresAt ?? 0 });
      return stillValid;
    }
    const fetched = await fetchPolicy(domain);
    if (!fetched.ok) {
      log("warn", "MTA-STS policy fetch failed", { domain, id: record.value, error: fetched.error });
      store(domain, { checkedAt: now(), policy: stillValid, expiresAt: cached?.expiresAt ?? 0 });
      return keep(fetched.error);
    }
    const policy: DomainPolicy = { ...fetched.value, domain, id: record.value };
    const fetchedAt = now();
    store(domain, { checkedAt: fetchedAt, policy, expiresAt: fetchedAt + policy.maxAgeS * 1_000 });
    log("info", "MTA-STS policy fetched", { domain, id: policy.id, mode: policy.mode, mx: policy.mx });
    return policy;
  }

  return {
    async policyFor(rawDomain) {
      const domain = normalizeName(rawDomain);
      if (closed || domain === "" || isIP(domain)) return null;
      const cached = cache.get(domain);
      if (cached && now() - cached.checkedAt < recheckMs)
        return cached.policy && cached.expiresAt > now() ? cached.policy : null;
      const running = inFlight.get(domain);
      if (running) return running;
      const lookup = refresh(domain, cached)
        .catch((err: unknown) => {
          log("warn", "MTA-STS look-up failed", {
            domain,
            error: err instanceof Error ? err.message : String(err),
          });
          return cached?.policy && cached.expiresAt > now() ? cached.policy : null;
        })
        .finally(() => inFlight.delete(domain));
      inFlight.set(domain, lookup);
      return lookup;
    },
    size: () => cache.size,
    close() {
      closed = true;
      resolver.cancel();
      for (const req of requests) req.destroy(new Error("MTA-STS resolver closed"));
      requests.clear();
      cache.clear();
    },
  };
}
