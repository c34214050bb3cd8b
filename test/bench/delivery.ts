/**
 * Measurement 2: delivery throughput into Postfix's smtp-sink on loopback, same message size, same
 * sink program, same message count for every contender:
 *   ceiling   smtp-source → smtp-sink (no MTA in between)
 *   postfix   smtp-source → private Postfix relay → smtp-sink (timed from first injection to last
 *             message at the sink)
 *   origin    link-protocol harness → origin (DKIM rsa-sha256, real MX look-up on the loopback DNS
 *             server) → smtp-sink; the origin alone
 *   via edge  10 × POST (1,000 personalizations) → wrangler dev → origin → smtp-sink, paced (next
 *             POST when the previous 1,000 are at the sink) and as one burst (all 10 POSTs at once,
 *             bounded in time; under wrangler dev the hub once did not survive a 10,000-message backlog)
 * Plus separate, shorter runs under the CPU profiler (the origin over its inspector, the edge over
 * wrangler's), so profiling does not touch the numbers above.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { defaultComposeThreads } from "../../origin/src/compose/pool.ts";
import { startProfiling, summarizeProfile, type ProfileSummary } from "./lib/cpuprofile.ts";
import { freePort } from "../../scripts/lib/wrangler-dev.ts";
import { postMail, type BenchEdge } from "./lib/edge.ts";
import { startLinkHarness } from "./lib/link-harness.ts";
import { buildJobs, FROM, mailSendBody, recipient, rsaKeyPem } from "./lib/mail.ts";
import { startOrigin } from "./lib/origin.ts";
import { startPostfixRelay } from "./lib/postfix.ts";
import { groupCpuSeconds, onCleanup, say, sleep, threadCpu, threadCpuDelta } from "./lib/procs.ts";
import { startSmtpSink } from "./lib/sink.ts";
import { round } from "./lib/stats.ts";

export interface DeliveryCtx {
  quick: boolean;
  workDir: string;
  smtpSinkBin: string;
  smtpSourceBin: string;
  postfixBin: string;
  dnsServer: string;
  html: string;
  /** Size of the signed message the origin sends; smtp-source sends the same. */
  messageBytes: number;
  /** Parallel SMTP sessions for smtp-source; the origin's default MAX_CONNECTIONS_PER_HOST is 5 too. */
  sessions: number;
}

export interface Throughput {
  messages: number;
  seconds: number;
  messagesPerSec: number;
  cpuSeconds?: number;
  cpuSecondsPer1000?: number;
  peakRssMiB?: number;
  notes?: string;
  [k: string]: unknown;
}

const timeoutFor = (n: number) => Math.max(60_000, n * 30);

/** Messages the origin-alone runs deliver before measuring (benchOriginHarness `warmup`). */
export const WARMUP_MESSAGES = 1_000;

/**
 * The compose settings the origin under test runs with: the caller's COMPOSE_THREADS /
 * DKIM_FAST_PATH (startOrigin passes them through), else the origin's defaults (origin/src/config.ts).
 */
function composeSettings(): { composeThreads: number; dkimFastPath: boolean } {
  const threads = process.env.COMPOSE_THREADS;
  return {
    composeThreads: threads !== undefined && threads !== "" ? Number(threads) : defaultComposeThreads(),
    dkimFastPath: !["false", "0"].includes(process.env.DKIM_FAST_PATH ?? ""),
  };
}

function runSmtpSource(bin: string, ctx: DeliveryCtx, n: number, port: number): Promise<void> {
  const args = [
    "-s",
    String(ctx.sessions),
    "-l",
    String(ctx.messageBytes),
    "-m",
    String(n),
    "-f",
    FROM.email,
    "-t",
    recipient(0),
    `127.0.0.1:${port}`,
  ];
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"], detached: true });
  const remove = onCleanup("smtp-source", () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // done
    }
  });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) =>
    child.once("exit", (code) => {
      void remove();
      if (code === 0) resolve();
      else reject(new Error(`smtp-source exited with ${code}: ${err}`));
    }),
  );
}

