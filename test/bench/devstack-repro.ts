/**
 * A bounded reproduction of the devstack stall (test/bench/dev-stack.ts): N × 1,000-personalization
 * POSTs back to back through the Worker in workerd via Miniflare with an origin delivering into
 * smtp-sink, while a prober times GET /healthz every 100 ms; the Worker's isolate (Worker and Durable
 * Objects alike) is CPU-profiled over the inspector for the whole run. Loopback only; every process is
 * stopped by pid at the end.
 *
 *   tsx test/bench/devstack-repro.ts [requests=4] [profile.cpuprofile]
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";
import { startDnsServer } from "../helpers/dns-server.ts";
import { startProfiling, summarizeProfile } from "./lib/cpuprofile.ts";
import { startBenchEdge } from "./lib/edge.ts";
import { benchHtml, mailSendBody, MX_HOST, recipient, RECIPIENT_DOMAIN } from "./lib/mail.ts";
import { startOrigin } from "./lib/origin.ts";
import { onCleanup, runCleanups, say } from "./lib/procs.ts";
import { startSmtpSink } from "./lib/sink.ts";
import { ensureTools } from "./lib/tools.ts";

const requests = Number(process.argv[2] ?? 4);
const profileTo = process.argv[3];
const perRequest = 1000;

function postOnce(url: string, apiKey: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/v3/mail/send`,
      {
        method: "POST",
        agent: false,
        headers: {
          authorization: `Bearer ${apiKey}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        },
        timeout: 180_000,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer within 180 s")));
    req.on("error", reject);
    req.end(body);
  });
}

/** CPU seconds per thread of this process's workerd children, busiest first. */
function threads(): string {
  const out: string[] = [];
  for (const pid of fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
    try {
      const st = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      if (!st.includes("(workerd)")) continue;
      if (Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]) !== process.pid) continue;
      for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
        const t = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
        const f = t.slice(t.lastIndexOf(")") + 2).split(" ");
        const cpu = (Number(f[11]) + Number(f[12])) / 100;
        if (cpu > 0.5) out.push(`${tid}:${cpu}s`);
      }
    } catch {
      // exited meanwhile
    }
  }
  return out.join(",");
}

async function main(): Promise<void> {
  const workDir = path.join(REPO_ROOT, ".tmp", "bench", `repro-${Date.now()}`);
  fs.mkdirSync(workDir, { recursive: true });
  const tools = ensureTools();
  const dns = await startDnsServer({
    records: {
      [MX_HOST]: { A: ["127.0.0.1"] },
      [RECIPIENT_DOMAIN]: { MX: [{ preference: 10, exchange: MX_HOST }] },
    },
  });
  onCleanup("dns server", () => dns.close());
  onCleanup("edge state", () => fs.rmSync(workDir, { recursive: true, force: true }));
  const html = benchHtml(4096);
  const edge = await startBenchEdge(workDir, "repro", dns.dohUrl, "miniflare");
  const sink = await startSmtpSink(tools.smtpSink);
  onCleanup("sink", () => sink.stop());
  const origin = await startOrigin({
    edgeUrl: edge.workerUrl,
    originToken: edge.originToken,
    dnsServer: dns.server,
    smtpPort: sink.port,
    workDir,
    name: "origin-repro",
  });
  onCleanup("origin", () => origin.stop());
  const bodies = Array.from({ length: requests }, (_, r) =>
    JSON.stringify(
      mailSendBody(
        html,
        Array.from({ length: perRequest }, (_, i) => recipient(r * perRequest + i)),
      ),
    ),
  );
  // /healthz latency: the longest a request waited to be answered, and when.
  let probing = true;
  const healthz: { at: number; ms: number }[] = [];
  const t0 = Date.now();
  const prober = (async () => {
    while (probing) {
      const s = performance.now();
      await fetch(`${edge.url}/healthz`, { signal: AbortSignal.timeout(180_000) }).catch(() => undefined);
      healthz.push({ at: Date.now() - t0, ms: Math.round(performance.now() - s) });
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  // curl's phases separate "not accepted" (connect) from "accepted, not answered" (first byte).
  const curls: string[] = [];
  const curlProbe = (async () => {
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 8_000));
      const healthzCurl = new Promise<string>((resolve) =>
        execFile(
          "curl",
          [
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "120",
            "-w",
            "connect=%{time_connect} first_byte=%{time_starttransfer}",
            `${edge.url}/healthz`,
          ],
          (_e, stdout) => resolve(stdout),
        ),
      );
      // Answered by Miniflare's entry worker (another isolate, same workerd thread) without the Worker.
      const entryCurl = new Promise<string>((resolve) =>
        execFile(
          "curl",
          [
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "120",
            "-w",
            "status=%{http_code} first_byte=%{time_starttransfer}",
            `${edge.url}/cdn-cgi/platform-proxy`,
          ],
          (_e, stdout) => resolve(stdout),
        ),
      );
      const [out, entryOnly] = await Promise.all([healthzCurl, entryCurl]);
      curls.push(
        `t=${Math.round((Date.now() - t0) / 1000)}s healthz ${out}; entry-only ${entryOnly}; ${threads()}`,
      );
    }
  })();
  const profiler = profileTo
    ? await startProfiling(edge.inspectorPort, () => fetch(`${edge.url}/healthz`))
    : null;
  const msTo202: number[] = [];
  for (const body of bodies) {
    const s = performance.now();
    const status = await postOnce(edge.url, edge.apiKey, body);
    if (status !== 202) throw new Error(`POST answered ${status}`);
    msTo202.push(Math.round(performance.now() - s));
    say(`POST ${msTo202.length}: 202 in ${msTo202.at(-1)} ms (sink at ${sink.count()})`);
  }
  const n = requests * perRequest;
  const tEnd = await sink.waitForCount(n, 300_000);
  probing = false;
  await prober;
  await curlProbe;
  const seconds = (tEnd - t0) / 1000;
  const prof = profiler ? await profiler.stop() : null;
  if (prof && profileTo) fs.writeFileSync(profileTo, JSON.stringify(prof));
  const worst = [...healthz].sort((a, b) => b.ms - a.ms).slice(0, 5);
  console.log(
    JSON.stringify(
      {
        requests,
        msTo202,
        delivered: sink.count(),
        seconds,
        msgPerSec: Math.round(n / seconds),
        healthzWorst: worst,
        healthzProbes: healthz.length,
        curls,
        ...(prof ? { profile: summarizeProfile(prof, 25) } : {}),
      },
      null,
      2,
    ),
  );
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => runCleanups());
