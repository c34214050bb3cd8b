/**
 * `--only=suppressions`: the cost of the check before dispatch (edge/src/services/suppression-check.ts)
 * for a tenant with 1,000,000 suppressions — one batched lookup of 1,000 recipients, as the hub makes
 * it per dispatch round. A real D1 (Miniflare's, SQLite under workerd) with the repo's migrations,
 * seeded in bulk with recursive-CTE inserts (100,000 rows a statement; JS numbers bind as REAL, hence the CASTs); the lookup is the hub's own
 * `findSuppressed`. Reports the wall time per lookup (median, p95) and D1's `rows_read` per lookup,
 * and EXPLAIN QUERY PLAN to show both halves of the query probe the unique indexes. Local only.
 */
import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Miniflare } from "miniflare";
import { findSuppressed } from "../../edge/src/db/suppression-lookup.ts";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";
import { onCleanup, say } from "./lib/procs.ts";
import { round } from "./lib/stats.ts";

export interface SuppressionsBenchResult {
  suppressions: number;
  groupSuppressions: number;
  recipientsPerCheck: number;
  hitsPerCheck: number;
  checks: number;
  seedSeconds: number;
  msPerCheck: { median: number; p95: number; min: number };
  rowsReadPerCheck: number;
  queryPlan: string[];
}

const TENANT = "tnt_bench_suppressions";

export async function benchSuppressions(opts: {
  quick: boolean;
  workDir: string;
}): Promise<SuppressionsBenchResult> {
  const total = opts.quick ? 100_000 : 1_000_000;
  const perCheck = 1_000;
  const checks = opts.quick ? 10 : 30;
  const persist = path.join(opts.workDir, `state-suppressions-${Date.now()}`);
  fs.mkdirSync(persist, { recursive: true });
  const mf = new Miniflare({
    modules: true,
    script: "export default { fetch() { return new Response('') } }",
    compatibilityDate: "2026-08-01",
    d1Databases: { DB: "suppressions-bench" },
    d1Persist: path.join(persist, "d1"),
  });
  const stop = onCleanup("suppressions bench miniflare", () => mf.dispose());
  try {
    await mf.ready;
    const db = await mf.getD1Database("DB");
    const dir = path.join(REPO_ROOT, "migrations");
    for (const file of fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".sql"))
      .sort()) {
      for (const statement of fs.readFileSync(path.join(dir, file), "utf8").split("--> statement-breakpoint"))
        if (statement.trim()) await db.prepare(statement).run();
    }
    await db
      .prepare("INSERT INTO tenants (id, name, status, created_at) VALUES (?, 'bench', 'active', 0)")
      .bind(TENANT)
      .run();
    await db
      .prepare(
        "INSERT INTO asm_groups (tenant_id, name, description, is_default, created_at) VALUES (?, 'News', '', 0, 0)",
      )
      .bind(TENANT)
      .run();

    // Seed: addresses user<i>@example.com over the four dropping lists and blocks, 100,000 per statement.
    const t0 = performance.now();
    const lists = ["bounces", "spam_reports", "unsubscribes", "invalid_emails", "blocks"];
    const CHUNK = 100_000;
    for (let from = 0; from < total; from += CHUNK) {
      const n = Math.min(CHUNK, total - from);
      await db
        .prepare(
          `WITH RECURSIVE c(i) AS (SELECT CAST(?1 AS INTEGER) UNION ALL SELECT i + 1 FROM c WHERE i < ?1 + ?2 - 1)
           INSERT INTO suppressions (tenant_id, email, list, created_at, reason, status, bounce_type)
           SELECT ?3, 'user' || i || '@example.com',
             CASE i % 5 WHEN 0 THEN 'bounces' WHEN 1 THEN 'spam_reports' WHEN 2 THEN 'unsubscribes'
               WHEN 3 THEN 'invalid_emails' ELSE 'blocks' END,
             1700000000000 + i, '550 5.1.1 User unknown', '5.1.1', 'hard' FROM c`,
        )
        .bind(from, n, TENANT)
        .run();
      say(`   seeded ${from + n} suppressions`);
    }
    const groupRows = Math.floor(total / 10);
    await db
      .prepare(
        `WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < CAST(?1 AS INTEGER) - 1)
         INSERT INTO asm_group_suppressions (tenant_id, group_id, email, created_at)
         SELECT ?2, 1, 'user' || (i * 10) || '@example.com', 0 FROM c`,
      )
      .bind(groupRows, TENANT)
      .run();
    const seedSeconds = round((performance.now() - t0) / 1000, 1);
    const count = (await db.prepare("SELECT count(*) AS n FROM suppressions").first<{ n: number }>())!.n;
    if (count !== total) throw new Error(`seeded ${count} suppressions, expected ${total}`);

    // Each check: 1,000 recipients, 10% of them suppressed (spread over the whole range, a fifth of
    // those on blocks, which do not drop, a tenth also unsubscribed from the group), the rest not.
    const times: number[] = [];
    let rowsRead = 0;
    let hits = 0;
    for (let k = 0; k < checks; k++) {
      const pairs = Array.from({ length: perCheck }, (_, j) => ({
        tenantId: TENANT,
        email:
          j % 10 === 0
            ? `user${(k * 7919 + (j / 10) * 10_007) % total}@example.com`
            : `clean${k}-${j}@example.net`,
      }));
      const s = performance.now();
      const r = await findSuppressed(db, pairs);
      times.push(performance.now() - s);
      rowsRead += r.rowsRead;
      hits += r.hits.length;
    }
    const plan = await db
      .prepare(
        `EXPLAIN QUERY PLAN SELECT s.list FROM (SELECT json_extract(value, '$[0]') AS t, json_extract(value, '$[1]') AS e
         FROM json_each(?)) AS j JOIN suppressions AS s ON s.tenant_id = j.t AND s.email = j.e
         UNION ALL SELECT g.group_id FROM (SELECT json_extract(value, '$[0]') AS t, json_extract(value, '$[1]') AS e
         FROM json_each(?)) AS j JOIN asm_group_suppressions AS g ON g.tenant_id = j.t AND g.email = j.e`,
      )
      .bind("[]", "[]")
      .all<{ detail: string }>();
    times.sort((a, b) => a - b);
    return {
      suppressions: total,
      groupSuppressions: groupRows,
      recipientsPerCheck: perCheck,
      hitsPerCheck: round(hits / checks, 1),
      checks,
      seedSeconds,
      msPerCheck: {
        median: round(times[Math.floor(times.length / 2)]!, 2),
        p95: round(times[Math.min(times.length - 1, Math.floor(times.length * 0.95))]!, 2),
        min: round(times[0]!, 2),
      },
      rowsReadPerCheck: round(rowsRead / checks, 0),
      queryPlan: plan.results.map((r) => r.detail),
    };
  } finally {
    await stop();
  }
}
