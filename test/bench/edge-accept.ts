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
import { mailSendBody, recipient } from "./lib/mail.ts";
import { say } from "./lib/procs.ts";
import { round } from "./lib/stats.ts";
import { runWrk, type WrkResult } from "./lib/wrk.ts";

export interface EdgeAcceptResult {
  wrk: { threads: number; connections: number; durationS: number };
  post: Omit<WrkResult, "raw">;
  healthz: Omit<WrkResult, "raw">;
  ratio: { rps: number; p50: number; p99: number };
  bulk: { personalizations: number; bodyBytes: number; msTo202: number[] };
  profile: ProfileSummary | { error: string };
  profileFile: string | null;
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
    const healthz = await runWrk(ctx.wrkBin, { ...base, url: `${edge.url}/healthz` });
    say(`edge accept: wrk POST /v3/mail/send for ${durationS}s`);
    const post = await runWrk(ctx.wrkBin, {
      ...base,
      url: `${edge.url}/v3/mail/send`,
      method: "POST",
      headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
      body: one,
    });
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

    return {
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
