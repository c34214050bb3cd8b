/**
 * Measurement 1: the edge's accept path under wrangler dev. wrk against POST /v3/mail/send (one
 * personalization, live key, tracking settings on, ~4 KB HTML) and against GET /healthz (the cheapest
 * route of the same Worker) in the same run; then a 1,000-personalization request, time to 202. No
 * origin is connected: accepted messages wait in the hub's outbox, which is the accept path's work.
 * Finally a CPU profile of the Worker while wrk drives the POST route (CDP over the inspector port).
 */
import fs from "node:fs";
import path from "node:path";
import { startProfiling, summarizeProfile, type CpuProfile, type ProfileSummary } from "./lib/cpuprofile.ts";
import { postMail, startBenchEdge } from "./lib/edge.ts";
import { totalRoundTrips, type RoundTrips } from "./lib/counting-bindings.ts";
import { startInstrumentedEdge } from "./lib/instrumented-edge.ts";
import { mailSendBody, recipient } from "./lib/mail.ts";
import { cpuSeconds, groupPids, say, sleep } from "./lib/procs.ts";
import { percentile, round } from "./lib/stats.ts";
import { runWrk, type WrkResult } from "./lib/wrk.ts";

export interface EdgeAcceptResult {
  wrk: { threads: number; connections: number; durationS: number };
  post: Omit<WrkResult, "raw">;
  healthz: Omit<WrkResult, "raw">;
  ratio: { rps: number; p50: number; p99: number };
  /**
   * CPU per request, measured from /proc while each wrk run lasted (plus the work it left behind,
   * e.g. the catalog flush of the accepted messages): what the routes cost, less sensitive than
   * requests/s to other load on the machine. `workerdMs` is the runtime alone (the Worker and its
   * Durable Objects and local D1); `totalMs` adds wrangler's dev proxy.
   */
  cpuPerRequest?: {
    post: { workerdMs: number; totalMs: number };
    healthz: { workerdMs: number; totalMs: number };
    /** post ÷ healthz, workerd alone. */
    ratio: number;
  };
  bulk: { personalizations: number; bodyBytes: number; msTo202: number[] };
  profile: ProfileSummary | { error: string };
  profileFile: string | null;
  roundTrips?: AcceptRoundTrips | { error: string };
}

/** One figure of round trips: D1 calls and Durable Object calls per accepted send. */
export interface TripsPerSend {
  sends: number;
  perSend: number;
  d1: number;
  rateLimiter: number;
  originHub: number;
  /**
   * Calls started while a send was being answered, per send: an upper bound on what it waited for
   * (a lease renewal it started in the background counts too).
   */
  duringRequest: number;
  /** D1 calls that went through a session, by constraint (replica-eligible reads). */
  d1Sessions: Record<string, number>;
}

export interface AcceptRoundTrips {
  /** The first send of a fresh isolate (nothing cached, no lease). */
  cold: TripsPerSend;
  /** Sequential sends on a warm isolate; background renewals and write-behinds included. */
  warm: TripsPerSend;
  /** Every D1 and Durable Object call delayed by `delayMs` (a far region); sequential sends. */
  latencyModel: {
    delayMs: number;
    sends: number;
    p50: number;
    p99: number;
    max: number;
    /** The same sends without the injected delay. */
    baseline: { p50: number; p99: number };
    /** The delay on the OriginHub's calls only (D1 and RateLimiter undelayed). */
    hubDelayOnly: { p50: number; p99: number };
  };
}

export interface Ctx {
  quick: boolean;
  workDir: string;
  wrkBin: string;
  dohUrl: string;
  html: string;
}

const strip = ({ raw: _raw, ...rest }: WrkResult) => rest;

