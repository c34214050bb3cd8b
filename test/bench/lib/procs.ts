/**
 * Process bookkeeping for the benchmarks: every process the harness starts is registered here and
 * stopped by pid (its whole process group) in `runCleanups()`, which run.ts calls in `finally` and on
 * SIGINT/SIGTERM. Also reads CPU time and peak RSS of a pid from /proc.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import fs from "node:fs";
import { stopGroup } from "../../../scripts/lib/wrangler-dev.ts";

type Cleanup = { name: string; fn: () => Promise<void> | void };
const cleanups: Cleanup[] = [];

/** Registers something to undo at the end (LIFO). Returns a function that runs it now, once. */
export function onCleanup(name: string, fn: () => Promise<void> | void): () => Promise<void> {
  const entry: Cleanup = { name, fn };
  cleanups.push(entry);
  return async () => {
    const i = cleanups.indexOf(entry);
    if (i === -1) return;
    cleanups.splice(i, 1);
    await fn();
  };
}

export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const entry = cleanups.pop()!;
    try {
      await entry.fn();
    } catch (err) {
      process.stderr.write(`bench: cleanup "${entry.name}" failed: ${String(err)}\n`);
    }
  }
}

export interface Tracked {
  child: ChildProcess;
  pid: number;
  name: string;
  /** SIGTERM to the process group, SIGKILL after the grace period; idempotent. */
  stop(graceMs?: number): Promise<void>;
  exited: Promise<number | null>;
}

/** Spawns in its own process group (so children die with it) and registers the stop. */
export function spawnTracked(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Tracked {
  const child = spawn(cmd, args, { ...opts, detached: true });
  if (child.pid === undefined) throw new Error(`could not start ${name} (${cmd})`);
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.once("error", () => resolve(null));
  });
  let stopping: Promise<void> | null = null;
  const stop = (graceMs = 10_000) => (stopping ??= stopGroup(child, graceMs));
  const remove = onCleanup(name, () => stop());
  void exited.then(() => void remove());
  return { child, pid: child.pid, name, stop, exited };
}

const CLK_TCK = 100; // Linux USER_HZ; `getconf CLK_TCK` is 100 on every Linux this runs on.

/** utime + stime of one process, in seconds (field 14 and 15 of /proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14 → index 11, stime field 15 → index 12.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** User and system CPU seconds of one thread of `pid` (fields 14 and 15 of /proc/<pid>/task/<tid>/stat). */
export interface ThreadCpu {
  user: number;
  sys: number;
  /** The thread's name (comm: e.g. libuv's pool threads, V8's helpers), when read from /proc. */
  name?: string;
}

/**
 * CPU per thread of a process, by thread id. The main thread's id is the pid; the others are worker
 * threads (the compose pool), libuv's pool and V8's helper threads (all named "node" on Linux).
 * A thread that exits meanwhile is missing.
 */
export function threadCpu(pid: number): Map<number, ThreadCpu> {
  const out = new Map<number, ThreadCpu>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      out.set(Number(tid), { user: Number(fields[11]) / CLK_TCK, sys: Number(fields[12]) / CLK_TCK, name });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/**
 * The CPU a process spent between two `threadCpu` readings, split into the main thread, the busiest
 * other thread (with one compose thread: that worker) and the rest, each as user + sys seconds.
 */
export function threadCpuDelta(
  pid: number,
  before: Map<number, ThreadCpu>,
  after: Map<number, ThreadCpu>,
): {
  main: ThreadCpu;
  busiestOther: ThreadCpu;
  rest: ThreadCpu;
  others: number;
  /** The rest's user + sys seconds by thread name (where the CPU outside the two busiest threads goes). */
  restByName: Record<string, number>;
} {
  const delta = (tid: number): ThreadCpu => {
    const a = after.get(tid) ?? { user: 0, sys: 0 };
    const b = before.get(tid) ?? { user: 0, sys: 0 };
    return { user: a.user - b.user, sys: a.sys - b.sys, name: a.name ?? "?" };
  };
  const others = [...after.keys()].filter((t) => t !== pid).map((t) => delta(t));
  others.sort((x, y) => y.user + y.sys - (x.user + x.sys));
  const rest = others.slice(1).reduce((acc, t) => ({ user: acc.user + t.user, sys: acc.sys + t.sys }), {
    user: 0,
    sys: 0,
  });
  const restByName: Record<string, number> = {};
  for (const t of others.slice(1)) restByName[t.name!] = (restByName[t.name!] ?? 0) + t.user + t.sys;
  return {
    main: delta(pid),
    busiestOther: others[0] ?? { user: 0, sys: 0 },
    rest,
    others: others.length,
    restByName,
  };
}

/** Pids whose process group is `pgid` (e.g. wrangler and the workerd it started). */
export function groupPids(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** CPU seconds of every live process in a group (a process that exited meanwhile is not counted). */
export function groupCpuSeconds(pgid: number): number {
  let total = 0;
  for (const pid of groupPids(pgid)) {
    try {
      total += cpuSeconds(pid);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** Peak resident set size (VmHWM) in MiB. */
export function peakRssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs: number,
  intervalMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** One line of progress on stderr (stdout is the Markdown summary). */
export const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
