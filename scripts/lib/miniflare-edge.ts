/**
 * The edge Worker in workerd through Miniflare's API, without wrangler dev's proxy and inspector
 * layers. The benchmarks use it for sustained delivery through the edge: under wrangler dev the local
 * session exits after a few thousand messages ("Network connection lost"), while the same bundle in
 * the same runtime here delivers 10 × 1,000 back to back. Bundled with wrangler exactly as `wrangler
 * deploy` would, so this runs the real Worker.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Miniflare } from "miniflare";
import { REPO_ROOT, wranglerEnv } from "./wrangler-dev.ts";

export interface MiniflareEdge {
  url: string;
  /** Same as url: there is no proxy in front of the Worker here. */
  workerUrl: string;
  /** workerd processes Miniflare started (for CPU accounting). */
  workerdPids(): number[];
  /** The Worker's D1 database (DB), through Miniflare's binding: tests make it fail and recover. */
  d1(): ReturnType<Miniflare["getD1Database"]>;
  /** The OriginHub namespace (ORIGIN_HUB), through Miniflare's binding: tests read a hub's stats() over RPC. */
  hubs(): ReturnType<Miniflare["getDurableObjectNamespace"]>;
  stop(): Promise<void>;
}

export interface StartMiniflareEdgeOptions {
  persistDir: string;
  vars: Record<string, string>;
  inspectorPort?: number;
}

/** Bundles the Worker as `wrangler deploy` would, into `outDir`; returns the entry module's path. */
export function bundleWorker(outDir: string): string {
  const r = spawnSync(
    path.join(REPO_ROOT, "node_modules", ".bin", "wrangler"),
    ["deploy", "--dry-run", "--outdir", outDir],
    { cwd: REPO_ROOT, env: wranglerEnv(), encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`bundling the Worker failed:\n${r.stdout}\n${r.stderr}`);
  return path.join(outDir, "index.js");
}

/** Children of this process named workerd. */
function childWorkerds(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (comm === "workerd" && ppid === process.pid) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

export async function startMiniflareEdge(opts: StartMiniflareEdgeOptions): Promise<MiniflareEdge> {
  fs.mkdirSync(opts.persistDir, { recursive: true });
  const scriptPath = bundleWorker(path.join(opts.persistDir, "bundle"));
  const before = new Set(childWorkerds());
  const mf = new Miniflare({
    scriptPath,
    modules: true,
    // The bundle's .wasm modules (photon, the image library's decoder) load as compiled Wasm, as on Workers.
    // Its Text modules (wrangler.toml [[rules]]: stylesheets and uPlot, which the dashboard serves) load as strings.
    modulesRules: [
      { type: "CompiledWasm", include: ["**/*.wasm"] },
      { type: "Text", include: ["**/*.css", "**/*-uPlot.iife.min.js"] },
    ],
    compatibilityDate: "2026-08-01",
    compatibilityFlags: ["nodejs_compat"],
    d1Databases: { DB: "scaisend" },
    r2Buckets: ["BLOBS"],
    durableObjects: {
      ORIGIN_HUB: { className: "OriginHub", useSQLite: true },
      RATE_LIMITER: { className: "RateLimiter", useSQLite: true },
      WEBHOOK_QUEUE: { className: "WebhookQueue", useSQLite: true },
    },
    bindings: opts.vars,
    d1Persist: path.join(opts.persistDir, "d1"),
    durableObjectsPersist: path.join(opts.persistDir, "do"),
    r2Persist: path.join(opts.persistDir, "r2"),
    host: "127.0.0.1",
    port: 0,
    ...(opts.inspectorPort !== undefined ? { inspectorPort: opts.inspectorPort } : {}),
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  // Apply the D1 migrations in order, as `wrangler d1 migrations apply` does for a fresh database.
  const db = await mf.getD1Database("DB");
  const dir = path.join(REPO_ROOT, "migrations");
  for (const file of fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort()) {
    for (const statement of fs.readFileSync(path.join(dir, file), "utf8").split("--> statement-breakpoint")) {
      if (statement.trim()) await db.prepare(statement).run();
    }
  }
  const mine = childWorkerds().filter((p) => !before.has(p));
  return {
    url,
    workerUrl: url,
    workerdPids: () => mine,
    d1: () => mf.getD1Database("DB"),
    hubs: () => mf.getDurableObjectNamespace("ORIGIN_HUB"),
    stop: () => mf.dispose(),
  };
}
