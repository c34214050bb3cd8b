/**
 * Process groups a test started detached (wrangler dev and its workerd child, scripts/lib/wrangler-dev.ts)
 * outlive the test process unless something ends them: a file whose afterAll never runs, or a vitest
 * killed mid-run, used to leave a whole `wrangler dev` stack behind. `reapOnExit(pid)` records a group
 * leader's pid; when this process exits, is sent SIGTERM / SIGINT / SIGHUP, or loses its IPC parent
 * (vitest's fork pool: the parent vitest was killed), every recorded group still alive gets SIGKILL,
 * synchronously, by pid. `forget(pid)` drops a group its owner stopped itself.
 *
 * Not covered: SIGKILL of this process itself (no handler runs); the group then outlives it.
 */
const groups = new Set<number>();
let installed = false;

function killAll(): void {
  for (const pid of groups) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  groups.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", killAll);
  for (const [signal, code] of [
    ["SIGTERM", 143],
    ["SIGINT", 130],
    ["SIGHUP", 129],
  ] as const) {
    // A handler replaces the default action (exit), so exit here once the groups are gone.
    process.once(signal, () => {
      killAll();
      process.exit(code);
    });
  }
  // A forked worker whose parent died: the IPC channel closes and nothing else would end us.
  if (process.send)
    process.once("disconnect", () => {
      killAll();
      process.exit(1);
    });
}

/** Records the process group led by `pid`, to be killed if this process goes away first. */
export function reapOnExit(pid: number): void {
  install();
  groups.add(pid);
}

/** Drops a group from the record (its owner stopped it). */
export function forget(pid: number): void {
  groups.delete(pid);
}