export async function benchCeiling(ctx: DeliveryCtx, n: number): Promise<Throughput> {
  const sink = await startSmtpSink(ctx.smtpSinkBin);
  try {
    const t0 = Date.now();
    const sent = runSmtpSource(ctx.smtpSourceBin, ctx, n, sink.port);
    const tEnd = await sink.waitForCount(n, timeoutFor(n));
    await sent;
    const seconds = (tEnd - t0) / 1000;
    return {
      messages: n,
      seconds: round(seconds, 2),
      messagesPerSec: round(n / seconds, 0),
      notes: `smtp-source -s ${ctx.sessions}, new connection per message`,
    };
  } finally {
    await sink.stop();
  }
}

export async function benchPostfix(ctx: DeliveryCtx, n: number): Promise<Throughput> {
  const sink = await startSmtpSink(ctx.smtpSinkBin);
  try {
    const relay = await startPostfixRelay(ctx.postfixBin, sink.port);
    try {
      // Warm the relay's processes (smtpd, cleanup, smtp) so startup is not timed; excluded from counts.
      await runSmtpSource(ctx.smtpSourceBin, ctx, 5, relay.port);
      await sink.waitForCount(5, 30_000).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\npostfix log:\n${relay.logTail()}`);
      });
      const cpu0 = groupCpuSeconds(relay.masterPid);
      const t0 = Date.now();
      const injected = runSmtpSource(ctx.smtpSourceBin, ctx, n, relay.port);
      await injected;
      const tInjected = Date.now();
      const tEnd = await sink.waitForCount(n + 5, timeoutFor(n)).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\npostfix log:\n${relay.logTail()}`);
      });
      const cpu = groupCpuSeconds(relay.masterPid) - cpu0;
      const seconds = (tEnd - t0) / 1000;
      return {
        messages: n,
        seconds: round(seconds, 2),
        messagesPerSec: round(n / seconds, 0),
        injectSeconds: round((tInjected - t0) / 1000, 2),
        cpuSeconds: round(cpu, 2),
        cpuSecondsPer1000: round((cpu / n) * 1000, 3),
        notes: "CPU = Postfix processes alive at the end (master's process group); smtp-source not included",
      };
    } finally {
      await relay.stop();
    }
  } finally {
    await sink.stop();
  }
}

