/**
 * The click route vs /healthz (docs/api/tracking.md): wrk against GET /t/c/{token}?u=… (a token
 * signed with this edge's TRACKING_SECRET, exactly as an origin writes it) and GET /healthz of the
 * same Worker, in the same run, like edge-accept.ts measures the send route. The click verifies the
 * token (one HMAC), answers 302, and writes its event after the answer (waitUntil): the target is a
 * requests/s ratio of at least 0.8. Loopback only, bounded by wrk's duration.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { base64url, createTrackingSigner, deriveTrackingKey } from "../../shared/tracking/token.ts";
import { startBenchEdge } from "./lib/edge.ts";
import { cpuSeconds, groupPids, say, sleep } from "./lib/procs.ts";
import { round } from "./lib/stats.ts";
import { runWrk, type WrkResult } from "./lib/wrk.ts";

export interface TrackingBenchResult {
  wrk: { threads: number; connections: number; durationS: number };
  click: Omit<WrkResult, "raw">;
  healthz: Omit<WrkResult, "raw">;
  /** click ÷ healthz: requests/s (target ≥ 0.8), and latency p50 / p99. */
  ratio: { rps: number; p50: number; p99: number };
  /** CPU per request of workerd (the Worker, its Durable Objects and local D1), ms. */
  cpuPerRequestMs: { click: number; healthz: number };
  target: number;
  met: boolean;
}

const TARGET = 0.8;
const strip = ({ raw: _raw, ...rest }: WrkResult) => rest;

function workerdCpu(pgid: number): number {
  let s = 0;
  for (const pid of groupPids(pgid)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "workerd") s += cpuSeconds(pid);
    } catch {
      // exited meanwhile
    }
  }
  return s;
}

/** workerd CPU per request over `run`, including the work it leaves behind (the waitUntil writes). */
async function measured(pgid: number, run: () => Promise<WrkResult>): Promise<{ r: WrkResult; ms: number }> {
  const before = workerdCpu(pgid);
  const r = await run();
  let last = workerdCpu(pgid);
  for (let waited = 0; waited < 5000; waited += 250) {
    await sleep(250);
    const now = workerdCpu(pgid);
    const idle = now - last < 0.02;
    last = now;
    if (idle) break;
  }
  return { r, ms: round(((last - before) * 1000) / Math.max(1, r.requests), 3) };
}

export async function benchTracking(ctx: {
  quick: boolean;
  workDir: string;
  wrkBin: string;
  dohUrl: string;
}): Promise<TrackingBenchResult> {
  const secret = randomBytes(24).toString("hex");
  const edge = await startBenchEdge(ctx.workDir, "tracking", ctx.dohUrl, "wrangler", {
    TRACKING_SECRET: secret,
  });
  try {
    const signer = createTrackingSigner(await deriveTrackingKey(secret));
    const url = "https://shop.example.com/offer?id=42&utm_source=newsletter";
    const token = await signer.sign(
      "click",
      {
        tenantId: edge.tenantId,
        messageId: `msg_${base64url(randomBytes(12)).toUpperCase()}`,
        recipient: "reader@example.net",
      },
      url,
    );
    const clickUrl = `${edge.url}/t/c/${token}?u=${encodeURIComponent(url)}`;
    for (let i = 0; i < 20; i++) {
      const res = await fetch(clickUrl, { redirect: "manual" });
      if (res.status !== 302 || res.headers.get("location") !== url)
        throw new Error(`warm-up click answered ${res.status} → ${res.headers.get("location")}`);
    }
    const durationS = ctx.quick ? 3 : 10;
    const base = { threads: 2, connections: 16, durationS, workDir: ctx.workDir };
    say(`tracking: wrk GET /healthz for ${durationS}s`);
    const healthz = await measured(edge.pid, () =>
      runWrk(ctx.wrkBin, { ...base, url: `${edge.url}/healthz` }),
    );
    say(`tracking: wrk GET /t/c/{token} for ${durationS}s`);
    const click = await measured(edge.pid, () => runWrk(ctx.wrkBin, { ...base, url: clickUrl }));
    // wrk's "Non-2xx or 3xx" counts statuses ≥ 400: every answer must have been the 302.
    if (click.r.non2xx > 0) say(`tracking: ${click.r.non2xx} click answers were errors`);
    const ratio = {
      rps: round(click.r.requestsPerSec / healthz.r.requestsPerSec, 3),
      p50: round(click.r.latencyMs.p50 / healthz.r.latencyMs.p50, 2),
      p99: round(click.r.latencyMs.p99 / healthz.r.latencyMs.p99, 2),
    };
    say(
      `tracking: click ${round(click.r.requestsPerSec, 0)} req/s vs /healthz ${round(healthz.r.requestsPerSec, 0)} req/s = ${ratio.rps} (target ≥ ${TARGET}); CPU ${click.ms} vs ${healthz.ms} ms/request`,
    );
    return {
      wrk: { threads: base.threads, connections: base.connections, durationS },
      click: strip(click.r),
      healthz: strip(healthz.r),
      ratio,
      cpuPerRequestMs: { click: click.ms, healthz: healthz.ms },
      target: TARGET,
      met: ratio.rps >= TARGET,
    };
  } finally {
    await edge.stop();
  }
}
