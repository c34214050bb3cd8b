/**
 * test/helpers/process-reaper.ts, as test/e2e/stack.ts uses it for the edge's `wrangler dev` group: a
 * real parent process starts a detached child, and the child must be gone once the parent is killed
 * (SIGTERM, SIGINT), loses its IPC parent (as a vitest fork worker does when vitest is killed), or
 * exits (the parent is plain node with tsx's loader, so signals and the IPC channel reach it directly,
 * not a wrapper); without the reaper the same child outlives its parent, so the check can fail.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const PARENT = path.join(ROOT, "test/fixtures/reaper-parent.ts");
const started: number[] = [];
const parents: ChildProcess[] = [];

function alive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pgid: number, timeoutMs = 5_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!alive(pgid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

/** Starts the parent and resolves with it and its child's pid, once the child is recorded. */
async function parent(args: string[], ipc = false): Promise<{ proc: ChildProcess; childPid: number }> {
  const proc = spawn(process.execPath, ["--import", "tsx", PARENT, ...args], {
    cwd: ROOT,
    stdio: ipc ? ["ignore", "pipe", "inherit", "ipc"] : ["ignore", "pipe", "inherit"],
  });
  const childPid = await new Promise<number>((resolve, reject) => {
    let out = "";
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(Number(out.trim()));
    });
    proc.once("exit", (code) => reject(new Error(`parent exited (${code}) before printing a pid`)));
  });
  started.push(childPid);
  parents.push(proc);
  expect(alive(childPid)).toBe(true);
  return { proc, childPid };
}

const exited = (proc: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve();
    else proc.once("exit", () => resolve());
  });

afterEach(() => {
  // A parent a failed check left running (by its pid, through its handle), then any child group.
  for (const proc of parents.splice(0))
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  for (const pid of started.splice(0)) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // gone, as it should be
    }
  }
});

describe("process reaper", () => {
  it.each(["SIGTERM", "SIGINT"] as const)(
    "a parent sent %s takes its detached child group with it",
    async (signal) => {
      const { proc, childPid } = await parent([]);
      proc.kill(signal);
      await exited(proc);
      expect(await gone(childPid)).toBe(true);
    },
  );

  it("a parent that exits by itself takes its child group with it", async () => {
    const { proc, childPid } = await parent(["exit"]);
    await exited(proc);
    expect(proc.exitCode).toBe(0);
    expect(await gone(childPid)).toBe(true);
  });

  it("a forked parent whose own parent goes away (IPC closed) ends its child group and itself", async () => {
    const { proc, childPid } = await parent([], true);
    proc.disconnect();
    await exited(proc);
    expect(await gone(childPid)).toBe(true);
  });

  it("without the reaper the detached child outlives its parent (so the checks above can fail)", async () => {
    const { proc, childPid } = await parent(["--no-reap"]);
    proc.kill("SIGTERM");
    await exited(proc);
    expect(await gone(childPid, 500)).toBe(false);
  });
});
