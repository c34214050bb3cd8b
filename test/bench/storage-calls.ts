/**
 * `npx tsx test/bench/storage-calls.ts`: what one storage call costs in workerd, in CPU time read
 * from /proc (docs/performance.md, 2026-12-03): a D1 call (a `SELECT 1`, a batch of three, a
 * `json_each` read) from a Worker, and statements of a Durable Object's own SQLite (the hub's
 * alarm query `OUTBOX_SQL.nextWake` over 3,000 outbox rows in the hub's own layout, a trivial
 * SELECT). A small Worker of its own in Miniflare, with fresh local state under .tmp, stopped at
 * the end; nothing of the edge is mocked or measured here, only the runtime's per-call costs.
 */
import fs from "node:fs";
import path from "node:path";
import { Miniflare } from "miniflare";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";

const CALLS = { d1: 1000, sql: 5000 };

const script = `
import { DurableObject } from "cloudflare:workers";
export class Hub extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      // The hub's outbox layout (edge/src/objects/origin-hub.ts, createSchema).
      this.sql.exec("CREATE TABLE IF NOT EXISTS outbox (message_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, recipients TEXT NOT NULL, dispatches INTEGER NOT NULL DEFAULT 0, deferrals INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, due_at INTEGER NOT NULL, lease_link TEXT, lease_node TEXT, lease_boot TEXT, lease_until INTEGER, enqueued_at INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, bounced INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0, ip_pool TEXT)");
      this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_ready ON outbox(state, due_at)");
      this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_lease_end ON outbox(lease_until) WHERE lease_until IS NOT NULL");
      this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_holder ON outbox(lease_node, lease_boot) WHERE lease_node IS NOT NULL");
      this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_ready_age ON outbox(enqueued_at) WHERE state = 'ready'");
      this.sql.exec("CREATE TABLE IF NOT EXISTS catalog (message_id TEXT PRIMARY KEY, rows TEXT NOT NULL)");
      this.sql.exec("CREATE TABLE IF NOT EXISTS webhook_handoff (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT NOT NULL, events TEXT NOT NULL, staged_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL)");
      this.sql.exec("CREATE INDEX IF NOT EXISTS webhook_handoff_due ON webhook_handoff(next_at)");
    });
  }
  fill(n) {
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      for (let i = 0; i < n; i++)
        this.sql.exec("INSERT INTO outbox (message_id, tenant_id, recipients, state, due_at, enqueued_at) VALUES (?, 't', '[]', 'ready', ?, ?)", "msg_" + i, now, now);
    });
    return n;
  }
  run(sql, n) {
    for (let i = 0; i < n; i++) this.sql.exec(sql, ...(sql.includes("?1") ? [0, 5, 7] : [])).toArray();
    return n;
  }
}
export default {
  async fetch(req, env) {
    const u = new URL(req.url);
    const n = Number(u.searchParams.get("n"));
    const what = u.searchParams.get("what");
    const hub = env.HUB.getByName("bench");
    if (what === "fill") return new Response(String(await hub.fill(n)));
    if (what === "sql") return new Response(String(await hub.run(u.searchParams.get("q"), n)));
    for (let i = 0; i < n; i++) {
      if (what === "d1-select") await env.DB.prepare("SELECT 1").all();
      if (what === "d1-batch") await env.DB.batch([env.DB.prepare("SELECT 1"), env.DB.prepare("SELECT 2"), env.DB.prepare("SELECT 3")]);
      if (what === "d1-json") await env.DB.prepare("SELECT value FROM json_each(?)").bind(JSON.stringify(Array.from({ length: 10 }, (_, j) => "x" + j))).all();
    }
    return new Response(String(n));
  },
};
`;

const NEXT_WAKE = `SELECT min(t) AS t FROM (
  SELECT min(due_at) AS t FROM outbox WHERE state = 'ready' AND due_at >= ?1
  UNION ALL SELECT * FROM (SELECT lease_until FROM outbox WHERE lease_until IS NOT NULL AND +state = 'leased'
    ORDER BY lease_until LIMIT 1)
  UNION ALL SELECT * FROM (SELECT enqueued_at + ?2 FROM outbox INDEXED BY outbox_ready_age WHERE state = 'ready'
    ORDER BY enqueued_at LIMIT 1)
  UNION ALL SELECT * FROM (SELECT ?3 FROM catalog LIMIT 1)
  UNION ALL SELECT min(next_at) AS t FROM webhook_handoff)`;

function workerdOf(parent: number): number {
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = fs.readFileSync(`/proc/${e}/stat`, "utf8");
      const comm = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      const ppid = Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]);
      if (comm === "workerd" && ppid === parent) return Number(e);
    } catch {
      // exited meanwhile
    }
  }
  throw new Error("no workerd child found");
}

function cpuSeconds(pid: number): number {
  const st = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

const dir = path.join(REPO_ROOT, ".tmp", "bench", `storage-calls-${Date.now()}`);
fs.mkdirSync(dir, { recursive: true });
const mf = new Miniflare({
  modules: true,
  script,
  compatibilityDate: "2026-08-01",
  d1Databases: { DB: "bench" },
  durableObjects: { HUB: { className: "Hub", useSQLite: true } },
  d1Persist: path.join(dir, "d1"),
  durableObjectsPersist: path.join(dir, "do"),
});
try {
  const url = (await mf.ready).toString().replace(/\/$/, "");
  const pid = workerdOf(process.pid);
  await (await fetch(`${url}/?what=fill&n=3000`)).text();
  const measure = async (name: string, query: string, n: number) => {
    const c0 = cpuSeconds(pid);
    await (await fetch(`${url}/?${query}&n=${n}`)).text();
    await new Promise((r) => setTimeout(r, 200));
    const us = ((cpuSeconds(pid) - c0) * 1e6) / n;
    process.stdout.write(`${name.padEnd(44)} ${us.toFixed(1)} µs CPU per call (${n} calls)\n`);
  };
  for (let round = 0; round < 2; round++) {
    await measure("D1: SELECT 1", "what=d1-select", CALLS.d1);
    await measure("D1: batch of three SELECTs", "what=d1-batch", CALLS.d1);
    await measure("D1: json_each read of 10 values", "what=d1-json", CALLS.d1);
    await measure("DO SQLite: SELECT 1", `what=sql&q=${encodeURIComponent("SELECT 1")}`, CALLS.sql);
    await measure(
      "DO SQLite: nextWake over 3,000 outbox rows",
      `what=sql&q=${encodeURIComponent(NEXT_WAKE)}`,
      CALLS.sql,
    );
  }
} finally {
  await mf.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
}
