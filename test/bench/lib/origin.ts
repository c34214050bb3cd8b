/**
 * Starts the real origin (origin/src/main.ts) as its own process, so its CPU time and peak RSS can be
 * read from /proc. It runs as `node --import tsx origin/src/main.ts` — the same code `tsx
 * origin/src/main.ts` runs, but in ONE process (the tsx CLI would add a parent process), so the pid we
 * hold is the process doing the work. Configured only through its documented environment variables.
 */
import fs from "node:fs";
import path from "node:path";
import { freePort, REPO_ROOT } from "../../../scripts/lib/wrangler-dev.ts";
import { cpuSeconds, peakRssMiB, spawnTracked, waitFor, type Tracked } from "./procs.ts";

export interface OriginProcess {
  pid: number;
  httpPort: number;
  proc: Tracked;
  logFile: string;
  cpuSeconds(): number;
  peakRssMiB(): number;
  /** SIGTERM (the origin drains and exits), SIGKILL after 20 s. */
  stop(): Promise<void>;
}

export interface StartOriginOptions {
  edgeUrl: string;
  originToken: string;
  dnsServer: string;
  smtpPort: number;
  workDir: string;
  name: string;
  /** Open the V8 inspector on this loopback port (to CPU-profile a window of the run over CDP). */
  inspectPort?: number;
  extraEnv?: Record<string, string>;
}

export async function startOrigin(o: StartOriginOptions): Promise<OriginProcess> {
  const httpPort = await freePort();
  const logFile = path.join(o.workDir, `${o.name}.log`);
  const out = fs.openSync(logFile, "a");
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Nothing from the caller's environment may change the origin under test.
  for (const k of [
    "REDIS_URL",
    "SMARTHOST",
    "ALLOW_PRIVATE_MX",
    "DEV_INBOX",
    "NODE_OPTIONS",
    "CAPACITY",
    "MAX_CONNECTIONS_PER_HOST",
    "LOG_LEVEL",
  ])
    delete env[k];
  Object.assign(env, {
    EDGE_URL: o.edgeUrl,
    ORIGIN_TOKEN: o.originToken,
    VERP_SECRET: "bench-verp-secret-0123456789abcdef0123456789",
    NODE_ID: `bench-${o.name}`,
    HELO_NAME: "origin.bench.test",
    DNS_SERVERS: o.dnsServer,
    // The bench's MX hosts are on 127.0.0.1.
    ALLOW_PRIVATE_MX: "true",
    SMTP_PORT: String(o.smtpPort),
    HTTP_HOST: "127.0.0.1",
    HTTP_PORT: String(httpPort),
    DRAIN_TIMEOUT_MS: "10000",
    // The outcome journal of this run only: a journal left in .dev/ by an earlier run (or in use by
    // a run beside this one) would replay its results at start-up, or refuse to open.
    JOURNAL_DIR: path.join(o.workDir, `journal-${o.name}`),
    ...(o.inspectPort ? { NODE_OPTIONS: `--inspect=127.0.0.1:${o.inspectPort}` } : {}),
    ...o.extraEnv,
  });
  const node = path.join(REPO_ROOT, "node_modules", ".bin", "node");
  // The node flag the origin's image sets (origin/Dockerfile's NODE_OPTIONS), so the benchmark
  // measures the origin as it is deployed.
  const nodeArgs = ["--max-semi-space-size=32", "--import", "tsx", "origin/src/main.ts"];
  const proc = spawnTracked(`origin ${o.name}`, node, nodeArgs, {
    cwd: REPO_ROOT,
    env,
    stdio: ["ignore", out, out],
  });
  fs.closeSync(out);
  const tail = () => fs.readFileSync(logFile, "utf8").split("\n").slice(-20).join("\n");
  try {
    await waitFor(
      "the origin's link to come up (/readyz)",
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`origin exited with ${proc.child.exitCode}`);
        try {
          return (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok;
        } catch {
          return false;
        }
      },
      30_000,
      100,
    );
  } catch (err) {
    await proc.stop(2_000);
    throw new Error(`${(err as Error).message}\n--- ${logFile} ---\n${tail()}`);
  }
  return {
    pid: proc.pid,
    httpPort,
    proc,
    logFile,
    cpuSeconds: () => cpuSeconds(proc.pid),
    peakRssMiB: () => peakRssMiB(proc.pid),
    stop: () => proc.stop(20_000),
  };
}
