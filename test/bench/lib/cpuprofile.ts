/**
 * V8 CPU profiles: summarize a .cpuprofile (from `node --cpu-prof`, or from the Chrome DevTools
 * Protocol Profiler domain) into the functions with the most self time, and the same grouped by
 * package / source folder. Also a tiny CDP client to profile the Worker inside wrangler dev through
 * its inspector port.
 */
import { WebSocket } from "ws";

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
export interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileRow {
  name: string;
  where: string;
  selfMs: number;
  selfPct: number;
}
export interface ProfileSummary {
  totalMs: number;
  /** Share of the profile's time where the thread was idle: `(idle)` samples and gapMs. */
  idlePct: number;
  /** Time between samples beyond MAX_SAMPLE_INTERVALS sampling intervals: a wait, not any frame's. */
  gapMs: number;
  topFunctions: ProfileRow[];
  byGroup: ProfileRow[];
}

/** "node_modules/<pkg>" → pkg, repo source → its folder, node internals → "node:internal". */
export function groupOf(url: string): string {
  if (!url) return "(native / V8)";
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith("node:")) return "node:internal";
  const repo = /\/(origin|shared|edge)\/src\/([^/]+)|\/(shared)\/([^/]+)/.exec(url);
  if (repo) return repo[1] ? `${repo[1]}/src/${repo[2]}` : `${repo[3]}/${repo[4]}`;
  return url.replace(/^.*\//, "");
}

