/**
 * Attachments and large bodies in R2 (the `BLOBS` binding), by reference (docs/architecture.md,
 * "Blobs in R2"). A delivery job never carries the bytes: it carries a BlobRef, and the origin
 * fetches the object through `GET /origin/blobs/<key>` (surfaces/origin-blobs.ts).
 *
 * Keys are `blobs/<yyyymmdd>/<tenant id>/<sha256 hex>`:
 *  - content-addressed per tenant, so the same attachment in N personalizations, a client's retry
 *    or a duplicate request on the same day is stored once (a second put writes the same bytes);
 *  - grouped by the UTC day of the accept, which is the retention rule: every message that names a
 *    day's objects was accepted that day, so it is finished (delivered, bounced, failed or expired)
 *    by the end of that day plus BLOB_RETENTION_MS, and the cron sweeper then deletes the whole day
 *    (`sweepBlobDays`). A new accept never writes into a past day, so a delete cannot race a put
 *    that still needs the object (an expiry in object metadata could: R2 deletes are unconditional).
 *  - the tenant id is in the key, and the origin checks it against the job's tenant.
 * Sandbox sends store nothing here.
 */
import { BlobRefSchema, type BlobRef } from "../../../shared/link/protocol.ts";
import { MAX_SCHEDULE_AHEAD_SECONDS } from "../../../shared/sendgrid/mail-send.ts";

export const BLOB_PREFIX = "blobs/";
const DAY_MS = 86_400_000;

/** UTC day of `now` as yyyymmdd. */
export function blobDay(now: number): string {
  return new Date(now).toISOString().slice(0, 10).replaceAll("-", "");
}

export function blobKey(tenantId: string, sha256: string, now: number): string {
  return `${BLOB_PREFIX}${blobDay(now)}/${tenantId}/${sha256}`;
}

/** Only keys of the form this module writes (the route serves nothing else). */
export function isBlobKey(key: string): boolean {
  return BlobRefSchema.shape.key.safeParse(key).success;
}

/**
 * How long after the end of its day a day's objects may still be needed: the maximum queue age
 * (a message is finished by then), plus how far ahead a send may be scheduled (in case a scheduled
 * message's queue age counts from its send time), plus a day of margin for clocks and a late sweep.
 */
export function blobRetentionMs(maxQueueAgeMs: number): number {
  return maxQueueAgeMs + MAX_SCHEDULE_AHEAD_SECONDS * 1000 + DAY_MS;
}

export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A blob to store: where, and its bytes. */
export interface PendingBlob {
  ref: BlobRef;
  bytes: Uint8Array<ArrayBuffer>;
}

/**
 * Collects one request's blobs: `add` hashes the bytes and returns the reference; the same bytes
 * added again (another personalization, the same file attached twice) return the same key and are
 * stored once by `storeAll`.
 */
export class RequestBlobs {
  private readonly pending = new Map<string, PendingBlob>();

  constructor(
    private readonly tenantId: string,
    private readonly now: number,
  ) {}

  async add(bytes: Uint8Array<ArrayBuffer>): Promise<BlobRef> {
    const sha256 = await sha256Hex(bytes);
    const ref: BlobRef = { key: blobKey(this.tenantId, sha256, this.now), size: bytes.byteLength, sha256 };
    if (!this.pending.has(ref.key)) this.pending.set(ref.key, { ref, bytes });
    return ref;
  }

  /** Distinct blobs and their total size, for the request's limits. */
  get count(): number {
    return this.pending.size;
  }
  get bytes(): number {
    let n = 0;
    for (const p of this.pending.values()) n += p.bytes.byteLength;
    return n;
  }

  /**
   * One put per distinct blob, in parallel. Called only after every check of the request passed;
   * a put that fails fails the request (nothing was accepted; objects already written are deleted
   * with their day).
   */
  async storeAll(bucket: Pick<R2Bucket, "put">): Promise<void> {
    await Promise.all(
      [...this.pending.values()].map((p) =>
        bucket.put(p.ref.key, p.bytes, {
          sha256: p.ref.sha256,
          customMetadata: { size: String(p.ref.size) },
        }),
      ),
    );
  }
}

/**
 * The cron sweeper's part: deletes every day of blobs whose retention has passed. Lists the day
 * prefixes (one list call), then each expired day's objects in pages of 1,000 (R2's delete limit).
 * Returns how many objects it deleted.
 */
export async function sweepBlobDays(
  bucket: Pick<R2Bucket, "list" | "delete">,
  now: number,
  retentionMs: number,
): Promise<number> {
  const days: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix: BLOB_PREFIX, delimiter: "/", ...(cursor ? { cursor } : {}) });
    days.push(...page.delimitedPrefixes);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  let deleted = 0;
  for (const prefix of days) {
    const day = /^blobs\/(\d{4})(\d{2})(\d{2})\/$/.exec(prefix);
    if (!day) continue;
    const dayEnd = Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3])) + DAY_MS;
    if (now < dayEnd + retentionMs) continue;
    let more: string | undefined;
    do {
      const page = await bucket.list({ prefix, limit: 1000, ...(more ? { cursor: more } : {}) });
      const keys = page.objects.map((o) => o.key);
      if (keys.length > 0) await bucket.delete(keys);
      deleted += keys.length;
      more = page.truncated ? page.cursor : undefined;
    } while (more);
  }
  return deleted;
}