export async function benchEdgeAccept(ctx: Ctx): Promise<EdgeAcceptResult> {
  const edge = await startBenchEdge(ctx.workDir, "accept", ctx.dohUrl);
  try {
    const one = JSON.stringify(mailSendBody(ctx.html, [recipient(0)]));
    for (let i = 0; i < 20; i++) {
      const r = await postMail(edge, one);
      if (r.status !== 202) throw new Error(`warm-up POST /v3/mail/send answered ${r.status}: ${r.text}`);
    }
    const durationS = ctx.quick ? 3 : 10;
    const base = { threads: 2, connections: 16, durationS, workDir: ctx.workDir };
    say(`edge accept: wrk GET /healthz for ${durationS}s`);
    const healthzCpu = cpuMeter(edge.pid);
    const healthz = await runWrk(ctx.wrkBin, { ...base, url: `${edge.url}/healthz` });
    const healthzMs = await healthzCpu.perRequest(healthz.requests);
    say(`edge accept: wrk POST /v3/mail/send for ${durationS}s`);
    const postCpu = cpuMeter(edge.pid);
    const post = await runWrk(ctx.wrkBin, {
      ...base,
      url: `${edge.url}/v3/mail/send`,
      method: "POST",
      headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
      body: one,
    });
    const postMs = await postCpu.perRequest(post.requests);
    const cpuPerRequest = {
      post: postMs,
      healthz: healthzMs,
      ratio: round(postMs.workerdMs / healthzMs.workerdMs, 2),
    };
    say(
      `edge accept: CPU per request (workerd / with wrangler's proxy): POST ${postMs.workerdMs} / ${postMs.totalMs} ms, /healthz ${healthzMs.workerdMs} / ${healthzMs.totalMs} ms`,
    );
    if (post.non2xx > 0) say(`edge accept: ${post.non2xx} POSTs were not 2xx`);

    const personalizations = 1000;
    const bulkBody = JSON.stringify(
      mailSendBody(
        ctx.html,
        Array.from({ length: personalizations }, (_, i) => recipient(i)),
      ),
    );
    const msTo202: number[] = [];
    for (let i = 0; i < (ctx.quick ? 1 : 3); i++) {
      const r = await postMail(edge, bulkBody);
      if (r.status !== 202 || r.messageIds.length !== personalizations) {
        throw new Error(`1,000-personalization POST answered ${r.status}: ${r.text.slice(0, 300)}`);
      }
      msTo202.push(round(r.ms, 0));
    }
    say(`edge accept: 1,000 personalizations → 202 in ${msTo202.join(", ")} ms`);

    let profile: EdgeAcceptResult["profile"];
    let profileFile: string | null = null;
    try {
      const prof = await profileWorker(edge.inspectorPort, edge.url, () =>
        runWrk(ctx.wrkBin, {
          ...base,
          durationS: ctx.quick ? 3 : 5,
          url: `${edge.url}/v3/mail/send`,
          method: "POST",
          headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
          body: one,
        }),
      );
      profileFile = path.join(ctx.workDir, "worker-mail-send.cpuprofile");
      fs.writeFileSync(profileFile, JSON.stringify(prof));
      profile = summarizeProfile(prof, 20);
    } catch (err) {
      say(`edge profile skipped: ${(err as Error).message}`);
      profile = { error: (err as Error).message };
    }

    let roundTrips: EdgeAcceptResult["roundTrips"];
    try {
      roundTrips = await benchAcceptRoundTrips(ctx);
    } catch (err) {
      say(`edge round trips skipped: ${(err as Error).message}`);
      roundTrips = { error: (err as Error).message };
    }

    return {
      roundTrips,
      cpuPerRequest,
      wrk: { threads: base.threads, connections: base.connections, durationS },
      post: strip(post),
      healthz: strip(healthz),
      ratio: {
        rps: round(post.requestsPerSec / healthz.requestsPerSec, 3),
        p50: round(post.latencyMs.p50 / healthz.latencyMs.p50, 2),
        p99: round(post.latencyMs.p99 / healthz.latencyMs.p99, 2),
      },
      bulk: { personalizations, bodyBytes: bulkBody.length, msTo202 },
      profile,
      profileFile,
    };
  } finally {
    await edge.stop();
  }
}

function perSend(t: RoundTrips, sends: number): TripsPerSend {
  const per = (n: number) => round(n / sends, 2);
  return {
    sends,
    perSend: per(totalRoundTrips(t)),
    d1: per(t.d1),
    rateLimiter: per(t.durableObjects["RATE_LIMITER"] ?? 0),
    originHub: per(t.durableObjects["ORIGIN_HUB"] ?? 0),
    duringRequest: per(t.duringRequest ?? 0),
    d1Sessions: t.d1Sessions,
  };
}

/**
 * Round trips per accepted send, cold and warm, by counting the Worker's binding calls
 * (test/edge/bench-worker/instrumented-worker.ts), then the latency model: the same sends with every D1 and
 * Durable Object call delayed by `delayMs`.
 */