export async function benchOriginHarness(
  ctx: DeliveryCtx,
  n: number,
  opts: {
    profileTo?: string;
    /**
     * Every job's HTML made unique (a number in its first heading), as when each personalization is
     * substituted or tracked: nothing of one message's MIME can be reused for the next.
     */
    uniqueContent?: boolean;
    /**
     * Messages delivered first and not measured (default WARMUP_MESSAGES): until V8 has compiled
     * the hot code (TurboFan, on its helper threads) a fresh process spends CPU no long-running
     * node spends per message. 0 measures from the first message after start-up.
     */
    warmup?: number;
  } = {},
): Promise<Throughput & { profile?: ProfileSummary; profileFile?: string; failed: number }> {
  const sink = await startSmtpSink(ctx.smtpSinkBin);
  const token = randomBytes(24).toString("hex");
  const harness = await startLinkHarness(token);
  try {
    const inspectPort = opts.profileTo ? await freePort() : undefined;
    const origin = await startOrigin({
      edgeUrl: harness.url,
      originToken: token,
      dnsServer: ctx.dnsServer,
      smtpPort: sink.port,
      workDir: ctx.workDir,
      name: opts.profileTo ? "origin-harness-profiled" : "origin-harness",
      ...(inspectPort ? { inspectPort } : {}),
    });
    try {
      await harness.connected;
      const key = rsaKeyPem();
      const uniqueJobs = (count: number, from: number) => {
        const list = buildJobs(count, ctx.html, key);
        if (opts.uniqueContent)
          for (const [i, job] of list.entries())
            job.message.html = ctx.html.replace("Item 1:", `Item 1 (${from + i}):`);
        return list;
      };
      // The same kind of messages as the measured ones (other ids), delivered and reported first.
      const warmup = opts.warmup ?? WARMUP_MESSAGES;
      if (warmup > 0) {
        harness.start(uniqueJobs(warmup, n));
        await sink.waitForCount(warmup, timeoutFor(warmup));
        await harness.allResults(timeoutFor(warmup));
      }
      const jobs = uniqueJobs(n, 0);
      // Profile only the delivery window (not start-up and module loading).
      const profiler = inspectPort ? await startProfiling(inspectPort) : null;
      const cpu0 = origin.cpuSeconds();
      const threads0 = threadCpu(origin.pid);
      const t0 = harness.start(jobs);
      const tSink = await sink.waitForCount(warmup + n, timeoutFor(n));
      const tResults = await harness.allResults(timeoutFor(n));
      const cpu = origin.cpuSeconds() - cpu0;
      const threads = threadCpuDelta(origin.pid, threads0, threadCpu(origin.pid));
      const prof = profiler ? await profiler.stop() : null;
      const frames = harness.framesIn();
      const failed = [...harness.outcomes().values()].filter((s) => s !== "delivered").length;
      const seconds = (tSink - t0) / 1000;
      const result = {
        messages: n,
        seconds: round(seconds, 2),
        messagesPerSec: round(n / seconds, 0),
        allResultsSeconds: round((tResults - t0) / 1000, 2),
        cpuSeconds: round(cpu, 2),
        cpuSecondsPer1000: round((cpu / n) * 1000, 3),
        peakRssMiB: round(origin.peakRssMiB(), 0),
        failed,
        // CPU s / 1,000 messages per thread, user + sys: the main thread (SMTP, link, journal), the
        // busiest other thread (the compose worker when there is one), all the others together.
        cpuPer1000ByThread: Object.fromEntries(
          (["main", "busiestOther", "rest"] as const).map((k) => [
            k,
            { user: round((threads[k].user / n) * 1000, 3), sys: round((threads[k].sys / n) * 1000, 3) },
          ]),
        ),
        restPer1000ByName: Object.fromEntries(
          Object.entries(threads.restByName)
            .filter(([, s]) => s > 0)
            .map(([name, s]) => [name, round((s / n) * 1000, 3)]),
        ),
        // WebSocket frames the origin wrote per 1,000 messages (each is at least one socket write).
        linkFramesPer1000: round((Object.values(frames).reduce((a, b) => a + b, 0) / n) * 1000, 0),
        linkFrames: frames,
        uniqueContent: opts.uniqueContent === true,
        warmupMessages: warmup,
        ...composeSettings(),
      };
      if (failed > 0) say(`origin harness: ${failed} of ${n} jobs were not delivered`);
      if (prof && opts.profileTo) {
        fs.writeFileSync(opts.profileTo, JSON.stringify(prof));
        return { ...result, profile: summarizeProfile(prof, 20), profileFile: opts.profileTo };
      }
      return result;
    } finally {
      await origin.stop();
    }
  } finally {
    await harness.close();
    await sink.stop();
  }
}

/** Waits (at most `seconds`) until the edge spends under 50 ms of CPU in a second. */
async function untilIdle(edge: BenchEdge, seconds: number): Promise<void> {
  let last = edge.cpuSeconds();
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
    const now = edge.cpuSeconds();
    if (now - last < 0.05) return;
    last = now;
  }
}

