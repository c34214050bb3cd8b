import { drizzle } from "drizzle-orm/d1";

/**
 * The query builder over a D1 binding (or one of its sessions). No `schema` is passed: the code
 * builds every query from the tables of `schema.ts` and never uses the relational `db.query` API,
 * and with a schema `drizzle()` walks every table of it on each call — 10–15 % of the Worker's busy
 * time on the send route in a workerd profile (docs/testing.md#benchmarks), since a handle is made
 * per request.
 */
export const createDb = (d1: D1Database) => drizzle(d1);
export type Db = ReturnType<typeof createDb>;

/**
 * D1 allows at most 100 bound parameters per statement, so multi-row inserts are cut into chunks
 * of `floor(100 / columns)` rows.
 */
export function chunkRows<T>(rows: T[], columnsPerRow: number): T[][] {
  const size = Math.max(1, Math.floor(100 / columnsPerRow));
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += size) out.push(rows.slice(i, i + size));
  return out;
}
