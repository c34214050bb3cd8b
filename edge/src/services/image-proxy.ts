/**
 * The image proxy's fetch (docs/api/images.md#the-image-proxy): an external image a message names,
 * loaded by the edge for a recipient's mail client. The URL comes from a signed token (only URLs
 * that were in a tenant's HTML), but a tenant writes that HTML, so the fetch goes through the same
 * SSRF guard as webhooks (services/webhook-ssrf.ts) at every hop:
 *  - http or https only; every address the host resolves to must be public (loopback, private,
 *    link-local and metadata, CGNAT, … are refused; `localhost` without a look-up). Plain http is
 *    allowed, since many newsletters still link images over it, but only to public addresses;
 *  - redirects are followed by hand, at most MAX_REDIRECTS, each Location checked like the URL;
 *  - the answer must be 200 within FETCH_TIMEOUT_MS and at most MAX_PROXY_BYTES (a Content-Length
 *    over it is refused before the body is read, a body that grows past it is cut off);
 *  - the bytes must be a whole JPEG, PNG, GIF or WebP (services/image-sniff.ts); what the upstream's
 *    Content-Type says plays no part, and the type served is the sniffed one.
 * No operator allowlist applies here (WEBHOOK_ALLOW_PRIVATE is for the operator's own webhook
 * receivers): a proxied image never comes from a private address.
 */
import { readCapped } from "../lib/read-capped.ts";
import { sniffImage, type ImageType } from "./image-sniff.ts";
import { checkUrl, MAX_REDIRECTS, UnsafeUrlError, type Allowlist, type Resolver } from "./webhook-ssrf.ts";

/** The most bytes an upstream image may have (the image library's own limit). */
export const MAX_PROXY_BYTES = 10 * 1024 * 1024;
export const FETCH_TIMEOUT_MS = 10_000;

export type ProxyOutcome =
  | { ok: true; type: ImageType; bytes: Uint8Array; cacheControl: string }
  | { ok: false; status: 403 | 502 | 504; detail: string };

export interface ProxyDeps {
  resolve: Resolver;
  fetch: (req: Request) => Promise<Response>;
  /** Empty in production (see above); tests of the guard's allowlist pass one. */
  allow?: Allowlist;
  maxBytes?: number;
  timeoutMs?: number;
}

const NO_ALLOWLIST: Allowlist = { hosts: new Set(), ranges: [] };
/** How long recipients' clients and caches may keep a proxied image: a day, or less if the upstream says so. */
const MAX_AGE = 86_400;

function cacheControlOf(upstream: string | null): string {
  const m = upstream ? /(?:^|,)\s*max-age\s*=\s*"?(\d+)/i.exec(upstream) : null;
  const age = m ? Math.min(Number(m[1]), MAX_AGE) : MAX_AGE;
  if (upstream && /(?:^|,)\s*(no-store|private)\b/i.test(upstream)) return "private, max-age=0, no-store";
  return `public, max-age=${age}`;
}

export async function fetchProxiedImage(url: string, deps: ProxyDeps): Promise<ProxyOutcome> {
  const maxBytes = deps.maxBytes ?? MAX_PROXY_BYTES;
  const timeoutMs = deps.timeoutMs ?? FETCH_TIMEOUT_MS;
  const signal = AbortSignal.timeout(timeoutMs);
  const guard = { resolve: deps.resolve, allow: deps.allow ?? NO_ALLOWLIST, allowHttpAnywhere: true };
  let target = url;
  try {
    for (let hop = 0; ; hop++) {
      const checked = await checkUrl(target, guard);
      const res = await deps.fetch(
        new Request(checked.toString(), {
          method: "GET",
          headers: {
            accept: "image/jpeg, image/png, image/gif, image/webp",
            "user-agent": "ScaiSend-ImageProxy/1",
          },
          redirect: "manual",
          signal,
        }),
      );
      const location = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        if (hop >= MAX_REDIRECTS)
          return { ok: false, status: 502, detail: `more than ${MAX_REDIRECTS} redirects` };
        target = new URL(location, checked).toString();
        continue;
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        return { ok: false, status: 502, detail: `the image's host answered HTTP ${res.status}` };
      }
      const declared = Number(res.headers.get("content-length") ?? "0");
      if (declared > maxBytes) {
        await res.body?.cancel();
        return { ok: false, status: 502, detail: `the image is over ${maxBytes} bytes` };
      }
      const bytes = await readCapped(res, maxBytes);
      if (!bytes) return { ok: false, status: 502, detail: `the image is over ${maxBytes} bytes` };
      const sniffed = sniffImage(bytes);
      if (!sniffed.ok)
        return {
          ok: false,
          status: 502,
          detail: `the answer is not a JPEG, PNG, GIF or WebP image (${sniffed.message})`,
        };
      return {
        ok: true,
        type: sniffed.type,
        bytes,
        cacheControl: cacheControlOf(res.headers.get("cache-control")),
      };
    }
  } catch (err) {
    if (err instanceof UnsafeUrlError)
      return {
        ok: false,
        status: 403,
        detail: `refused: ${err.message.replace(/ \(not allowed for webhooks\)$/, "")}`,
      };
    if (signal.aborted) return { ok: false, status: 504, detail: `no answer within ${timeoutMs / 1000} s` };
    return { ok: false, status: 502, detail: err instanceof Error ? err.message : String(err) };
  }
}
