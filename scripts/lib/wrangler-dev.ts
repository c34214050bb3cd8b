/**
 * Runs the edge Worker locally with `wrangler dev --local` (workerd with local D1, R2 and Durable
 * Objects), for the end-to-end tests, the benchmarks and `SCAISEND_EDGE=wrangler npm start` (plain
 * `npm start` uses scripts/lib/miniflare-dev.ts). Applies D1 migrations first,
 * waits for /healthz, and stops the whole process group by pid.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

export const REPO_ROOT = path.resolve(import.meta.dirname, "../..");

export interface EdgeProcess {
  /** Wrangler's dev server: what API clients use. */
  url: string;
  /**
   * The Worker's own socket behind wrangler's dev proxy, which the tests and benchmarks link the origin
   * to (no proxy in between, as in production). Wrangler's ProxyWorker treats any request the Worker
   * fails to answer as fatal: "Network connection lost" ended the whole dev session under sustained
   * delivery before the hub paused between busy slices (docs/operations.md, "Under wrangler dev";
   * scripts/repro/wrangler-dev-sustained.ts). The port changes on every reload. Falls back to `url`
   * when wrangler does not report the address.
   */
  workerUrl: string;
  port: number;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

export interface StartEdgeOptions {
  /** Folder for local D1/R2/DO state; reused across runs when it exists. */
  persistDir: string;
  vars: Record<string, string>;
  port?: number;
  /** Enables GET /__scheduled?cron=… to fire the cron handler. */
  testScheduled?: boolean;
  logFile?: string;
  /** Chrome DevTools Protocol port of the Worker (for CPU profiles). */
  inspectorPort?: number;
}

/**
 * Keeps wrangler from writing into the home folder or phoning home, and turns off its local trace
 * collector unless the caller set `X_LOCAL_OBSERVABILITY` itself: wrangler 4.124 records a trace of
 * every invocation by default, which costs the Worker's workerd ~0.6 ms of CPU per request, more than
 * a whole `/healthz` (docs/operations.md, "Under wrangler dev").
 */
export function wranglerEnv(): NodeJS.ProcessEnv {
  const tmp = path.join(REPO_ROOT, ".tmp");
  return {
    X_LOCAL_OBSERVABILITY: "false",
    ...process.env,
    WRANGLER_SEND_METRICS: "false",
    XDG_CONFIG_HOME: path.join(tmp, "xdg"),
    WRANGLER_LOG_PATH: path.join(tmp, "wrangler-logs"),
    NO_UPDATE_NOTIFIER: "1",
  };
}

const wranglerBin = () => path.join(REPO_ROOT, "node_modules", ".bin", "wrangler");

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export function applyMigrations(persistDir: string): void {
  fs.mkdirSync(persistDir, { recursive: true });
  const r = spawnSync(
    wranglerBin(),
    ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistDir],
    {
      cwd: REPO_ROOT,
      env: wranglerEnv(),
      encoding: "utf8",
    },
  );
  if (r.status !== 0) throw new Error(`D1 migrations failed:\n${r.stdout}\n${r.stderr}`);
}

export async function startEdge(opts: StartEdgeOptions): Promise<EdgeProcess> {
  applyMigrations(opts.persistDir);
  const port = opts.port ?? (await freePort());
  const logFile = opts.logFile ?? path.join(opts.persistDir, "wrangler.log");
  // Debug level is what reports the Worker's own address (see workerUrl); the log starts fresh each run.
  const out = fs.openSync(logFile, "w");
  const args = [
    "dev",
    "--local",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--persist-to",
    opts.persistDir,
  ];
  args.push("--show-interactive-dev-session=false", "--log-level", "debug");
  if (opts.testScheduled) args.push("--test-scheduled");
  if (opts.inspectorPort !== undefined) args.push("--inspector-port", String(opts.inspectorPort));
  for (const [k, v] of Object.entries(opts.vars)) args.push("--var", `${k}:${v}`);
  const child: ChildProcess = spawn(wranglerBin(), args, {
    cwd: REPO_ROOT,
    env: wranglerEnv(),
    stdio: ["ignore", out, out],
    // Own process group, so stop() also ends the workerd child wrangler starts.
    detached: true,
  });
  fs.closeSync(out);
  const url = `http://127.0.0.1:${port}`;
  const stop = () => stopGroup(child);
  try {
    await waitForHealth(url, child, 60_000);
  } catch (err) {
    await stop();
    const tail = fs.readFileSync(logFile, "utf8").split("\n").slice(-30).join("\n");
    throw new Error(`${(err as Error).message}\n--- ${logFile} ---\n${tail}`);
  }
  return { url, workerUrl: (await workerUrlFromLog(logFile)) ?? url, port, pid: child.pid!, logFile, stop };
}

/** The last `userWorkerUrl` wrangler logged (it logs one per reload), or null. */
async function workerUrlFromLog(logFile: string): Promise<string | null> {
  for (let i = 0; i < 20; i++) {
    const text = fs.readFileSync(logFile, "utf8");
    const found = [
      ...text.matchAll(/"userWorkerUrl":\{"protocol":"http:","hostname":"([\d.]+)","port":"(\d+)"/g),
    ].at(-1);
    if (found) return `http://${found[1]}:${found[2]}`;
    await new Promise((r) => setTimeout(r, 100));
  }
  return null;
}

async function waitForHealth(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with code ${child.exitCode}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`wrangler dev did not become healthy within ${timeoutMs} ms`);
}

export async function stopGroup(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
}
