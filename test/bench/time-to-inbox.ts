/**
 * Measurement 3: time to inbox — from the start of POST /v3/mail/send to the message's arrival at the
 * sink — through the whole local stack (wrangler dev → OriginHub → origin → loopback MX). The sink is
 * a Node SMTP server that records each arrival by Message-ID (smtp-sink has only a counter); the edge
 * fixes the Message-ID from the message id it returns in the 202, so each sample is exact.
 *
 * Open-loop load (requests start on a schedule whatever the answers do):
 *   fixed     50 requests/s for 20 s (5 s with --quick)
 *   search    rising rates; a rate is "sustained" when every request got its 202, the sender kept
 *             the schedule, and every message arrived within 2 s of the end of the window (no
 *             backlog built up). The highest sustained rate is reported, with its latencies.
 */
import { postMail, type BenchEdge } from "./lib/edge.ts";
import { mailSendBody, messageIdHeaderFor, recipient } from "./lib/mail.ts";
import { startOrigin } from "./lib/origin.ts";
import { say, sleep } from "./lib/procs.ts";
import { startTimingSink, type TimingSink } from "./lib/sink.ts";
import { round, summarize, type Summary } from "./lib/stats.ts";

export interface RateRun {
  offeredPerSec: number;
  durationS: number;
  sent: number;
  /** Requests actually started per second (the scheduler can fall behind when requests pile up). */
  startedPerSec: number;
  non202: number;
  arrived: number;
  /** Seconds from the end of the window to the last arrival. */
  backlogS: number;
  sustained: boolean;
  ttiMs: Summary;
  acceptMs: Summary;
}

export interface TtiResult {
  fixed: RateRun;
  steps: RateRun[];
  sustained: (RateRun & { messagesPerHour: number }) | null;
}

const MAX_IN_FLIGHT = 256;
const BACKLOG_LIMIT_S = 2;

async function runRate(
  edge: BenchEdge,
  sink: TimingSink,
  html: string,
  rate: number,
  durationS: number,
  firstIndex: number,
): Promise<RateRun> {
  const total = Math.round(rate * durationS);
  const started = new Map<string, number>(); // Message-ID → POST start (ms)
  const acceptMs: number[] = [];
  let non202 = 0;
  let inFlight = 0;
  let sent = 0;
  const posts: Promise<void>[] = [];
  const t0 = Date.now();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * rate) + 1);
    while (sent < due && inFlight < MAX_IN_FLIGHT) {
      const body = JSON.stringify(mailSendBody(html, [recipient(firstIndex + sent)]));
      sent++;
      inFlight++;
      const at = Date.now();
      posts.push(
        postMail(edge, body)
          .then((r) => {
            if (r.status !== 202 || !r.messageIds[0]) non202++;
            else {
              started.set(messageIdHeaderFor(r.messageIds[0]), at);
              acceptMs.push(r.ms);
            }
          })
          .catch(() => void non202++)
          .finally(() => void inFlight--),
      );
    }
    await sleep(2);
  }
  const tLastStart = Date.now();
  await Promise.all(posts);
  const windowEnd = t0 + durationS * 1000;
  // Wait for the messages (bounded): until all arrived, or 30 s past the window.
  const expected = () => [...started.keys()].filter((id) => !sink.arrivals.has(id)).length;
  const until = windowEnd + 30_000;
  while (expected() > 0 && Date.now() < until) await sleep(50);
  const samples: number[] = [];
  let lastArrival = 0;
  for (const [id, at] of started) {
    const arrived = sink.arrivals.get(id);
    if (arrived === undefined) continue;
    samples.push(arrived - at);
    lastArrival = Math.max(lastArrival, arrived);
  }
  const startedPerSec = sent / Math.max(0.001, (tLastStart - t0) / 1000);
  const backlogS = (lastArrival - windowEnd) / 1000;
  const sustained =
    non202 === 0 && samples.length === total && startedPerSec >= rate * 0.95 && backlogS <= BACKLOG_LIMIT_S;
  return {
    offeredPerSec: rate,
    durationS,
    sent,
    startedPerSec: round(startedPerSec, 1),
    non202,
    arrived: samples.length,
    backlogS: round(backlogS, 2),
    sustained,
    ttiMs: roundSummary(summarize(samples)),
    acceptMs: roundSummary(summarize(acceptMs)),
  };
}

const roundSummary = (s: Summary): Summary => ({
  count: s.count,
  p50: round(s.p50, 0),
  p95: round(s.p95, 0),
  p99: round(s.p99, 0),
  max: round(s.max, 0),
  mean: round(s.mean, 0),
});

export async function benchTimeToInbox(
  edge: BenchEdge,
  opts: { quick: boolean; html: string; dnsServer: string; workDir: string },
): Promise<TtiResult> {
  const sink = await startTimingSink();
  try {
    const origin = await startOrigin({
      edgeUrl: edge.workerUrl,
      originToken: edge.originToken,
      dnsServer: opts.dnsServer,
      smtpPort: sink.port,
      workDir: opts.workDir,
      name: "origin-tti",
    });
    try {
      let index = 1_000_000;
      // Warm-up (not reported): MX cache, connections, JIT.
      await runRate(edge, sink, opts.html, 20, 1, (index += 10_000));
      say(`time to inbox: 50/s for ${opts.quick ? 5 : 20}s`);
      const fixed = await runRate(edge, sink, opts.html, 50, opts.quick ? 5 : 20, (index += 10_000));
      const rates = opts.quick ? [100, 200] : [75, 100, 150, 200, 300, 400];
      const steps: RateRun[] = [];
      let best: RateRun | null = fixed.sustained ? fixed : null;
      for (const rate of rates) {
        say(`time to inbox: trying ${rate}/s`);
        const run = await runRate(edge, sink, opts.html, rate, opts.quick ? 4 : 10, (index += 10_000));
        steps.push(run);
        say(
          `time to inbox: ${rate}/s → ${run.sustained ? "sustained" : "not sustained"} (p50 ${run.ttiMs.p50} ms, p99 ${run.ttiMs.p99} ms, backlog ${run.backlogS}s, started ${run.startedPerSec}/s)`,
        );
        if (!run.sustained) break;
        best = run;
      }
      return {
        fixed,
        steps,
        sustained: best ? { ...best, messagesPerHour: Math.round(best.offeredPerSec * 3600) } : null,
      };
    } finally {
      await origin.stop();
    }
  } finally {
    await sink.close();
  }
}
