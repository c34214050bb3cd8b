/** The Markdown summary printed to stdout (and pasted into the README's Performance section). */
import type { HubCpuResult } from "../hub-cpu.ts";
import type { ChaosBench } from "../chaos.ts";
import type { DevStackResult } from "../dev-stack.ts";
import type { DkimResult } from "../dkim.ts";
import type { EdgeAcceptResult } from "../edge-accept.ts";
import type { Throughput } from "../delivery.ts";
import type { TemplateSendResult } from "../template-send.ts";
import type { TtiResult } from "../time-to-inbox.ts";
import type { WebhooksBenchResult } from "../webhooks.ts";
import type { TrackingBenchResult } from "../tracking.ts";
import type { SuppressionsBenchResult } from "../suppressions.ts";
import type { ProfileSummary } from "./cpuprofile.ts";

export interface BenchResults {
  startedAt: string;
  finishedAt?: string;
  durationS?: number;
  mode: "full" | "quick";
  resultsFile?: string;
  machine: {
    nproc: number;
    cpuModel: string;
    memGiB: number;
    node: string;
    os: string;
    gitCommit: string;
    gitDirty: boolean;
    loadAvgBefore: number[];
    loadAvgAfter?: number[];
    /** X_LOCAL_OBSERVABILITY as wrangler dev ran (absent in runs before 2026-12-04, when it was on). */
    wranglerLocalObservability?: string;
  };
  tools: Record<string, string>;
  dkim?: DkimResult;
  edgeAccept?: EdgeAcceptResult;
  delivery?: {
    messageBytes: number;
    sessions: number;
    ceiling?: Throughput;
    postfix?: Throughput;
    originHarness?: Throughput;
    originViaEdge?: Throughput;
    ratios?: Record<string, number>;
    originProfile?: (Throughput & { profile?: ProfileSummary; profileFile?: string }) | { error: string };
    edgeDeliveryProfile?: ProfileSummary | { error: string };
    /** The origin's profile during the same smaller run (set beside the harness run's originProfile). */
    originViaEdgeProfile?: ProfileSummary | { error: string };
    originViaEdgeBurst?: Throughput | { failed: string };
  };
  /** `--only=origin`: the origin alone (link harness → smtp-sink), repeated, for CPU comparisons. */
  originCpu?: {
    runs: Throughput[];
    profile?: (Throughput & { profileFile?: string }) | undefined;
    /** `--ceiling`: smtp-source → smtp-sink before and after the runs. */
    ceiling?: Throughput[];
  };
  timeToInbox?: TtiResult;
  templateSend?: TemplateSendResult;
  webhooks?: WebhooksBenchResult;
  tracking?: TrackingBenchResult;
  suppressions?: SuppressionsBenchResult;
  chaos?: ChaosBench;
  devStack?: DevStackResult;
  /** `--only=hubcpu`: the edge's CPU per accepted and per delivered message (test/bench/hub-cpu.ts). */
  hubCpu?: HubCpuResult;
  errors: { step: string; error: string }[];
  /** Stress steps beyond the measurements the benchmark promises; their failure does not fail the run. */
  stressFailures: { step: string; error: string }[];
}

const fmt = (n: unknown, digits = 0): string => {
  if (typeof n !== "number" || !Number.isFinite(n)) return "–";
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
};

