/**
 * The check before dispatch as one D1 query (docs/architecture.md, "Suppressions"): which (tenant,
 * address) pairs are on a list that drops a send or unsubscribed from a group. Kept apart from
 * db/suppressions.ts and typed against the few D1 methods it calls, so the benchmark
 * (test/bench/suppressions.ts) runs this very code from Node against Miniflare's D1.
 */
import type { SuppressionList } from "./schema.ts";

export const normalizeEmail = (email: string) => email.trim().toLowerCase();

/** The D1 calls the lookup makes (D1Database has them; so has Miniflare's D1 proxy in Node). */
export interface D1Like<S> {
  prepare(query: string): { bind(...values: unknown[]): S };
  batch<T>(statements: S[]): Promise<{ results: T[]; meta: { rows_read?: number } }[]>;
}

/** A recipient the check found: on a list (`list`), or unsubscribed from a group (`groupId`). */
export interface SuppressionHit {
  tenantId: string;
  email: string;
  list: SuppressionList | null;
  groupId: number | null;
}

/**
 * The lists that drop a send. Blocks do not: SendGrid keeps sending to a blocked address (a block
 * is about the message or the sender, not the recipient), the list is for reporting.
 */
export const DROPPING_LISTS = ["bounces", "invalid_emails", "spam_reports", "unsubscribes"] as const;

/** Recipients per statement: 1,000 addresses make a JSON parameter of ~40 KB. */
const CHECK_CHUNK = 2_000;

/**
 * The check before dispatch: which of these (tenant, address) pairs are on a dropping list or
 * unsubscribed from any group. One statement per 2,000 pairs, each pair one probe of the unique
 * indexes (`suppressions_pk`, `asm_group_suppressions_pk`); the caller decides, per message, which
 * hits apply (bypass flags, the message's group). Returns the rows and D1's rows_read.
 * Cross-tenant by design: the hub checks one flush's recipients, of many tenants, in one statement;
 * every pair carries its own tenant, so a hit is never another tenant's.
 */
export async function findSuppressed<S>(
  d1: D1Like<S>,
  pairs: { tenantId: string; email: string }[],
): Promise<{ hits: SuppressionHit[]; rowsRead: number }> {
  const seen = new Set<string>();
  const unique: [string, string][] = [];
  for (const p of pairs) {
    const email = normalizeEmail(p.email);
    const key = `${p.tenantId}\n${email}`;
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push([p.tenantId, email]);
  }
  const statements: S[] = [];
  for (let i = 0; i < unique.length; i += CHECK_CHUNK) {
    const json = JSON.stringify(unique.slice(i, i + CHECK_CHUNK));
    statements.push(d1.prepare(FIND_SUPPRESSED_SQL).bind(json, json));
  }
  const hits: SuppressionHit[] = [];
  let rowsRead = 0;
  if (statements.length === 0) return { hits, rowsRead };
  for (const r of await d1.batch<{
    t: string;
    e: string;
    list: SuppressionList | null;
    group_id: number | null;
  }>(statements)) {
    rowsRead += r.meta.rows_read ?? 0;
    for (const row of r.results)
      hits.push({ tenantId: row.t, email: row.e, list: row.list, groupId: row.group_id });
  }
  return { hits, rowsRead };
}

const PAIRS = `(SELECT json_extract(value, '$[0]') AS t, json_extract(value, '$[1]') AS e FROM json_each(?))`;
const FIND_SUPPRESSED_SQL = `SELECT j.t AS t, j.e AS e, s.list AS list, NULL AS group_id FROM ${PAIRS} AS j
    JOIN suppressions AS s ON s.tenant_id = j.t AND s.email = j.e
    WHERE s.list IN (${DROPPING_LISTS.map((l) => `'${l}'`).join(", ")})
  UNION ALL
  SELECT j.t, j.e, NULL, g.group_id FROM ${PAIRS} AS j
    JOIN asm_group_suppressions AS g ON g.tenant_id = j.t AND g.email = j.e`;
