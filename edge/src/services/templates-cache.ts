/**
 * activeTemplateVersion(tenantId, templateId): the version a send with this template_id would use,
 * held in isolate memory like the catalog cache (services/catalog-cache.ts; docs/templates.md).
 * The send path (services/send-mail.ts) calls it for every send with a template_id.
 *
 * Invariants:
 *  - Staleness: a change made through ANOTHER isolate (a version activated or edited, a template
 *    deleted) is seen here within AUTH_CACHE_TTL_MS (default 10 s) plus a read replica's lag. A
 *    change made through THIS isolate calls `forget` (services/templates.ts does on every write) and
 *    is seen at once; for the TTL after it, misses read the primary, so a lagging replica cannot
 *    put the old answer back.
 *  - A refusal (no such template, or no active version) is never decided on a replica's word: it is
 *    read again on the primary before it is answered or cached, and a cached refusal is served for at
 *    most REFUSAL_RECHECK_MS, so a template created or activated a moment ago elsewhere is found
 *    within a second.
 *  - Bounded memory: at most MAX_CACHED_TEMPLATES answers and MAX_UNKNOWN_TEMPLATES refusals (least
 *    recently used evicted first), and content is kept only for versions up to MAX_CACHED_CONTENT_BYTES:
 *    a larger version's metadata is cached and its content read from D1 on each call. So the cache
 *    holds at most 256 × 64 KiB of template text.
 *  - AUTH_CACHE_TTL_MS = 0 turns it off (every call reads D1).
 */
import { createDb, type Db } from "../db/client.ts";
import { tenantTemplates } from "../db/templates.ts";
import type { TemplateGeneration } from "../db/schema.ts";
import { IsolateCache, MISSING, type Clock, type Loaded } from "../lib/isolate-cache.ts";
import { DEFAULT_AUTH_CACHE_TTL_MS, REFUSAL_RECHECK_MS, catalogCache } from "./catalog-cache.ts";

export const MAX_CACHED_TEMPLATES = 256;
export const MAX_UNKNOWN_TEMPLATES = 2_000;
export const MAX_CACHED_CONTENT_BYTES = 65_536;

/** What a send needs from the template: which version, and the parts the origin will render. */
export interface ActiveTemplateVersion {
  templateId: string;
  generation: TemplateGeneration;
  versionId: string;
  versionName: string;
  subject: string;
  htmlContent: string;
  plainContent: string;
  preheader: string | null;
  /** Unix ms of the version's last change: with versionId, names exactly what was rendered. */
  updatedAt: number;
  /** The content snapshot's hash in R2, null until written (services/template-snapshots.ts). */
  snapshotSha256: string | null;
}

type Content = Pick<ActiveTemplateVersion, "subject" | "htmlContent" | "plainContent" | "preheader">;
type Entry = Omit<ActiveTemplateVersion, keyof Content> & { content: Content | null };
/** The cached answer as it is: the version's metadata, and its content when small enough to keep. */
export type ActiveTemplateHead = Entry;

type Constraint = "first-unconstrained" | "first-primary";
const sessionDb = (d1: D1Database, constraint: Constraint): Db =>
  createDb(d1.withSession(constraint) as unknown as D1Database);

const cacheKey = (tenantId: string, templateId: string) => `${tenantId}\u0000${templateId}`;
const bytes = (s: string | null) => (s ? new TextEncoder().encode(s).byteLength : 0);

async function readActive(db: Db, tenantId: string, templateId: string): Promise<Loaded<Entry>> {
  const found = await tenantTemplates(db, tenantId).getActiveVersion(templateId);
  if (!found) return MISSING;
  const v = found.version;
  const content: Content = {
    subject: v.subject,
    htmlContent: v.htmlContent,
    plainContent: v.plainContent,
    preheader: v.preheader,
  };
  const size = bytes(v.subject) + bytes(v.htmlContent) + bytes(v.plainContent) + bytes(v.preheader);
  return {
    templateId,
    generation: found.generation,
    versionId: v.id,
    versionName: v.name,
    updatedAt: v.updatedAt,
    snapshotSha256: v.snapshotSha256,
    content: size <= MAX_CACHED_CONTENT_BYTES ? content : null,
  };
}

