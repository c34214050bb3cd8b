/**
 * `npm run bench` (full) / `npm run bench -- --quick` (smoke run): ScaiSend's benchmarks side by side
 * with the standard tools, on loopback only, bounded in count and time. Every process started here is
 * stopped by pid at the end, on errors and on Ctrl-C. Writes test/bench/results/<date>.json (quick runs:
 * <date>-quick.json; --only runs: <date>-partial-<steps>.json) and prints a Markdown summary to
 * stdout; progress goes to stderr.
 *
 * `--only=dkim,accept,delivery,tti,template,webhooks,suppressions,devstack,chaos` runs a subset (for development); `--only=viaedge`
 * is the part of `delivery` that compares the origin alone with the origin through the edge (the
 * harness run and the paced through-edge run, plus the edge's CPU profile), without Postfix.
 * `--only=origin` is the origin alone (link harness → smtp-sink), `--messages=N` (default 3,000)
 * `--repeat=R` times (default 2), CPU per thread included, then one run under the CPU profiler: the
 * step to compare the origin's CPU per message before and after a change, back to back. `--ab`
 * alternates each run with one whose every message has its own HTML (nothing of one message's MIME
 * reusable for the next, as with per-recipient substitutions or tracking), at the same load.
 * `--ceiling` adds smtp-source → smtp-sink runs of the same count before and after them (the
 * ceiling the origin's rate is a fraction of, at the same load).
 */
import { execSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT, wranglerEnv } from "../../scripts/lib/wrangler-dev.ts";
import { startDnsServer } from "../helpers/dns-server.ts";
import { benchChaos } from "./chaos.ts";
import { benchDevStack } from "./dev-stack.ts";
import { benchDkim } from "./dkim.ts";
import {
  benchCeiling,
  benchOriginHarness,
  benchOriginViaEdge,
  benchPostfix,
  type DeliveryCtx,
} from "./delivery.ts";
import { benchEdgeAccept } from "./edge-accept.ts";
import { benchHubCpu } from "./hub-cpu.ts";
import { startBenchEdge } from "./lib/edge.ts";
import { benchHtml, MX_HOST, RECIPIENT_DOMAIN } from "./lib/mail.ts";
import { onCleanup, runCleanups, say } from "./lib/procs.ts";
import { renderMarkdown, type BenchResults } from "./lib/report.ts";
import { round } from "./lib/stats.ts";
import { ensureTools } from "./lib/tools.ts";
import { benchTemplateSend } from "./template-send.ts";
import { benchTimeToInbox } from "./time-to-inbox.ts";
import { benchWebhooks } from "./webhooks.ts";
import { benchTracking } from "./tracking.ts";
import { benchSuppressions } from "./suppressions.ts";

const quick = process.argv.includes("--quick");
const onlyArg = process.argv.find((a) => a.startsWith("--only="));
const only = onlyArg ? new Set(onlyArg.slice("--only=".length).split(",")) : null;
const want = (step: string) => !only || only.has(step);

// The chaos and devstack steps (test/bench/chaos.ts, dev-stack.ts) get their own allowance on top.
const HARD_LIMIT_MS =
  ((quick ? 4 : 14) + (want("chaos") ? (quick ? 3 : 6) : 0) + (want("devstack") ? (quick ? 3 : 7) : 0)) *
  60_000;

