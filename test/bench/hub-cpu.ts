/**
 * `npm run bench -- --only=hubcpu`: the edge's CPU per accepted and per delivered message, in
 * phases that do not overlap, read from /proc (workerd's own CPU time, the Worker, its Durable
 * Objects and local D1 together), so a before/after pair can be compared at the same load without
 * reading requests/s (docs/performance.md). Miniflare runs the Worker bundle, as in the
 * through-the-edge runs (no wrangler proxy to add its own CPU).
 *
 *  1. `/healthz` × N at concurrency C: CPU per request of the cheapest route.
 *  2. `POST /v3/mail/send` × N (one personalization each) at concurrency C, no origin connected:
 *     CPU per accepted message, the hub's accept and its catalog flush included (measured until the
 *     runtime is idle again).
 *  3. B × 1,000 personalizations, one request at a time: CPU per accepted message of a bulk send.
 *  4. An origin connects and delivers everything accepted (to smtp-sink): the edge's CPU per
 *     delivered message (dispatch, jobs frames, results, their D1 writes), until idle again.
 *
 * `--instant`: step 4 with lib/instant-origin.ts, which answers every job "delivered" at once, so
 * the edge's CPU per delivered message is measured without an origin's sharing the two cores.
 *
 * `--profile`: the same phases again on a fresh edge under the CPU profiler (the Worker's isolate,
 * over the inspector), written to the bench's work dir; profiled runs are never the measured ones.
 * Sizes: `--requests=N` (default 1,500; quick 300), `--concurrency=C` (8), `--bulk=B` (3; quick 1).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startProfiling, summarizeProfile, type ProfileSummary } from "./lib/cpuprofile.ts";
import { postMail, startBenchEdge, type BenchEdge } from "./lib/edge.ts";
import { mailSendBody, recipient } from "./lib/mail.ts";
import { startInstantOrigin, type InstantOrigin } from "./lib/instant-origin.ts";
import { startOrigin } from "./lib/origin.ts";
import { say, sleep } from "./lib/procs.ts";
import { startSmtpSink } from "./lib/sink.ts";
import { round } from "./lib/stats.ts";

export interface HubCpuPhase {
  count: number;
  seconds: number;
  cpuSeconds: number;
  /** workerd CPU ms per request (healthz) or per message (the others). */
  cpuMsPer: number;
  profile?: ProfileSummary;
  profileFile?: string;
}

export interface HubCpuResult {
  loadAvgBefore: number[];
  loadAvgAfter: number[];
  concurrency: number;
  healthz: HubCpuPhase;
  acceptSingle: HubCpuPhase;
  acceptBulk: HubCpuPhase;
  delivery: HubCpuPhase & { originCpuMsPer: number };
  /** acceptSingle ÷ healthz CPU per request: the send route costs this many /healthz requests. */
  sendOverHealthz: number;
  profiled?: {
    healthz?: HubCpuPhase;
    acceptSingle?: HubCpuPhase;
    acceptBulk?: HubCpuPhase;
    delivery?: HubCpuPhase;
  };
}

export interface HubCpuCtx {
  quick: boolean;
  workDir: string;
  dohUrl: string;
  html: string;
  smtpSinkBin: string;
  dnsServer: string;
  requests?: number;
  concurrency?: number;
  bulk?: number;
  profile?: boolean;
  /** Deliver through lib/instant-origin.ts instead of a real origin and smtp-sink (the hub's CPU alone). */
  instant?: boolean;
}

/** Waits until the edge spends less than 20 ms of CPU in 250 ms (at most `maxMs`), then returns its CPU seconds. */
async function idleCpu(edge: BenchEdge, maxMs = 10_000): Promise<number> {
  let last = edge.cpuSeconds();
  for (let waited = 0; waited < maxMs; waited += 250) {
    await sleep(250);
    const now = edge.cpuSeconds();
    if (now - last < 0.02) return now;
    last = now;
  }
  return last;
}

async function pool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