export class TemplateCache {
  private readonly entries: IsolateCache<string, Entry>;
  private primaryReadsUntil = Number.NEGATIVE_INFINITY;

  constructor(public clock: Clock = Date.now) {
    this.entries = new IsolateCache(MAX_CACHED_TEMPLATES, MAX_UNKNOWN_TEMPLATES, () => this.clock());
  }

  /** The TTL is the catalog cache's, which the app sets from AUTH_CACHE_TTL_MS on every request. */
  async activeVersion(
    d1: D1Database,
    tenantId: string,
    templateId: string,
    ttlMs = catalogCache.ttlMs,
  ): Promise<ActiveTemplateVersion | null> {
    const entry = await this.activeHead(d1, tenantId, templateId, ttlMs);
    if (entry === null) return null;
    const { content, ...meta } = entry;
    if (content) return { ...meta, ...content };
    // Too large to keep: this call reads it (the version named by the cached answer).
    const v = await tenantTemplates(sessionDb(d1, this.firstConstraint()), tenantId).getVersion(
      templateId,
      meta.versionId,
    );
    if (!v) {
      // Deleted since it was cached: forget it and ask once more, uncached.
      this.forget(tenantId, templateId);
      if (ttlMs === 0) return null;
      return this.activeVersion(d1, tenantId, templateId, 0);
    }
    return {
      ...meta,
      subject: v.subject,
      htmlContent: v.htmlContent,
      plainContent: v.plainContent,
      preheader: v.preheader,
    };
  }

  /**
   * The cached answer without reading a large version's content: what the send path needs when it
   * already knows the version's snapshot (services/template-snapshots.ts), so a warm send of a large
   * template makes no D1 read either.
   */
  async activeHead(
    d1: D1Database,
    tenantId: string,
    templateId: string,
    ttlMs = catalogCache.ttlMs,
  ): Promise<ActiveTemplateHead | null> {
    const key = cacheKey(tenantId, templateId);
    // A cached refusal is trusted for a second at most (peek drops it when older).
    if (ttlMs > 0 && this.entries.peek(key, ttlMs) === MISSING) {
      this.entries.peek(key, Math.min(ttlMs, REFUSAL_RECHECK_MS));
    }
    const entry = await this.entries.get(key, ttlMs, async () => {
      const first = await readActive(sessionDb(d1, this.firstConstraint()), tenantId, templateId);
      if (first !== MISSING) return first;
      return readActive(sessionDb(d1, "first-primary"), tenantId, templateId);
    });
    return entry === MISSING ? null : entry;
  }

  /** The template, or its versions, changed through this isolate. */
  forget(tenantId: string, templateId: string): void {
    this.entries.delete(cacheKey(tenantId, templateId));
    this.primaryReadsUntil = this.clock() + Math.max(catalogCache.ttlMs, DEFAULT_AUTH_CACHE_TTL_MS);
  }

  clear(): void {
    this.entries.clear();
    this.primaryReadsUntil = Number.NEGATIVE_INFINITY;
  }

  size() {
    return this.entries.size;
  }

  private firstConstraint(): Constraint {
    return this.clock() < this.primaryReadsUntil ? "first-primary" : "first-unconstrained";
  }
}

/** This isolate's cache. */
export const templateCache = new TemplateCache();

/**
 * The active version of the tenant's template, or null when the tenant has no such template or it
 * has no active version (a send naming it is then a 400). Takes the send path's drizzle handle.
 */
export function activeTemplateVersion(
  db: Db,
  tenantId: string,
  templateId: string,
): Promise<ActiveTemplateVersion | null> {
  return templateCache.activeVersion(db.$client, tenantId, templateId);
}

/** The same answer's metadata, with its content only when cached (TemplateCache.activeHead). */
export function activeTemplateHead(
  db: Db,
  tenantId: string,
  templateId: string,
): Promise<ActiveTemplateHead | null> {
  return templateCache.activeHead(db.$client, tenantId, templateId);
}
