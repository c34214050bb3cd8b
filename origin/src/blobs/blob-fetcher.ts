/**
 * Fetches the blobs delivery jobs name by reference (attachments, large bodies) from the edge:
 * `GET <EDGE_URL>/origin/blobs/<key>` with the origin token as a bearer token
 * (docs/link-protocol.md#blobs). Each blob is checked against its reference (size, SHA-256) and
 * kept in a bounded in-memory LRU cache, so the many messages of one request, which share their
 * attachments, fetch each of them once; concurrent requests for one key share one fetch.
 *
 * Errors are typed, so the caller can tell the two outcomes apart:
 *  - BlobMissingError: the edge answered 404, the object is gone (deleted by retention): the
 *    message can never be built, so it fails;
 *  - BlobFetchError: anything else (network, timeout, 5xx, 401, a size or digest mismatch): it may
 *    work later, so the message is deferred.
 */
import { createHash } from "node:crypto";
import type { BlobRef } from "../../../shared/link/protocol.ts";

export class BlobMissingError extends Error {
  override name = "BlobMissingError";
}
export class BlobFetchError extends Error {
  override name = "BlobFetchError";
}

export interface BlobFetcherOptions {
  /** The edge's base URL (EDGE_URL, already http(s)://). */
  edgeUrl: string;
  /** ORIGIN_TOKEN. */
  token: string;
  /** BLOB_CACHE_BYTES: the cache's bound; a blob larger than it is used once and not kept. */
  maxCacheBytes: number;
  /** BLOB_FETCH_TIMEOUT_MS: one fetch, headers to last byte. */
  timeoutMs: number;
  /** Tests: another fetch. */
  fetch?: typeof fetch;
}

export interface BlobFetcherStats {
  cachedBlobs: number;
  cachedBytes: number;
  fetches: number;
  hits: number;
}

export interface BlobFetcher {
  /** The blob's bytes, verified; `timeoutMs` shortens this call's limit (the job's deadline). */
  get(ref: BlobRef, opts?: { timeoutMs?: number }): Promise<Buffer>;
  stats(): BlobFetcherStats;
}

export function createBlobFetcher(options: BlobFetcherOptions): BlobFetcher {
  const doFetch = options.fetch ?? fetch;
  const base = options.edgeUrl.replace(/\/+$/, "");
  // Map order is insertion order: re-inserting on a hit makes the first key the least recently used.
  const cache = new Map<string, Buffer>();
  let cachedBytes = 0;
  const inFlight = new Map<string, Promise<Buffer>>();
  let fetches = 0;
  let hits = 0;

  function remember(key: string, bytes: Buffer): void {
    if (bytes.length > options.maxCacheBytes) return;
    cache.set(key, bytes);
    cachedBytes += bytes.length;
    for (const [k, v] of cache) {
      if (cachedBytes <= options.maxCacheBytes) break;
      cache.delete(k);
      cachedBytes -= v.length;
    }
  }

  async function fetchOnce(ref: BlobRef, timeoutMs: number): Promise<Buffer> {
    fetches++;
    const url = `${base}/origin/${ref.key.split("/").map(encodeURIComponent).join("/")}`;
    let res: Response;
    let body: ArrayBuffer;
    try {
      res = await doFetch(url, {
        headers: { authorization: `Bearer ${options.token}` },
        signal: AbortSignal.timeout(timeoutMs),
        redirect: "error",
      });
      if (res.status === 404) {
        await res.body?.cancel();
        throw new BlobMissingError(`blob ${ref.key} is no longer stored at the edge (404)`);
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new BlobFetchError(`fetching blob ${ref.key}: the edge answered ${res.status}`);
      }
      const length = Number(res.headers.get("content-length") ?? ref.size);
      if (length !== ref.size) {
        await res.body?.cancel();
        throw new BlobFetchError(`fetching blob ${ref.key}: ${length} bytes announced, ${ref.size} expected`);
      }
      body = await res.arrayBuffer();
    } catch (err) {
      if (err instanceof BlobMissingError || err instanceof BlobFetchError) throw err;
      const reason =
        err instanceof Error && err.name === "TimeoutError" ? `timed out after ${timeoutMs} ms` : String(err);
      throw new BlobFetchError(`fetching blob ${ref.key}: ${reason}`);
    }
    const bytes = Buffer.from(body);
    if (bytes.length !== ref.size) {
      throw new BlobFetchError(`blob ${ref.key}: ${bytes.length} bytes received, ${ref.size} expected`);
    }
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (digest !== ref.sha256)
      throw new BlobFetchError(`blob ${ref.key}: SHA-256 ${digest} does not match its reference`);
    return bytes;
  }

  return {
    async get(ref, opts = {}) {
      const cached = cache.get(ref.key);
      if (cached) {
        hits++;
        cache.delete(ref.key);
        cache.set(ref.key, cached);
        return cached;
      }
      let pending = inFlight.get(ref.key);
      if (!pending) {
        pending = fetchOnce(
          ref,
          Math.max(1, Math.floor(Math.min(options.timeoutMs, opts.timeoutMs ?? Infinity))),
        );
        inFlight.set(ref.key, pending);
        void pending.then(
          (bytes) => {
            inFlight.delete(ref.key);
            remember(ref.key, bytes);
          },
          () => inFlight.delete(ref.key),
        );
      } else {
        hits++;
      }
      return await pending;
    },
    stats: () => ({ cachedBlobs: cache.size, cachedBytes, fetches, hits }),
  };
}