export async function benchAcceptRoundTrips(
  ctx: Pick<Ctx, "workDir" | "dohUrl" | "html" | "quick">,
  delayMs = 50,
): Promise<AcceptRoundTrips> {
  const edge = await startInstrumentedEdge(ctx.workDir, ctx.dohUrl);
  try {
    const one = JSON.stringify(mailSendBody(ctx.html, [recipient(0)]));
    const send = async () => {
      const t0 = performance.now();
      const res = await fetch(`${edge.url}/v3/mail/send`, {
        method: "POST",
        headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
        body: one,
      });
      const text = await res.text();
      if (res.status !== 202)
        throw new Error(`POST /v3/mail/send answered ${res.status}: ${text.slice(0, 300)}`);
      return performance.now() - t0;
    };
    // Cold: the first send of this isolate (the bootstrap made the key and domain, never read them).
    await edge.reset();
    await send();
    const cold = perSend(await edge.trips(), 1);
    // Warm: sequential sends within one AUTH_CACHE_TTL_MS.
    const warmSends = ctx.quick ? 50 : 200;
    await edge.reset();
    for (let i = 0; i < warmSends; i++) await send();
    // Background work (lease renewals, last_used_at) may still be running; let it land in the count.
    await new Promise((r) => setTimeout(r, 200));
    const warm = perSend(await edge.trips(), warmSends);
    say(
      `edge accept: round trips per send: cold ${cold.perSend} (${cold.duringRequest} started during the request), warm ${warm.perSend} (${warm.duringRequest} started during the request)`,
    );

    const sends = ctx.quick ? 40 : 150;
    const timed = async (): Promise<number[]> => {
      for (let i = 0; i < 5; i++) await send();
      const ms: number[] = [];
      for (let i = 0; i < sends; i++) ms.push(await send());
      return ms.sort((a, b) => a - b);
    };
    const base = await timed();
    await edge.setDelay(delayMs, ["ORIGIN_HUB"]);
    const hubOnly = await timed();
    await edge.setDelay(delayMs);
    const ms = await timed();
    await edge.setDelay(0);
    const latencyModel = {
      delayMs,
      sends,
      p50: round(percentile(ms, 50), 1),
      p99: round(percentile(ms, 99), 1),
      max: round(ms[ms.length - 1]!, 1),
      baseline: { p50: round(percentile(base, 50), 1), p99: round(percentile(base, 99), 1) },
      hubDelayOnly: { p50: round(percentile(hubOnly, 50), 1), p99: round(percentile(hubOnly, 99), 1) },
    };
    say(
      `edge accept: with ${delayMs} ms per storage call: p50 ${latencyModel.p50} ms, p99 ${latencyModel.p99} ms`,
    );
    return { cold, warm, latencyModel };
  } finally {
    await edge.stop();
  }
}

/**
 * CPU seconds of an edge's process group from now on: `perRequest` waits until the runtime is idle
 * again (at most 5 s: a catalog flush the load left behind is part of what the requests cost), then
 * divides by the request count.
 */
function cpuMeter(pgid: number) {
  const read = () => {
    let workerd = 0;
    let total = 0;
    for (const pid of groupPids(pgid)) {
      try {
        const s = cpuSeconds(pid);
        total += s;
        if (comm(pid) === "workerd") workerd += s;
      } catch {
        // exited meanwhile
      }
    }
    return { workerd, total };
  };
  const start = read();
  return {
    async perRequest(requests: number): Promise<{ workerdMs: number; totalMs: number }> {
      let last = read();
      for (let waited = 0; waited < 5000; waited += 250) {
        await sleep(250);
        const now = read();
        const idle = now.total - last.total < 0.02;
        last = now;
        if (idle) break;
      }
      const per = (s: number) => round((s * 1000) / Math.max(1, requests), 3);
      return { workerdMs: per(last.workerd - start.workerd), totalMs: per(last.total - start.total) };
    },
  };
}

function comm(pid: number): string {
  return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
}

/** CPU-profiles the Worker through wrangler's inspector proxy while `load` runs. */
async function profileWorker(
  inspectorPort: number,
  url: string,
  load: () => Promise<unknown>,
): Promise<CpuProfile> {
  const session = await startProfiling(inspectorPort, () => fetch(`${url}/healthz`));
  await load();
  return session.stop();
}
