import { drizzle } from "drizzle-orm/d1";
import * as schema from "./schema.ts";

export const createDb = (d1: D1Database) => drizzle(d1, { schema });
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
