/**
 * The edge Worker in workerd through Miniflare's API, without wrangler dev's proxy and inspector
 * layers: what `npm start` runs, so the benchmarks' runs through the edge use it too (under wrangler dev
 * the local session once exited after a few thousand messages, "Network connection lost";
 * docs/operations.md, "Under wrangler dev"). Bundled with wrangler exactly as `wrangler
 * deploy` would, so this runs the real Worker.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
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

/** What the bundle is built from: the Worker's and the shared code, its config and the locked dependencies. */
const BUNDLE_INPUTS = ["edge", "shared", "wrangler.toml", "package-lock.json"];

function digestInputs(): string {
  const hash = createHash("sha256");
  const walk = (rel: string) => {
    const abs = path.join(REPO_ROOT, rel);
    const stat = fs.statSync(abs, { throwIfNoEntry: false });
    if (!stat) return;
    if (stat.isDirectory()) {
      for (const name of fs.readdirSync(abs).sort()) walk(path.join(rel, name));
    } else if (stat.isFile()) {
      hash.update(`${rel}\0${stat.size}\0`);
      hash.update(fs.readFileSync(abs));
    }
  };
  for (const input of BUNDLE_INPUTS) walk(input);
  return hash.digest("hex").slice(0, 24);
}

/**
 * The Worker bundled once per state of its sources: a bundle takes seconds (wrangler builds it as
 * `wrangler deploy` would), and a test run starts dozens of Miniflare edges from the same sources.
 * Bundles are kept in `.tmp/worker-bundles/<digest of the inputs>/`; a new one is built in a folder
 * of its own and renamed into place, so processes bundling at the same time never read a half-written one.
 */
export function cachedWorkerBundle(): string {
  const root = path.join(REPO_ROOT, ".tmp", "worker-bundles");
  const dir = path.join(root, digestInputs());
  const entry = path.join(dir, "index.js");
  if (fs.existsSync(entry)) return entry;
  fs.mkdirSync(root, { recursive: true });
  const building = fs.mkdtempSync(path.join(root, "building-"));
  try {
    bundleWorker(building);
    try {
      fs.renameSync(building, dir);
    } catch (e) {
      // Another process put the same bundle in place first: use that one.
      if (!fs.existsSync(entry)) throw e;
    }
  } finally {
    fs.rmSync(building, { recursive: true, force: true });
  }
  // Bundles of sources changed more than a day ago are not used again.
  for (const name of fs.readdirSync(root)) {
    const other = path.join(root, name);
    if (other !== dir && Date.now() - fs.statSync(other).mtimeMs > 86_400_000)
      fs.rmSync(other, { recursive: true, force: true });
  }
  return entry;
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
  const scriptPath = cachedWorkerBundle();
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