export async function benchOriginViaEdge(
  ctx: DeliveryCtx,
  edge: BenchEdge,
  requests: number,
  perRequest: number,
  opts: {
    profileEdgeTo?: string;
    /** The origin's CPU profile of the same window (its inspector), beside the harness run's profile. */
    profileOriginTo?: string;
    /** Post the next request only when the previous one's messages are all at the sink (outbox ≤ perRequest). */
    paced?: boolean;
    timeoutMs?: number;
    /**
     * Messages delivered through the edge before measuring (default WARMUP_MESSAGES, as the
     * origin-alone run gets): a fresh origin spends more CPU per message while V8 still compiles its
     * hot code (docs/testing.md#benchmarks), so both sides of the ratio are measured warm. 0 measures
     * from start-up.
     */
    warmup?: number;
  } = {},
): Promise<Throughput & { edgeProfile?: ProfileSummary; originProfile?: ProfileSummary }> {
  const sink = await startSmtpSink(ctx.smtpSinkBin);
  try {
    const originInspectPort = opts.profileOriginTo ? await freePort() : undefined;
    const origin = await startOrigin({
      edgeUrl: edge.workerUrl,
      originToken: edge.originToken,
      dnsServer: ctx.dnsServer,
      smtpPort: sink.port,
      workDir: ctx.workDir,
      name: opts.profileOriginTo ? "origin-via-edge-profiled" : "origin-via-edge",
      ...(originInspectPort ? { inspectPort: originInspectPort } : {}),
    });
    try {
      const n = requests * perRequest;
      const warmup = opts.warmup ?? WARMUP_MESSAGES;
      // Recipients of the warm-up come after the measured ones, so no address is sent to twice.
      const bodyOf = (first: number, count: number) =>
        JSON.stringify(
          mailSendBody(
            ctx.html,
            Array.from({ length: count }, (_, i) => recipient(first + i)),
          ),
        );
      if (warmup > 0) {
        const res = await postMail(edge, bodyOf(n, warmup));
        if (res.status !== 202)
          throw new Error(`warm-up POST answered ${res.status}: ${res.text.slice(0, 200)}`);
        await sink.waitForCount(warmup, timeoutFor(warmup));
        await untilIdle(edge, 60);
      }
      const bodies = Array.from({ length: requests }, (_, r) => bodyOf(r * perRequest, perRequest));
      const profiler = opts.profileEdgeTo
        ? await startProfiling(edge.inspectorPort, () => fetch(`${edge.url}/healthz`))
        : null;
      const originProfiler = originInspectPort ? await startProfiling(originInspectPort) : null;
      const edgeCpu0 = edge.cpuSeconds();
      const originCpu0 = origin.cpuSeconds();
      const t0 = Date.now();
      const msTo202: number[] = [];
      const deadline = t0 + (opts.timeoutMs ?? timeoutFor(n) * 2);
      const left = () => Math.max(1, deadline - Date.now());
      for (const [r, body] of bodies.entries()) {
        const res = await postMail(edge, body);
        if (res.status !== 202)
          throw new Error(
            `POST ${r + 1} of ${requests} answered ${res.status} after ${round(res.ms, 0)} ms: ${res.text.slice(0, 200)}`,
          );
        msTo202.push(round(res.ms, 0));
        if (opts.paced) await sink.waitForCount(warmup + (r + 1) * perRequest, Math.min(left(), 60_000));
      }
      const tPosted = Date.now();
      const tSink = await sink.waitForCount(warmup + n, left());
      const originCpu = origin.cpuSeconds() - originCpu0;
      const originProf = originProfiler ? await originProfiler.stop() : null;
      if (originProf && opts.profileOriginTo)
        fs.writeFileSync(opts.profileOriginTo, JSON.stringify(originProf));
      const edgeCpuAtSink = edge.cpuSeconds() - edgeCpu0;
      // The edge keeps recording results after the last message left; wait until it is idle.
      // (Not on the profiled run: with the inspector attached workerd never looks idle.)
      await untilIdle(edge, profiler ? 3 : 60);
      const edgeCpu = edge.cpuSeconds() - edgeCpu0;
      const prof = profiler ? await profiler.stop() : null;
      if (prof && opts.profileEdgeTo) fs.writeFileSync(opts.profileEdgeTo, JSON.stringify(prof));
      const seconds = (tSink - t0) / 1000;
      return {
        ...(prof ? { edgeProfile: summarizeProfile(prof, 20) } : {}),
        ...(originProf ? { originProfile: summarizeProfile(originProf, 20) } : {}),
        messages: n,
        seconds: round(seconds, 2),
        messagesPerSec: round(n / seconds, 0),
        postSeconds: round((tPosted - t0) / 1000, 2),
        paced: opts.paced === true,
        warmupMessages: warmup,
        msTo202,
        cpuSeconds: round(originCpu, 2),
        cpuSecondsPer1000: round((originCpu / n) * 1000, 3),
        peakRssMiB: round(origin.peakRssMiB(), 0),
        edgeCpuSecondsAtLastMessage: round(edgeCpuAtSink, 2),
        edgeCpuSecondsUntilIdle: round(edgeCpu, 2),
        edgeCpuSecondsPer1000: round((edgeCpu / n) * 1000, 3),
        ...composeSettings(),
        notes:
          "origin CPU/RSS = origin process; edge CPU = wrangler + workerd (process group), until the edge went idle after recording results",
      };
    } finally {
      await origin.stop();
    }
  } finally {
    await sink.stop();
  }
}

export { say };
