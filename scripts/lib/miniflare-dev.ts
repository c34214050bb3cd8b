/**
 * The edge for `npm start`: the Worker bundle in workerd through Miniflare (as the benchmarks and
 * scripts/lib/miniflare-edge.ts run it), with what `wrangler dev` gives local development:
 *  - reload on change: edge/, shared/ and wrangler.toml are watched; a change rebundles the Worker
 *    (`wrangler deploy --dry-run`, the bundle a deploy uploads) and restarts workerd on the same port
 *    with the same state (`Miniflare#setOptions`). A bundle that fails to build keeps the old Worker.
 *  - state in wrangler's local layout under `persistDir` (`<persistDir>/v3/{d1,do,r2,cache}`, the
 *    Durable Object folders named `<worker name>-<class>`), so `wrangler d1 execute DB --local
 *    --persist-to <persistDir>` and `wrangler dev --persist-to <persistDir>` read the same data. D1
 *    migrations are applied with `wrangler d1 migrations apply` first, as `wrangler dev` users do.
 *  - wrangler.toml's [vars], overridden by `vars` (as `wrangler dev --var` does).
 * Why not `wrangler dev`: its dev session exits under sustained delivery (docs/operations.md,
 * "Running the stack locally").
 */
import fs from "node:fs";
import path from "node:path";
import { Log, LogLevel, Miniflare, type MiniflareOptions } from "miniflare";
import { bundleWorker } from "./miniflare-edge.ts";
import { applyMigrations, freePort, REPO_ROOT } from "./wrangler-dev.ts";

/** What wrangler.toml declares for the Worker; kept in step with it by test/shared/dev-edge-config.test.ts. */
export const WORKER_NAME = "scaisend-edge";
export const D1_DATABASE_ID = "00000000-0000-0000-0000-000000000000";
export const R2_BUCKET = "scaisend-blobs";
export const COMPATIBILITY_DATE = "2026-08-01";

export interface DevEdge {
  url: string;
  /** Same as url: no proxy in front of the Worker. */
  workerUrl: string;
  port: number;
  /** Completed reloads since start. */
  reloads(): number;
  /** Rebundles and restarts now (what a watched change does); resolves when the new Worker serves. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

export interface StartDevEdgeOptions {
  /** Root of the local state, in wrangler's `--persist-to` layout. */
  persistDir: string;
  vars: Record<string, string>;
  port?: number;
  /** Watch edge/, shared/ and wrangler.toml and reload on change (default true). */
  watch?: boolean;
  /** Folders to watch instead of edge/ and shared/ (tests use a folder of their own). */
  watchDirs?: string[];
  /** Progress lines (reloads, bundle errors); default: stderr. */
  log?: (line: string) => void;
}

/**
 * The [vars] table of wrangler.toml: `KEY = "value"` lines (basic or literal strings), which is all
 * this project's file uses there. Anything else in the table is an error, not silently skipped.
 */
export function wranglerVars(tomlText: string): Record<string, string> {
  const vars: Record<string, string> = {};
  let inVars = false;
  for (const raw of tomlText.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("[")) {
      inVars = line === "[vars]";
      continue;
    }
    if (!inVars) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$/.exec(line);
    if (!m) throw new Error(`wrangler.toml [vars]: cannot read ${JSON.stringify(line)}`);
    vars[m[1]!] = m[3] ?? (JSON.parse(`"${m[2]}"`) as string);
  }
  return vars;
}

export async function startDevEdge(opts: StartDevEdgeOptions): Promise<DevEdge> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const persistDir = path.resolve(opts.persistDir);
  applyMigrations(persistDir);
  const bundleDir = path.join(persistDir, "bundle");
  const scriptPath = bundleWorker(bundleDir);
  const port = opts.port ?? (await freePort());
  const v3 = path.join(persistDir, "v3");
  const options = (): MiniflareOptions => ({
    name: WORKER_NAME,
    scriptPath,
    modules: true,
    // The bundle's .wasm modules (photon, the image library's decoder) load as compiled Wasm, as on Workers.
    // Text modules (wrangler.toml [[rules]]: stylesheets and uPlot, which the dashboard serves) load as strings.
    modulesRules: [
      { type: "CompiledWasm", include: ["**/*.wasm"] },
      { type: "Text", include: ["**/*.css", "**/*-uPlot.iife.min.js"] },
    ],
    // Module names are relative to this; the state folder may be anywhere (a test's is in /tmp).
    modulesRoot: bundleDir,
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: ["nodejs_compat"],
    d1Databases: { DB: D1_DATABASE_ID },
    r2Buckets: { BLOBS: R2_BUCKET },
    durableObjects: {
      ORIGIN_HUB: { className: "OriginHub", useSQLite: true },
      RATE_LIMITER: { className: "RateLimiter", useSQLite: true },
      WEBHOOK_QUEUE: { className: "WebhookQueue", useSQLite: true },
    },
    // Read again on every reload: an edited [vars] applies like an edited source file.
    bindings: {
      ...wranglerVars(fs.readFileSync(path.join(REPO_ROOT, "wrangler.toml"), "utf8")),
      ...opts.vars,
    },
    // wrangler dev --persist-to <dir> keeps each kind of state under <dir>/v3/<kind>.
    d1Persist: path.join(v3, "d1"),
    durableObjectsPersist: path.join(v3, "do"),
    r2Persist: path.join(v3, "r2"),
    cachePersist: path.join(v3, "cache"),
    host: "127.0.0.1",
    port,
    // The placeholder Request.cf, without trying to fetch the real one (the local stack runs offline).
    cf: false,
    log: new Log(LogLevel.WARN),
  });
  const mf = new Miniflare(options());
  await mf.ready;
  const url = `http://127.0.0.1:${port}`;

  let reloads = 0;
  let running: Promise<void> | null = null;
  let again = false;
  let stopped = false;
  const reloadOnce = async () => {
    const t0 = Date.now();
    try {
      bundleWorker(bundleDir);
    } catch (err) {
      log(
        `edge: the changed Worker does not build; still running the previous one\n${(err as Error).message}`,
      );
      return;
    }
    if (stopped) return;
    await mf.setOptions(options());
    reloads++;
    log(`edge: reloaded in ${Date.now() - t0} ms`);
  };
  const reload = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await reloadOnce();
      } while (again && !stopped);
    })().finally(() => (running = null));
    return running;
  };

  const watchers: fs.FSWatcher[] = [];
  if (opts.watch !== false) {
    let timer: NodeJS.Timeout | null = null;
    const changed = () => {
      if (timer) clearTimeout(timer);
      // Editors write a file in several steps; one reload for the lot.
      timer = setTimeout(() => void reload().catch((err) => log(`edge: reload failed: ${String(err)}`)), 250);
    };
    for (const dir of opts.watchDirs ?? [path.join(REPO_ROOT, "edge"), path.join(REPO_ROOT, "shared")]) {
      watchers.push(
        fs.watch(dir, { recursive: true }, (_event, file) => {
          // Type declarations and editor droppings do not change the bundle.
          if (file && /\.(ts|js|mjs|json)$/.test(file) && !file.endsWith(".d.ts")) changed();
        }),
      );
    }
    watchers.push(fs.watch(path.join(REPO_ROOT, "wrangler.toml"), changed));
  }

  return {
    url,
    workerUrl: url,
    port,
    reloads: () => reloads,
    reload,
    async stop() {
      stopped = true;
      for (const w of watchers) w.close();
      await running?.catch(() => undefined);
      await mf.dispose();
    },
  };
}