function git(cmd: string): string {
  try {
    return execSync(`git ${cmd}`, {
      cwd: REPO_ROOT,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return "";
  }
}

const localDate = () => {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
};

let current: BenchResults | null = null;

/** Writes the JSON (also partial results, when the run is interrupted) and returns its path. */
function writeResults(results: BenchResults, t0: number): string {
  results.machine.loadAvgAfter = os.loadavg().map((x) => round(x, 2));
  results.finishedAt = new Date().toISOString();
  results.durationS = round((Date.now() - t0) / 1000, 0);
  const resultsDir = path.join(REPO_ROOT, "test", "bench", "results");
  fs.mkdirSync(resultsDir, { recursive: true });
  // A subset's file is named by its steps, so runs of different steps on one day do not overwrite each other.
  const subset = only ? `-partial-${[...only].sort().join("-")}` : "";
  // --label=X: "-X" after that, for runs of one subset compared on one day (before/after a change).
  const labelArg = process.argv.find((a) => a.startsWith("--label="));
  const label = labelArg ? `-${labelArg.slice("--label=".length).replace(/[^\w.-]/g, "_")}` : "";
  const file = path.join(resultsDir, `${localDate()}${quick ? "-quick" : ""}${subset}${label}.json`);
  results.resultsFile = path.relative(REPO_ROOT, file);
  fs.writeFileSync(file, JSON.stringify(results, null, 2) + "\n");
  return file;
}
const runStarted = Date.now();

async function main(): Promise<number> {
  if (process.platform !== "linux") throw new Error("the benchmarks read /proc and need Linux");
  const t0 = Date.now();
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const workDir = path.join(REPO_ROOT, ".tmp", "bench", stamp);
  fs.mkdirSync(workDir, { recursive: true });
  say(`${quick ? "quick" : "full"} run; logs and profiles in ${path.relative(REPO_ROOT, workDir)}`);

  const tools = ensureTools();
  const results: BenchResults = {
    startedAt: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    machine: {
      nproc: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model.trim() ?? "unknown",
      memGiB: round(os.totalmem() / 2 ** 30, 1),
      node: process.version,
      os: `${os.type()} ${os.release()}`,
      gitCommit: git("rev-parse HEAD"),
      gitDirty: git("status --porcelain") !== "",
      loadAvgBefore: os.loadavg().map((x) => round(x, 2)),
      // wrangler dev's local trace collector costs more than /healthz itself (docs/operations.md).
      wranglerLocalObservability: wranglerEnv().X_LOCAL_OBSERVABILITY ?? "wrangler's default",
    },
    tools: {
      wrk: execSync(`${tools.wrk} -v 2>&1 || true`, { encoding: "utf8" }).split("\n")[0]!.trim(),
      postfix: execSync(`${tools.postconf} -d -h mail_version`, { encoding: "utf8" }).trim(),
      ...(tools.installed.length ? { installedNow: tools.installed.join(", ") } : {}),
    },
    errors: [],
    stressFailures: [],
  };
  current = results;
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    const s = Date.now();
    say(`── ${name}`);
    try {
      const v = await fn();
      say(`   ${name} done in ${round((Date.now() - s) / 1000, 1)} s`);
      return v;
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      say(`   ${name} FAILED: ${msg}`);
      results.errors.push({ step: name, error: msg });
      return undefined;
    }
  };

  // Loopback DNS: the recipient domain's MX is a name with A 127.0.0.1, so the origin takes its real
  // MX path (DNS_SERVERS + SMTP_PORT = the sink's port).
  const dns = await startDnsServer({
    records: {
      [MX_HOST]: { A: ["127.0.0.1"] },
      [RECIPIENT_DOMAIN]: { MX: [{ preference: 10, exchange: MX_HOST }] },
    },
  });
  onCleanup("dns server", () => dns.close());
  onCleanup("edge state", () => {
    for (const f of fs.readdirSync(workDir))
      if (f.startsWith("state-")) fs.rmSync(path.join(workDir, f), { recursive: true, force: true });
  });

  const html = benchHtml(4096);

  if (want("dkim")) results.dkim = await step("DKIM signing cost", () => benchDkim(html, quick));
  const messageBytes = results.dkim?.signedBytes ?? (await benchDkim(html, true)).signedBytes;

  if (want("accept")) {
    results.edgeAccept = await step("edge accept path", () =>
      benchEdgeAccept({ quick, workDir, wrkBin: tools.wrk, dohUrl: dns.dohUrl, html }),
    );
  }

  if (only?.has("hubcpu")) {
    // The edge's CPU per accepted and per delivered message, phase by phase (test/bench/hub-cpu.ts).
    const arg = (flag: string) => {
      const a = process.argv.find((x) => x.startsWith(`--${flag}=`));
      return a ? Number(a.slice(flag.length + 3)) : undefined;
    };
    results.hubCpu = await step("edge CPU per accepted and delivered message", () =>
      benchHubCpu({
        quick,
        workDir,
        dohUrl: dns.dohUrl,
        html,
        smtpSinkBin: tools.smtpSink,
        dnsServer: dns.server,
        requests: arg("requests"),
        concurrency: arg("concurrency"),
        bulk: arg("bulk"),
        profile: process.argv.includes("--profile"),
        instant: process.argv.includes("--instant"),
      }),
    );
  }

  const n = quick ? 1000 : 10_000;
  const dctx: DeliveryCtx = {
    quick,
    workDir,
    smtpSinkBin: tools.smtpSink,
    smtpSourceBin: tools.smtpSource,
    postfixBin: tools.postfix,
    dnsServer: dns.server,
    html,
    messageBytes,
    sessions: 5,
  };
  if (only?.has("origin")) {
    const num = (flag: string, dflt: number) => {
      const arg = process.argv.find((a) => a.startsWith(`--${flag}=`));
      return arg ? Number(arg.slice(flag.length + 3)) : dflt;
    };
    const count = num("messages", quick ? 1000 : 3000);
    // --warmup=N: messages delivered before each measured run (default WARMUP_MESSAGES; 0: none).
    const warmupArg = process.argv.some((a) => a.startsWith("--warmup="));
    const warmup = warmupArg ? { warmup: num("warmup", 0) } : {};
    const runs: NonNullable<BenchResults["originCpu"]>["runs"] = [];
    const ab = process.argv.includes("--ab");
    // --ceiling: smtp-source → smtp-sink before and after the runs, so "of the ceiling" is of this load.
    const withCeiling = process.argv.includes("--ceiling");
    const ceiling: NonNullable<NonNullable<BenchResults["originCpu"]>["ceiling"]> = [];
    const measureCeiling = async () => {
      const c = await step(`ceiling: smtp-source → smtp-sink, ${count} messages`, () =>
        benchCeiling(dctx, count),
      );
      if (c) ceiling.push(c);
    };
    if (withCeiling) await measureCeiling();
    for (let r = 0; r < num("repeat", 2); r++) {
      for (const uniqueContent of ab ? [false, true] : [false]) {
        const t = await step(
          `origin via link harness, ${count} messages${uniqueContent ? ", unique content" : ""} (run ${r + 1})`,
          () => benchOriginHarness(dctx, count, { uniqueContent, ...warmup }),
        );
        if (t) runs.push(t);
      }
    }
    const profile = await step(`origin CPU profile (harness, ${count} messages)`, () =>
      benchOriginHarness(dctx, count, {
        profileTo: path.join(workDir, "origin-harness.cpuprofile"),
        ...warmup,
      }),
    );
    if (withCeiling) await measureCeiling();
    results.originCpu = { runs, profile, ...(withCeiling ? { ceiling } : {}) };
  }
  const viaEdge = want("delivery") || want("viaedge");
  if (viaEdge) {
    const d: NonNullable<BenchResults["delivery"]> = { messageBytes, sessions: dctx.sessions };
    results.delivery = d;
    if (want("delivery")) {
      d.ceiling = await step(`ceiling: smtp-source → smtp-sink, ${n} messages`, () => benchCeiling(dctx, n));
      d.postfix = await step(`Postfix relay, ${n} messages`, () => benchPostfix(dctx, n));
    }
    d.originHarness = await step(`origin via link harness, ${n} messages`, () => benchOriginHarness(dctx, n));
  }
  if (want("delivery")) {
    const d = results.delivery!;
    const profiled = await step(`origin CPU profile (harness, ${quick ? 500 : 2000} messages)`, () =>
      benchOriginHarness(dctx, quick ? 500 : 2000, {
        profileTo: path.join(workDir, "origin-harness.cpuprofile"),
      }),
    );
    d.originProfile = profiled ?? { error: results.errors.at(-1)?.error ?? "failed" };
  }

  if (viaEdge) {
    const edge = await step("start the edge for the end-to-end runs", () =>
      startBenchEdge(workDir, "stack", dns.dohUrl, "miniflare"),
    );
    if (edge) {
      try {
        if (results.delivery) {
          const requests = quick ? 1 : 10;
          results.delivery.originViaEdge = await step(
            `origin through the edge, ${requests} × 1,000 personalizations, paced`,
            () =>
              benchOriginViaEdge(dctx, edge, requests, 1000, {
                paced: true,
                timeoutMs: quick ? 60_000 : 240_000,
              }),
          );
          // The edge's delivery-side work (hub dispatch, result recording) and the origin's through the
          // edge, profiled on a separate, smaller run (the origin warmed up as in the measured run).
          const per = quick ? 300 : 1000;
          const p = await step(`edge and origin CPU profiles during delivery (1 × ${per})`, () =>
            benchOriginViaEdge(dctx, edge, 1, per, {
              timeoutMs: 60_000,
              ...(quick ? { warmup: per } : {}),
              profileEdgeTo: path.join(workDir, "worker-delivery.cpuprofile"),
              profileOriginTo: path.join(workDir, "origin-via-edge.cpuprofile"),
            }),
          );
          results.delivery.edgeDeliveryProfile = p?.edgeProfile ?? {
            error: results.errors.at(-1)?.error ?? "no profile",
          };
          results.delivery.originViaEdgeProfile = p?.originProfile ?? {
            error: results.errors.at(-1)?.error ?? "no profile",
          };
        }
      } finally {
        await edge.stop();
      }
    }
  }
  if (want("tti")) {
    // A fresh edge, so nothing left over from the throughput runs (or their failure) affects latency.
    const edge = await step("start an edge for time to inbox", () =>
      startBenchEdge(workDir, "tti", dns.dohUrl, "miniflare"),
    );
    if (edge) {
      try {
        results.timeToInbox = await step("time to inbox", () =>
          benchTimeToInbox(edge, { quick, html, dnsServer: dns.server, workDir }),
        );
      } finally {
        await edge.stop();
      }
    }
  }
  if (want("template")) {
    // Its own edge: a stored dynamic template, 1,000 personalizations per request, rendered at the origin.
    const edge = await step("start an edge for the template send", () =>
      startBenchEdge(workDir, "template", dns.dohUrl, "miniflare"),
    );
    if (edge) {
      try {
        results.templateSend = await step("1,000-personalization template send", () =>
          benchTemplateSend(edge, {
            quick,
            html,
            smtpSinkBin: tools.smtpSink,
            dnsServer: dns.server,
            workDir,
          }),
        );
      } finally {
        await edge.stop();
      }
    }
  }
  if (want("webhooks")) {
    // Its own edge, allowed to post to the loopback receiver: delivered events vs delivery, same run.
    const edge = await step("start an edge for the webhook run", () =>
      startBenchEdge(workDir, "webhooks", dns.dohUrl, "miniflare", { WEBHOOK_ALLOW_PRIVATE: "127.0.0.1" }),
    );
    if (edge) {
      try {
        results.webhooks = await step("webhook events vs delivery", () =>
          benchWebhooks(edge, { quick, html, dnsServer: dns.server, workDir }),
        );
      } finally {
        await edge.stop();
      }
    }
  }
  if (want("tracking")) {
    // The click route vs /healthz of the same Worker, same run (target ≥ 0.8; test/bench/tracking.ts).
    results.tracking = await step("tracking: click route vs /healthz", () =>
      benchTracking({ quick, workDir, wrkBin: tools.wrk, dohUrl: dns.dohUrl }),
    );
  }
  if (want("suppressions")) {
    // The check before dispatch for a tenant with 1,000,000 suppressions (test/bench/suppressions.ts).
    results.suppressions = await step(
      "suppression check: 1,000 recipients against 1,000,000 suppressions",
      () => benchSuppressions({ quick, workDir }),
    );
  }
  if (want("delivery") && results.delivery && !quick) {
    // All 10 POSTs back to back: a 10,000-message backlog in the hub. Its own edge, bounded to 2 minutes.
    const burstEdge = await step("start an edge for the burst run", () =>
      startBenchEdge(workDir, "burst", dns.dohUrl, "miniflare"),
    );
    if (burstEdge) {
      try {
        const burst = await step("origin through the edge, 10 × 1,000 personalizations, back to back", () =>
          benchOriginViaEdge(dctx, burstEdge, 10, 1000, { timeoutMs: 120_000 }),
        );
        results.delivery.originViaEdgeBurst = burst ?? { failed: results.errors.at(-1)?.error ?? "failed" };
        if (!burst) {
          // A stress row beyond the measurements (a 10,000-message backlog in one hub):
          // reported when it fails, but not a failed benchmark.
          const failure = results.errors.pop();
          if (failure) results.stressFailures.push(failure);
        }
      } finally {
        await burstEdge.stop();
      }
    }
  }

  if (want("devstack")) {
    // npm start's edge runtime (scripts/lib/miniflare-dev.ts): 10,000 messages back to back, link drops counted.
    results.devStack = await step(
      `npm start's stack, ${quick ? 2 : 10} × 1,000 personalizations back to back`,
      () =>
        benchDevStack({
          quick,
          workDir,
          smtpSinkBin: tools.smtpSink,
          dnsServer: dns.server,
          dohUrl: dns.dohUrl,
          html,
        }),
    );
  }

  if (want("chaos")) {
    // Its own edge: kill -9 of the origin (then of Redis) in the middle of a run; nothing may be lost.
    const chaos = await step(
      `chaos: kill -9 of the origin mid-run, ${quick ? 300 : 1000} messages, without and with Redis`,
      () => benchChaos({ quick, workDir, onCleanup, log: (m) => say(`   ${m}`) }),
    );
    if (chaos) {
      results.chaos = chaos;
      for (const x of chaos.runs)
        if (x.problems.length)
          results.errors.push({ step: `chaos: ${x.scenario}`, error: x.problems.join("; ") });
    }
  }

  const d = results.delivery;
  if (d) {
    const ratios: Record<string, number> = {};
    const rate = (t?: { messagesPerSec: number }) => t?.messagesPerSec;
    const put = (k: string, a?: number, b?: number) => {
      if (a && b) ratios[k] = round(a / b, 3);
    };
    put("origin ÷ Postfix", rate(d.originHarness), rate(d.postfix));
    put("origin ÷ ceiling", rate(d.originHarness), rate(d.ceiling));
    put("origin through edge ÷ Postfix", rate(d.originViaEdge), rate(d.postfix));
    put("origin through edge ÷ ceiling", rate(d.originViaEdge), rate(d.ceiling));
    put("origin through edge ÷ origin alone", rate(d.originViaEdge), rate(d.originHarness));
    const burst = d.originViaEdgeBurst;
    if (burst && "messagesPerSec" in burst)
      put("burst through edge ÷ Postfix", rate(burst as { messagesPerSec: number }), rate(d.postfix));
    d.ratios = ratios;
  }

  const file = writeResults(results, t0);
  say(`results written to ${path.relative(REPO_ROOT, file)}`);
  process.stdout.write(renderMarkdown(results) + "\n");
  return results.errors.length > 0 ? 1 : 0; // stressFailures are reported, not fatal
}

let exiting = false;
const bail = (code: number, why: string) => {
  if (exiting) return;
  exiting = true;
  say(why);
  if (current) {
    current.errors.push({ step: "run", error: why });
    say(`partial results written to ${path.relative(REPO_ROOT, writeResults(current, runStarted))}`);
  }
  void runCleanups().finally(() => process.exit(code));
};
process.on("SIGINT", () => bail(130, "interrupted; stopping everything …"));
process.on("SIGTERM", () => bail(143, "terminated; stopping everything …"));
setTimeout(
  () => bail(124, `hard time limit of ${HARD_LIMIT_MS / 60_000} min reached; stopping everything …`),
  HARD_LIMIT_MS,
).unref();

let code = 1;
try {
  code = await main();
} catch (err) {
  say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
} finally {
  if (!exiting) {
    exiting = true;
    await runCleanups();
    process.exit(code);
  }
}
