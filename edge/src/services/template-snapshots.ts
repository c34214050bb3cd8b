/**
 * Template version snapshots in R2 (docs/templates.md#stored-templates): a send with `template_id`
 * never copies the template into its jobs; each job names the version's content by reference,
 * `templates/<tenant id>/<sha256 hex>` (shared/templates/snapshot.ts is the format), and the origin
 * fetches it through GET /origin/templates/… like any blob, verifies it, caches it and renders.
 *
 *  - Written on the templates write path (a version created or its content changed), and its hash
 *    kept on the version row (`snapshot_sha256`), so the cached active version gives the reference at
 *    accept with no R2 call. A version saved before snapshots existed gets its snapshot at its first
 *    live send (one put, and the row updated), after which its cached row carries the hash too.
 *  - Content-addressed per tenant: the same content in two versions, or in a duplicated template, is
 *    one object, and a second put writes the same bytes.
 *  - Retention (`sweepTemplateSnapshots`, from the cron): a snapshot is kept while any version row of
 *    its tenant names its hash. Once none does (the version was edited or deleted, the template
 *    deleted), the sweep marks it (`template-gc/<tenant>/<sha256>`, an empty object whose upload
 *    time is when the sweep first saw it unreferenced), and deletes it once it has stayed unreferenced
 *    for the blob retention (services/blobs.ts `blobRetentionMs`: the maximum queue age, the
 *    scheduling horizon and a day): every message accepted while a version named it has finished by
 *    then, so messages already accepted still deliver after their template is deleted. A hash named
 *    again (the same content saved again) loses its mark. The day-based blob sweep never touches
 *    this prefix.
 */
import { and, eq, inArray } from "drizzle-orm";
import { TemplateSnapshotRefSchema, type TemplateSnapshotRef } from "../../../shared/link/protocol.ts";
import { serializeSnapshot } from "../../../shared/templates/snapshot.ts";
import type { Db } from "../db/client.ts";
import { templateVersions, type TemplateGeneration } from "../db/schema.ts";
import type { VersionRow } from "../db/templates.ts";
import { sha256Hex } from "./blobs.ts";
import type { ActiveTemplateHead } from "./templates-cache.ts";

export const SNAPSHOT_PREFIX = "templates/";
export const SNAPSHOT_MARK_PREFIX = "template-gc/";

export const snapshotKey = (tenantId: string, sha256: string) => `${SNAPSHOT_PREFIX}${tenantId}/${sha256}`;

/** Only keys of the form this module writes (the origin route serves nothing else). */
export function isTemplateSnapshotKey(key: string): boolean {
  return TemplateSnapshotRefSchema.shape.key.safeParse(key).success;
}

type Content = Pick<VersionRow, "subject" | "htmlContent" | "plainContent" | "preheader">;

/** The snapshot's bytes and its reference, computed without any I/O. */
export async function snapshotOf(
  tenantId: string,
  generation: TemplateGeneration,
  c: Content,
): Promise<{ ref: TemplateSnapshotRef; bytes: Uint8Array<ArrayBuffer> }> {
  const bytes = serializeSnapshot({
    generation,
    subject: c.subject,
    html: c.htmlContent,
    text: c.plainContent,
    preheader: c.preheader,
  });
  const sha256 = await sha256Hex(bytes);
  return { ref: { key: snapshotKey(tenantId, sha256), size: bytes.byteLength, sha256 }, bytes };
}

/** Writes the snapshot of this content (the templates write path) and returns its hash for the row. */
export async function storeSnapshot(
  bucket: Pick<R2Bucket, "put">,
  tenantId: string,
  generation: TemplateGeneration,
  c: Content,
): Promise<string> {
  const { ref, bytes } = await snapshotOf(tenantId, generation, c);
  await bucket.put(ref.key, bytes, { sha256: ref.sha256 });
  return ref.sha256;
}

/** References known stored in R2, per version revision, in this isolate. */
const MAX_MEMO = 256;
const memo = new Map<string, { ref: TemplateSnapshotRef; subject: string }>();

type Head = Pick<
  ActiveTemplateHead,
  "templateId" | "versionId" | "updatedAt" | "generation" | "snapshotSha256"
>;
export type SnapshotVersion = Head & Content;

/**
 * The reference a send's jobs carry for the active version, the version it names, its unrendered
 * subject (for the catalog), and, when the snapshot may not be in R2 yet (a version saved before
 * snapshots existed), `store`: the one put and row update that make it so, for the send path to run
 * once every check of the request passed (live only; sandbox stores nothing).
 *
 * A revision known stored is answered from memory: neither its content nor D1 is needed, so a warm
 * send of even a large template (whose content the template cache does not keep) makes no read.
 * Otherwise `load` gives the active version with its content (null: gone since), which is hashed;
 * ref, bytes and version then all come from that one answer, so what is stored is what is named.
 */
