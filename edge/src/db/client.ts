import { createTableRelationsHelpers, extractTablesRelationalConfig } from "drizzle-orm";
import { DrizzleD1Database, type drizzle } from "drizzle-orm/d1";
import { SQLiteD1Session } from "drizzle-orm/d1/session";
import { SQLiteAsyncDialect } from "drizzle-orm/sqlite-core";
import * as schema from "./schema.ts";

/**
 * The schema's relational config, extracted once per isolate. `drizzle(d1, { schema })` extracts it
 * on every call, which walked every table of the schema on every request (8 % of the Worker's CPU on
 * the send route in a profile, docs/testing.md#benchmarks); this builds the same database object
 * (drizzle-orm 0.45's `d1/driver.js`, without a logger or cache) around the config extracted once.
 */
let relational: { fullSchema: typeof schema; schema: unknown; tableNamesMap: Record<string, string> } | null =
  null;
const dialect = new SQLiteAsyncDialect();

/**
 * One handle per binding object: the Worker's `env.DB` is the same object request after request, so
 * its handle is built once per isolate. Each D1 session (`withSession`) is a new object and gets its own.
 * A handle holds no request-scoped I/O object, only the binding, so sharing it across requests is safe.
 */
const handles = new WeakMap<D1Database, ReturnType<typeof drizzle<typeof schema, D1Database>>>();

export const createDb = (d1: D1Database): ReturnType<typeof drizzle<typeof schema, D1Database>> => {
  const known = handles.get(d1);
  if (known) return known;
  if (relational === null) {
    const tables = extractTablesRelationalConfig(schema, createTableRelationsHelpers);
    relational = { fullSchema: schema, schema: tables.tables, tableNamesMap: tables.tableNamesMap };
  }
  const session = new SQLiteD1Session(d1, dialect, relational as never, {});
  const db = new DrizzleD1Database("async", dialect, session as never, relational as never) as ReturnType<
    typeof drizzle<typeof schema, D1Database>
  >;
  db.$client = d1;
  handles.set(d1, db);
  return db;
};
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