const table = (head: string[], rows: (string | number)[][]) =>
  [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");

export function renderMarkdown(r: BenchResults): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`### Benchmark ${r.startedAt.slice(0, 10)} (${r.mode} run)`);
  out.push(
    `${m.nproc} × ${m.cpuModel}, ${fmt(m.memGiB, 1)} GiB, Node ${m.node}, commit ${m.gitCommit.slice(0, 10)}${m.gitDirty ? " (+ uncommitted changes)" : ""}. ` +
      `Everything on one machine over loopback: load generators, edge (wrangler dev for the accept path, with X_LOCAL_OBSERVABILITY=${m.wranglerLocalObservability ?? "its default (on)"}; the Worker bundle on Miniflare for delivery), origin and sinks share the cores, so ratios matter more than absolutes. ` +
      `Load average before/after: ${m.loadAvgBefore.map((x) => fmt(x, 2)).join(" ")} / ${(m.loadAvgAfter ?? []).map((x) => fmt(x, 2)).join(" ")}.`,
  );

  const e = r.edgeAccept;
  if (e) {
    out.push(
      `\n**1. Edge accept path** (wrangler dev --local; wrk -t${e.wrk.threads} -c${e.wrk.connections} -d${e.wrk.durationS}s)\n`,
    );
    out.push(
      table(
        ["route", "requests/s", "p50 ms", "p99 ms", "non-2xx"],
        [
          [
            "POST /v3/mail/send (1 personalization, ~4 KB HTML, tracking on)",
            fmt(e.post.requestsPerSec),
            fmt(e.post.latencyMs.p50, 1),
            fmt(e.post.latencyMs.p99, 1),
            e.post.non2xx,
          ],
          [
            "GET /healthz (same Worker)",
            fmt(e.healthz.requestsPerSec),
            fmt(e.healthz.latencyMs.p50, 1),
            fmt(e.healthz.latencyMs.p99, 1),
            e.healthz.non2xx,
          ],
          [
            "ratio mail-send ÷ healthz",
            fmt(e.ratio.rps, 2),
            fmt(e.ratio.p50, 1) + "×",
            fmt(e.ratio.p99, 1) + "×",
            "",
          ],
        ],
      ),
    );
    const cpu = e.cpuPerRequest;
    if (cpu) {
      // Steadier than requests/s on a busy machine: what each route costs the runtime itself.
      out.push(
        `\nCPU per request, workerd alone (with wrangler's proxy): POST ${fmt(cpu.post.workerdMs, 2)} ms ` +
          `(${fmt(cpu.post.totalMs, 2)}), /healthz ${fmt(cpu.healthz.workerdMs, 2)} ms (${fmt(cpu.healthz.totalMs, 2)}); ` +
          `healthz ÷ POST **${fmt(cpu.ratio > 0 ? 1 / cpu.ratio : 0, 2)}**.`,
      );
    }
    out.push(
      `\n1,000-personalization request (${fmt(e.bulk.bodyBytes / 1024)} KiB body): 202 after ${e.bulk.msTo202.map((x) => fmt(x)).join(" / ")} ms.`,
    );
    const rt = e.roundTrips;
    if (rt && "error" in rt) out.push(`\nRound trips per send: not measured (${rt.error}).`);
    else if (rt) {
      out.push(
        `\nRound trips per accepted send (binding calls counted in the Worker, Miniflare; background renewals and write-behinds included):\n`,
      );
      const trow = (name: string, t: typeof rt.cold) => [
        name,
        fmt(t.perSend, 2),
        fmt(t.d1, 2),
        fmt(t.rateLimiter, 2),
        fmt(t.originHub, 2),
        fmt(t.sends),
      ];
      out.push(
        table(
          ["isolate", "round trips / send", "D1", "RateLimiter", "OriginHub", "sends"],
          [trow("cold (first send)", rt.cold), trow("warm", rt.warm)],
        ),
      );
      const m = rt.latencyModel;
      out.push(
        `\nLatency model (${m.sends} sequential sends): ${m.delayMs} ms on every D1 and Durable Object call → p50 ${fmt(m.p50, 1)} ms, p99 ${fmt(m.p99, 1)} ms; on the OriginHub's calls only → p50 ${fmt(m.hubDelayOnly.p50, 1)} ms, p99 ${fmt(m.hubDelayOnly.p99, 1)} ms; no delay → p50 ${fmt(m.baseline.p50, 1)} ms, p99 ${fmt(m.baseline.p99, 1)} ms.`,
      );
    }
  }

  const d = r.delivery;
  // CPU and RSS of the origin include its compose worker threads (one process, /proc counts them all).
  const composeNote = (t: Throughput | undefined) =>
    t && typeof t.composeThreads === "number"
      ? `; ${t.composeThreads} compose thread${t.composeThreads === 1 ? "" : "s"}, DKIM ${t.dkimFastPath === false ? "mailauth" : "fast path"}`
      : "";
  if (d) {
    out.push(
      `\n**2. Delivery throughput** (${fmt(d.messageBytes)}-byte messages into Postfix smtp-sink on loopback; DKIM rsa-sha256 on the origin)\n`,
    );
    const row = (name: string, t: Throughput | undefined, extra = "") =>
      t
        ? [
            name,
            fmt(t.messages),
            fmt(t.seconds, 1),
            fmt(t.messagesPerSec),
            fmt(t.cpuSecondsPer1000, 2),
            fmt(t.peakRssMiB),
            extra,
          ]
        : [name, "–", "–", "–", "–", "–", "not run"];
    out.push(
      table(
        ["sender", "messages", "seconds", "messages/s", "CPU s / 1,000", "peak RSS MiB", "notes"],
        [
          row("ceiling: smtp-source → smtp-sink", d.ceiling, `${d.sessions} sessions, no MTA`),
          row(
            "Postfix 3.7 relay (private instance)",
            d.postfix,
            "smtp-source → postfix → sink; CPU of Postfix daemons",
          ),
          row(
            "ScaiSend origin, link harness",
            d.originHarness,
            `the origin alone${composeNote(d.originHarness)}`,
          ),
          row(
            "ScaiSend origin, through the edge (paced)",
            d.originViaEdge,
            d.originViaEdge
              ? `${(d.originViaEdge.msTo202 as number[]).length} × POST of 1,000, next POST when the previous 1,000 arrived; edge CPU ${fmt(d.originViaEdge.edgeCpuSecondsPer1000 as number, 2)} s / 1,000 more`
              : "",
          ),
          ...(d.originViaEdgeBurst
            ? [
                "messagesPerSec" in d.originViaEdgeBurst
                  ? row(
                      "ScaiSend origin, through the edge (burst)",
                      d.originViaEdgeBurst as Throughput,
                      `10 POSTs back to back; edge CPU ${fmt((d.originViaEdgeBurst as Throughput).edgeCpuSecondsPer1000 as number, 2)} s / 1,000 more`,
                    )
                  : [
                      "ScaiSend origin, through the edge (burst)",
                      "10,000",
                      "–",
                      "–",
                      "–",
                      "–",
                      `**failed**: ${String((d.originViaEdgeBurst as { failed: string }).failed).split("\n")[0]}`,
                    ],
              ]
            : []),
        ],
      ),
    );
    if (d.ratios) {
      out.push(
        "\n" +
          Object.entries(d.ratios)
            .map(([k, v]) => `${k}: **${fmt(v, 2)}**`)
            .join(" · "),
      );
    }
  }

  const t = r.timeToInbox;
  if (t) {
    out.push(`\n**3. Time to inbox** (POST start → arrival at the sink, whole local stack)\n`);
    const row = (name: string, x: TtiResult["fixed"]) => [
      name,
      `${fmt(x.offeredPerSec)}/s × ${x.durationS}s`,
      `${x.arrived}/${x.sent}`,
      fmt(x.ttiMs.p50),
      fmt(x.ttiMs.p95),
      fmt(x.ttiMs.p99),
      fmt(x.ttiMs.max),
      fmt(x.acceptMs.p50),
      x.sustained ? "yes" : `no (backlog ${fmt(x.backlogS, 1)} s)`,
    ];
    out.push(
      table(
        ["run", "offered", "arrived", "p50 ms", "p95 ms", "p99 ms", "max ms", "202 p50 ms", "sustained"],
        [row("fixed rate", t.fixed), ...t.steps.map((s) => row("search", s))],
      ),
    );
    out.push(
      t.sustained
        ? `\nHighest sustained rate: **${fmt(t.sustained.offeredPerSec)} messages/s ≈ ${fmt(t.sustained.messagesPerHour)} messages/hour** (p50 ${fmt(t.sustained.ttiMs.p50)} ms, p99 ${fmt(t.sustained.ttiMs.p99)} ms).`
        : "\nNo tried rate was sustained.",
    );
  }

  if (r.dkim) {
    out.push(`\n**4. DKIM signing** (origin's signDkim on a ${fmt(r.dkim.messageBytes)}-byte message)\n`);
    out.push(
      table(
        ["operation", "µs / message", "per second"],
        r.dkim.rows.map((x) => [x.what, fmt(x.usPerMessage), fmt(x.perSecond)]),
      ),
    );
  }

  const c = r.chaos;
  if (c) {
    const first = c.runs[0];
    out.push(
      `\n**5. Chaos** (kill -9 of the origin mid-run, restarted with the same NODE_ID; ${fmt(c.messages)} messages through the edge to a sink that answers DATA ${first ? fmt(first.dataDelayMs) : "–"} ms late; lease ${first ? fmt(first.leaseMs / 1000) : "–"} s)\n`,
    );
    out.push(
      table(
        [
          "scenario",
          "accepted",
          "delivered",
          "lost",
          "duplicates (250 before the kill; of them journaled, must be 0)",
          "jobs in flight at the kill",
          "drain after restart s",
          "whole run s",
          "checks",
        ],
        c.runs.map((x) => [
          x.scenario + (x.redis ? ` (Redis away ${fmt(x.redisDownMs)} ms)` : ""),
          fmt(x.accepted),
          fmt(x.delivered),
          fmt(x.lost.length + x.notTerminal.length),
          `${fmt(x.duplicates)} (${fmt(x.duplicatesAnsweredBeforeKill)}; ${fmt(x.duplicatesJournaled)})`,
          fmt(x.inFlightAtKill),
          fmt(x.drainS, 1),
          fmt(x.runS, 1),
          x.problems.length ? `**failed**: ${x.problems.join("; ")}` : "pass",
        ]),
      ),
    );
  }

  const ds = r.devStack;
  if (ds) {
    const sorted = [...ds.msTo202].sort((a, b) => a - b);
    out.push(
      `\n**6. \`npm start\`'s stack under load** (${ds.runtime}; ${fmt(ds.requests)} × ${fmt(ds.perRequest)} personalizations back to back)\n`,
    );
    out.push(
      table(
        [
          "delivered",
          "msg/s",
          "link reconnects",
          "time to 202 ms (min / median / max)",
          "edge healthy after",
          "workerd peak RSS MiB",
        ],
        [
          [
            `${fmt(ds.delivered)} of ${fmt(ds.messages)}`,
            fmt(ds.messagesPerSec),
            fmt(ds.linkReconnects),
            `${fmt(sorted[0])} / ${fmt(sorted[Math.floor(sorted.length / 2)])} / ${fmt(sorted[sorted.length - 1])}`,
            ds.edgeHealthyAtEnd ? "yes" : "**no**",
            fmt(ds.workerdPeakRssMiB),
          ],
        ],
      ),
    );
  }

  const ts = r.templateSend;
  if (ts) {
    out.push(
      `\n**7. Template send** (one request of 1,000 personalizations with a stored dynamic template, ${fmt(ts.templateHtmlBytes)}-byte HTML with each/if; each message rendered at the origin; one request at a time)\n`,
    );
    out.push(
      table(
        ["run", "body KiB", "→ 202 ms", "→ all delivered ms", "msg/s"],
        ts.runs.map((x, i) => [
          i + 1,
          fmt(x.bodyBytes / 1024),
          fmt(x.msTo202),
          fmt(x.msToAllDelivered),
          fmt(x.messagesPerSec),
        ]),
      ),
    );
  }

  const tr = r.tracking;
  if (tr) {
    out.push(
      `\n**Tracking: the click route vs /healthz** (wrk ${tr.wrk.threads} threads, ${tr.wrk.connections} connections, ${tr.wrk.durationS} s each, same Worker; the click verifies its token, answers 302 and records its event after the answer)\n`,
    );
    out.push(
      `| route | req/s | p50 ms | p99 ms | workerd CPU ms/req |\n|---|---|---|---|---|\n` +
        `| GET /t/c/{token} | ${fmt(Math.round(tr.click.requestsPerSec))} | ${tr.click.latencyMs.p50} | ${tr.click.latencyMs.p99} | ${tr.cpuPerRequestMs.click} |\n` +
        `| GET /healthz | ${fmt(Math.round(tr.healthz.requestsPerSec))} | ${tr.healthz.latencyMs.p50} | ${tr.healthz.latencyMs.p99} | ${tr.cpuPerRequestMs.healthz} |\n` +
        `| ratio | **${tr.ratio.rps}** (target ≥ ${tr.target}: ${tr.met ? "met" : "not met"}) | ${tr.ratio.p50} | ${tr.ratio.p99} | |`,
    );
  }

  const sp = r.suppressions;
  if (sp) {
    out.push(
      `\n**Suppressions: the check before dispatch** (one batched D1 lookup of ${fmt(sp.recipientsPerCheck)} recipients, ~${sp.hitsPerCheck} of them suppressed, for a tenant with ${fmt(sp.suppressions)} suppressions and ${fmt(sp.groupSuppressions)} group unsubscribes; Miniflare's D1, ${sp.checks} lookups; seeded in ${sp.seedSeconds} s)\n`,
    );
    out.push(
      `| ms per lookup (median) | p95 | min | D1 rows read per lookup | plan |\n|---|---|---|---|---|\n` +
        `| ${sp.msPerCheck.median} | ${sp.msPerCheck.p95} | ${sp.msPerCheck.min} | ${fmt(sp.rowsReadPerCheck)} | ${sp.queryPlan.filter((l) => l.startsWith("SEARCH")).join("; ")} |`,
    );
  }

  const wh = r.webhooks;
  if (wh) {
    out.push(
      `\n**8. Webhook events vs delivery** (${fmt(wh.messages)} messages in ${wh.requests} request(s); one ScaiSend endpoint subscribed to \`delivered\` on a loopback receiver; delivery = DATA ended at the sink)\n`,
    );
    out.push(
      table(
        [
          "delivered msg/s",
          "events posted /s",
          "keeps up",
          "delivery → POST p50 ms",
          "p95",
          "p99",
          "max",
          "duplicates",
        ],
        [
          [
            fmt(wh.deliveryPerSec),
            fmt(wh.eventsPerSec),
            wh.keepsUp ? "yes" : "no",
            fmt(wh.deliveryToPostMs.p50),
            fmt(wh.deliveryToPostMs.p95),
            fmt(wh.deliveryToPostMs.p99),
            fmt(wh.deliveryToPostMs.max),
            fmt(wh.duplicates),
          ],
        ],
      ),
    );
  }

  const prof = (title: string, p: ProfileSummary | { error: string } | undefined) => {
    if (!p) return;
    if ("error" in p) {
      out.push(`\n**${title}**: not available (${p.error.split("\n")[0]})`);
      return;
    }
    out.push(
      `\n**${title}** (self time, ${fmt(p.totalMs)} ms sampled, ${fmt(p.idlePct, 1)} % idle${p.gapMs ? ` of which ${fmt(p.gapMs)} ms between samples` : ""}; % of busy time)\n`,
    );
    out.push(
      table(
        ["by package / folder", "self %"],
        p.byGroup.slice(0, 10).map((g) => [g.name, fmt(g.selfPct, 1)]),
      ),
    );
    out.push("");
    out.push(
      table(
        ["function", "where", "self %"],
        p.topFunctions
          .slice(0, 12)
          .map((f) => [`\`${f.name}\``, f.where ? `\`${f.where}\`` : "", fmt(f.selfPct, 1)]),
      ),
    );
  };
  const op = r.delivery?.originProfile;
  prof(
    "CPU profile: origin (link harness run)",
    op && "profile" in op && op.profile
      ? (op.profile as ProfileSummary)
      : op
        ? {
            error: String(
              (op as { error?: unknown; notes?: unknown }).error ??
                (op as { notes?: unknown }).notes ??
                "no profile",
            ),
          }
        : undefined,
  );
  prof("CPU profile: edge Worker during POST /v3/mail/send (wrk)", r.edgeAccept?.profile);
  prof(
    "CPU profile: edge Worker while the origin delivers (hub dispatch + result recording)",
    r.delivery?.edgeDeliveryProfile,
  );
  prof("CPU profile: origin through the edge (the same run)", r.delivery?.originViaEdgeProfile);

  if (r.errors.length) {
    out.push("\n**Steps that failed**\n");
    for (const x of r.errors) out.push(`- ${x.step}: ${x.error.split("\n")[0]}`);
  }
  if (r.stressFailures.length) {
    out.push("\n**Stress steps that did not survive** (reported, not counted as a failed benchmark)\n");
    for (const x of r.stressFailures) out.push(`- ${x.step}: ${x.error.split("\n")[0]}`);
  }
  out.push(
    `\nReproduce: \`npm run bench\` (this run took ${fmt((r.durationS ?? 0) / 60, 1)} min; \`npm run bench -- --quick\` for a smoke run). Raw numbers: \`${r.resultsFile ?? "test/bench/results/"}\`.`,
  );
  return out.join("\n");
}