export async function snapshotRefFor(
  db: Db,
  tenantId: string,
  head: Head,
  load: () => Promise<SnapshotVersion | null>,
): Promise<{
  version: Head;
  ref: TemplateSnapshotRef;
  subject: string;
  store?: (bucket: Pick<R2Bucket, "put">) => Promise<void>;
} | null> {
  const keyOf = (v: Head) => `${tenantId}\u0000${v.versionId}\u0000${v.updatedAt}`;
  const known = memo.get(keyOf(head));
  if (known) return { version: head, ...known };
  const v = await load();
  if (!v) return null;
  const { ref, bytes } = await snapshotOf(tenantId, v.generation, v);
  const remember = () => {
    memo.set(keyOf(v), { ref, subject: v.subject });
    if (memo.size > MAX_MEMO) memo.delete(memo.keys().next().value!);
  };
  if (v.snapshotSha256 === ref.sha256) {
    remember();
    return { version: v, ref, subject: v.subject };
  }
  return {
    version: v,
    ref,
    subject: v.subject,
    store: async (bucket) => {
      await bucket.put(ref.key, bytes, { sha256: ref.sha256 });
      // Only the revision hashed: a version changed meanwhile keeps the hash its own save wrote.
      await db
        .update(templateVersions)
        .set({ snapshotSha256: ref.sha256 })
        .where(
          and(
            eq(templateVersions.tenantId, tenantId),
            eq(templateVersions.id, v.versionId),
            eq(templateVersions.updatedAt, v.updatedAt),
          ),
        );
      remember();
    },
  };
}

/** Tests: forget what this isolate computed. */
export function clearSnapshotMemo(): void {
  memo.clear();
}

/** D1 allows 100 bound parameters per statement; two go to the tenant and slack. */
const HASHES_PER_QUERY = 90;

async function referenced(db: Db, tenantId: string, hashes: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < hashes.length; i += HASHES_PER_QUERY) {
    const rows = await db
      .selectDistinct({ sha: templateVersions.snapshotSha256 })
      .from(templateVersions)
      .where(
        and(
          eq(templateVersions.tenantId, tenantId),
          inArray(templateVersions.snapshotSha256, hashes.slice(i, i + HASHES_PER_QUERY)),
        ),
      );
    for (const r of rows) if (r.sha) out.add(r.sha);
  }
  return out;
}

async function listAll(bucket: Pick<R2Bucket, "list">, prefix: string): Promise<R2Object[]> {
  const out: R2Object[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, limit: 1000, ...(cursor ? { cursor } : {}) });
    out.push(...page.objects);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return out;
}

export interface SnapshotSweep {
  marked: number;
  unmarked: number;
  deleted: number;
}

/** The cron's part for template snapshots (the retention rule above). */
export async function sweepTemplateSnapshots(
  bucket: Pick<R2Bucket, "list" | "put" | "delete">,
  db: Db,
  now: number,
  retentionMs: number,
): Promise<SnapshotSweep> {
  const result: SnapshotSweep = { marked: 0, unmarked: 0, deleted: 0 };
  const marks = new Map(
    (await listAll(bucket, SNAPSHOT_MARK_PREFIX)).map((o) => [
      o.key.slice(SNAPSHOT_MARK_PREFIX.length),
      o.uploaded.getTime(),
    ]),
  );
  const byTenant = new Map<string, string[]>();
  for (const o of await listAll(bucket, SNAPSHOT_PREFIX)) {
    if (!isTemplateSnapshotKey(o.key)) continue;
    const [, tenantId, sha] = o.key.split("/") as [string, string, string];
    let list = byTenant.get(tenantId);
    if (!list) byTenant.set(tenantId, (list = []));
    list.push(sha);
  }
  const seen = new Set<string>();
  for (const [tenantId, hashes] of byTenant) {
    const live = await referenced(db, tenantId, hashes);
    for (const sha of hashes) {
      const id = `${tenantId}/${sha}`;
      seen.add(id);
      const markedAt = marks.get(id);
      if (live.has(sha)) {
        if (markedAt !== undefined) {
          await bucket.delete(SNAPSHOT_MARK_PREFIX + id);
          result.unmarked++;
        }
      } else if (markedAt === undefined) {
        await bucket.put(SNAPSHOT_MARK_PREFIX + id, new Uint8Array(0));
        result.marked++;
      } else if (now >= markedAt + retentionMs) {
        await bucket.delete([SNAPSHOT_PREFIX + id, SNAPSHOT_MARK_PREFIX + id]);
        result.deleted++;
      }
    }
  }
  // A mark whose snapshot is gone has nothing left to guard.
  const orphans = [...marks.keys()].filter((id) => !seen.has(id)).map((id) => SNAPSHOT_MARK_PREFIX + id);
  for (let i = 0; i < orphans.length; i += 1000) await bucket.delete(orphans.slice(i, i + 1000));
  return result;
}