async function runPhases(
  ctx: HubCpuCtx,
  edge: BenchEdge,
  profiling: boolean,
): Promise<Omit<HubCpuResult, "loadAvgBefore" | "loadAvgAfter" | "sendOverHealthz" | "concurrency">> {
  const requests = ctx.requests ?? (ctx.quick ? 300 : 1500);
  const concurrency = ctx.concurrency ?? 8;
  const bulk = ctx.bulk ?? (ctx.quick ? 1 : 3);
  const one = JSON.stringify(mailSendBody(ctx.html, [recipient(0)]));
  // Warm-up: the isolate compiled, the key and domain cached, the hub started.
  for (let i = 0; i < 30; i++) {
    const r = await postMail(edge, one);
    if (r.status !== 202) throw new Error(`warm-up POST answered ${r.status}: ${r.text.slice(0, 200)}`);
  }
  for (let i = 0; i < 30; i++) await (await fetch(`${edge.url}/healthz`)).text();
  await idleCpu(edge);

  const phase = async (
    name: string,
    count: number,
    run: () => Promise<void>,
    until?: () => Promise<void>,
  ): Promise<HubCpuPhase> => {
    const profiler = profiling
      ? await startProfiling(edge.inspectorPort, () => fetch(`${edge.url}/healthz`))
      : null;
    const cpu0 = profiling ? 0 : await idleCpu(edge);
    const t0 = Date.now();
    await run();
    if (until) await until();
    const seconds = (Date.now() - t0) / 1000;
    let cpu = 0;
    const out: HubCpuPhase = { count, seconds: round(seconds, 2), cpuSeconds: 0, cpuMsPer: 0 };
    if (profiler) {
      // The idle wait happens inside the profile (the catalog flush after the last request).
      await sleep(1500);
      const prof = await profiler.stop();
      const file = path.join(ctx.workDir, `hubcpu-${name}.cpuprofile`);
      fs.writeFileSync(file, JSON.stringify(prof));
      out.profile = summarizeProfile(prof, 25);
      out.profileFile = file;
    } else {
      cpu = (await idleCpu(edge)) - cpu0;
      out.cpuSeconds = round(cpu, 3);
      out.cpuMsPer = round((cpu * 1000) / count, 3);
    }
    say(
      `hubcpu: ${name}: ${count} in ${out.seconds} s${profiling ? " (profiled)" : `, ${out.cpuMsPer} ms CPU each`}`,
    );
    return out;
  };

  const healthz = await phase("healthz", requests, () =>
    pool(requests, concurrency, async () => {
      const r = await fetch(`${edge.url}/healthz`);
      await r.text();
      if (r.status !== 200) throw new Error(`/healthz answered ${r.status}`);
    }),
  );
  const acceptSingle = await phase("accept-single", requests, () =>
    pool(requests, concurrency, async (i) => {
      const r = await postMail(edge, JSON.stringify(mailSendBody(ctx.html, [recipient(i)])));
      if (r.status !== 202) throw new Error(`POST answered ${r.status}: ${r.text.slice(0, 200)}`);
    }),
  );
  const perBulk = 1000;
  const bodies = Array.from({ length: bulk }, (_, b) =>
    JSON.stringify(
      mailSendBody(
        ctx.html,
        Array.from({ length: perBulk }, (_, i) => recipient(requests + b * perBulk + i)),
      ),
    ),
  );
  const acceptBulk = await phase("accept-bulk", bulk * perBulk, async () => {
    for (const body of bodies) {
      const r = await postMail(edge, body);
      if (r.status !== 202 || r.messageIds.length !== perBulk)
        throw new Error(`bulk POST answered ${r.status}: ${r.text.slice(0, 200)}`);
    }
  });

  // Everything accepted so far (warm-up included) waits in the outbox; an origin delivers it now.
  const total = 30 + requests + bulk * perBulk;
  const parts = { healthz, acceptSingle, acceptBulk };
  if (ctx.instant) {
    // The hub's side alone: every job answered "delivered" at once (lib/instant-origin.ts).
    let link: InstantOrigin | null = null;
    try {
      const delivery = await phase(
        "delivery-instant",
        total,
        async () => {
          link = await startInstantOrigin(edge.workerUrl, edge.originToken);
        },
        () => link!.waitForAcks(total, Math.max(120_000, total * 40)),
      );
      return { ...parts, delivery: { ...delivery, originCpuMsPer: 0 } };
    } finally {
      (link as InstantOrigin | null)?.close();
    }
  }
  const sink = await startSmtpSink(ctx.smtpSinkBin);
  let originCpu = 0;
  try {
    let origin: Awaited<ReturnType<typeof startOrigin>> | null = null;
    try {
      const delivery = await phase(
        "delivery",
        total,
        async () => {
          origin = await startOrigin({
            edgeUrl: edge.workerUrl,
            originToken: edge.originToken,
            dnsServer: ctx.dnsServer,
            smtpPort: sink.port,
            workDir: ctx.workDir,
            name: `origin-hubcpu${profiling ? "-profiled" : ""}`,
          });
        },
        async () => {
          const c0 = origin!.cpuSeconds();
          await sink.waitForCount(total, Math.max(120_000, total * 40));
          originCpu = origin!.cpuSeconds() - c0;
        },
      );
      return { ...parts, delivery: { ...delivery, originCpuMsPer: round((originCpu * 1000) / total, 3) } };
    } finally {
      if (origin) await (origin as { stop(): Promise<void> }).stop();
    }
  } finally {
    await sink.stop();
  }
}

export async function benchHubCpu(ctx: HubCpuCtx): Promise<HubCpuResult> {
  const loadAvgBefore = os.loadavg().map((x) => round(x, 2));
  const edge = await startBenchEdge(ctx.workDir, "hubcpu", ctx.dohUrl, "miniflare");
  let measured: Awaited<ReturnType<typeof runPhases>>;
  try {
    measured = await runPhases(ctx, edge, false);
  } finally {
    await edge.stop();
  }
  const result: HubCpuResult = {
    loadAvgBefore,
    loadAvgAfter: os.loadavg().map((x) => round(x, 2)),
    concurrency: ctx.concurrency ?? 8,
    ...measured,
    sendOverHealthz: round(measured.acceptSingle.cpuMsPer / measured.healthz.cpuMsPer, 2),
  };
  if (ctx.profile) {
    const pEdge = await startBenchEdge(ctx.workDir, "hubcpu-profiled", ctx.dohUrl, "miniflare");
    try {
      result.profiled = await runPhases(ctx, pEdge, true);
    } catch (err) {
      say(`hubcpu: profiled run failed: ${(err as Error).message}`);
    } finally {
      await pEdge.stop();
    }
  }
  return result;
}