const shortUrl = (url: string) =>
  url.replace(/^file:\/\//, "").replace(/^.*?\/(node_modules|origin|shared|edge)\//, "$1/");

/** A gap between samples longer than this many sampling intervals is not the sampled frame's time. */
const MAX_SAMPLE_INTERVALS = 4;

/**
 * The sampling interval: the median gap between samples (µs). A profiler samples at a fixed
 * interval while the thread runs; longer gaps are where it took no sample.
 */
export function samplingIntervalUs(timeDeltas: number[]): number {
  const gaps = timeDeltas.filter((d) => d > 0).sort((a, b) => a - b);
  return gaps.length > 0 ? gaps[Math.floor(gaps.length / 2)]! : 0;
}

export function summarizeProfile(profile: CpuProfile, top = 15): ProfileSummary {
  // Self time per node: sum of timeDeltas of its samples (exact), else hitCount × mean interval.
  // A sample's duration is the gap to the next one, but only up to MAX_SAMPLE_INTERVALS sampling
  // intervals: workerd's isolate records no `(idle)` samples while it waits (for I/O, for the next
  // request), so without the cap every wait was charged to whatever ran last before it (one 3 s
  // wait made a single `(program)` sample two thirds of a delivery profile). The rest of such a gap
  // is counted as idle, under `gapMs`.
  const selfUs = new Map<number, number>();
  let gapUs = 0;
  if (profile.samples && profile.timeDeltas) {
    const cap = samplingIntervalUs(profile.timeDeltas) * MAX_SAMPLE_INTERVALS;
    for (let i = 0; i < profile.samples.length; i++) {
      const id = profile.samples[i]!;
      const dt = Math.max(0, profile.timeDeltas[i + 1] ?? 0);
      const own = cap > 0 ? Math.min(dt, cap) : dt;
      gapUs += dt - own;
      selfUs.set(id, (selfUs.get(id) ?? 0) + own);
    }
  } else {
    const hits = profile.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0) || 1;
    const interval = (profile.endTime - profile.startTime) / hits;
    for (const n of profile.nodes) selfUs.set(n.id, (n.hitCount ?? 0) * interval);
  }
  // Native frames (no url) are named after their JS caller, e.g. "run ← signOneShot".
  const parent = new Map<number, CpuProfileNode>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const callerOf = (n: CpuProfileNode): string | null => {
    for (let p = parent.get(n.id); p; p = parent.get(p.id))
      if (p.callFrame.url) return p.callFrame.functionName || "(anonymous)";
    return null;
  };
  /** The package / repo folder responsible: nearest frame (self or caller) outside node internals and native code. */
  const ownerGroup = (n: CpuProfileNode): string => {
    for (let p: CpuProfileNode | undefined = n; p; p = parent.get(p.id)) {
      const url = p.callFrame.url;
      if (url && !url.startsWith("node:")) return groupOf(url);
    }
    return n.callFrame.url ? groupOf(n.callFrame.url) : "(native / V8)";
  };
  let total = gapUs;
  let idle = gapUs;
  const byFn = new Map<string, { name: string; where: string; us: number }>();
  const byGroup = new Map<string, number>();
  for (const n of profile.nodes) {
    const us = selfUs.get(n.id) ?? 0;
    total += us;
    let fn = n.callFrame.functionName || "(anonymous)";
    if (fn === "(idle)") {
      idle += us;
      continue;
    }
    const where = n.callFrame.url ? `${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : "";
    if (!n.callFrame.url && !fn.startsWith("(")) {
      const caller = callerOf(n);
      if (caller) fn = `${fn} ← ${caller}`;
    }
    const key = `${fn}@${where}`;
    const e = byFn.get(key) ?? { name: fn, where, us: 0 };
    e.us += us;
    byFn.set(key, e);
    const g = fn.startsWith("(") ? fn : ownerGroup(n);
    byGroup.set(g, (byGroup.get(g) ?? 0) + us);
  }
  const busy = total - idle || 1;
  const rows = (entries: { name: string; where: string; us: number }[]) =>
    entries
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => ({
        name: e.name,
        where: e.where,
        selfMs: Math.round(e.us / 100) / 10,
        selfPct: Math.round((e.us / busy) * 1000) / 10,
      }));
  return {
    totalMs: Math.round(total / 1000),
    idlePct: Math.round((idle / (total || 1)) * 1000) / 10,
    gapMs: Math.round(gapUs / 1000),
    topFunctions: rows([...byFn.values()]),
    byGroup: rows([...byGroup].map(([name, us]) => ({ name, where: "", us }))),
  };
}

/** Minimal CDP session over the inspector WebSocket. */
export class CdpSession {
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private constructor(private readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const msg = JSON.parse(String(data)) as { id?: number; result?: unknown; error?: { message: string } };
      if (msg.id === undefined) return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(msg.error.message));
      else p.resolve(msg.result);
    });
  }

  static async connect(wsUrl: string, timeoutMs = 10_000): Promise<CdpSession> {
    const ws = new WebSocket(wsUrl, { maxPayload: 512 * 1024 * 1024 });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`inspector ${wsUrl} did not open`)), timeoutMs);
      ws.once("open", () => {
        clearTimeout(t);
        resolve();
      });
      ws.once("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
    return new CdpSession(ws);
  }

  send<T = any>(method: string, params: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`CDP ${method} timed out`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
    });
  }

  close(): void {
    this.ws.terminate();
  }
}

/**
 * Starts the CPU profiler of the process behind an inspector port (node --inspect, or wrangler dev's
 * --inspector-port, which proxies to the Worker's isolate); `stop()` returns the profile.
 */
export async function startProfiling(
  inspectorPort: number,
  /**
   * workerd seems to serve inspector commands only while the isolate is running something; when the
   * Worker is idle, Profiler.stop waited forever. `poke` (e.g. a GET /healthz) is called every 250 ms
   * while a command is pending, to give it a turn.
   */
  poke?: () => Promise<unknown>,
): Promise<{ stop(): Promise<CpuProfile> }> {
  const list = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as {
    webSocketDebuggerUrl?: string;
  }[];
  const target = list.find((t) => t.webSocketDebuggerUrl);
  if (!target?.webSocketDebuggerUrl)
    throw new Error(`no inspector target on port ${inspectorPort}: ${JSON.stringify(list)}`);
  const cdp = await CdpSession.connect(target.webSocketDebuggerUrl);
  const send = async <T>(
    method: string,
    params: Record<string, unknown> = {},
    timeoutMs = 30_000,
  ): Promise<T> => {
    const timer = poke ? setInterval(() => void poke().catch(() => undefined), 250) : null;
    try {
      return await cdp.send<T>(method, params, timeoutMs);
    } finally {
      if (timer) clearInterval(timer);
    }
  };
  try {
    await send("Profiler.enable");
    await send("Profiler.setSamplingInterval", { interval: 500 }).catch(() => undefined);
    await send("Profiler.start");
  } catch (err) {
    cdp.close();
    throw err;
  }
  return {
    async stop() {
      try {
        const { profile } = await send<{ profile: CpuProfile }>("Profiler.stop", {}, 60_000);
        return profile;
      } finally {
        cdp.close();
      }
    },
  };
}
