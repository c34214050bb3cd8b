/**
 * `--only=devstack`: the stack `npm start` runs (the edge from scripts/lib/miniflare-dev.ts, an origin
 * linked to it) takes 10 × 1,000-personalization sends back to back and delivers them into smtp-sink,
 * with the origin's link counted: every "link closed; reconnecting" in the origin's log is one drop.
 * Targets: all 10,000 at the sink, 0 reconnects, the edge still answering /healthz at the end.
 *
 * Each POST goes over a new connection, and `msTo202` is reported as measured. Before the hub paused
 * between busy slices (OriginHub#takeBreath), a POST that arrived while the hub was delivering waited
 * until the hub's backlog was out (up to 89 s on a loaded 2-core machine): workerd polls for new
 * connections only when its one thread runs out of work (docs/operations.md, "Running the stack
 * locally"). test/bench/devstack-repro.ts is the bounded reproduction.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { AdminClient } from "../../scripts/lib/admin-client.ts";
import { startDevEdge } from "../../scripts/lib/miniflare-dev.ts";
import { mailSendBody, recipient, SENDER_DOMAIN } from "./lib/mail.ts";
import { startOrigin } from "./lib/origin.ts";
import { onCleanup, say } from "./lib/procs.ts";
import { startSmtpSink } from "./lib/sink.ts";
import { round } from "./lib/stats.ts";

export interface DevStackCtx {
  quick: boolean;
  workDir: string;
  smtpSinkBin: string;
  /** Loopback DNS (UDP) for the origin's MX look-ups, DoH for the edge's domain checks. */
  dnsServer: string;
  dohUrl: string;
  html: string;
}

export interface DevStackResult {
  runtime: "miniflare (npm start)";
  requests: number;
  perRequest: number;
  messages: number;
  delivered: number;
  seconds: number;
  messagesPerSec: number;
  /** The origin's link drops during the run (target 0). */
  linkReconnects: number;
  msTo202: number[];
  edgeHealthyAtEnd: boolean;
  /** Peak RSS of the workerd processes the edge started. */
  workerdPeakRssMiB: number;
}

const POST_TIMEOUT_MS = 120_000;

/** POST over a connection of its own (agent: false), so no request waits behind another's connection. */
function postOnce(url: string, apiKey: string, body: string): Promise<{ status: number; text: string }> {
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
        timeout: POST_TIMEOUT_MS,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${POST_TIMEOUT_MS / 1000} s`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** workerd processes started by this process (Miniflare's), with their peak RSS. */
function workerdPeakRssMiB(): number {
  let peak = 0;
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = fs.readFileSync(`/proc/${entry}/status`, "utf8");
      if (!/^Name:\s+workerd$/m.test(status)) continue;
      if (Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) !== process.pid) continue;
      peak = Math.max(peak, Number(/^VmHWM:\s+(\d+)/m.exec(status)?.[1] ?? 0) / 1024);
    } catch {
      // exited meanwhile
    }
  }
  return round(peak, 0);
}

export async function benchDevStack(ctx: DevStackCtx): Promise<DevStackResult> {
  const requests = ctx.quick ? 2 : 10;
  const perRequest = 1000;
  const n = requests * perRequest;
  const secrets = {
    ORIGIN_TOKEN: randomBytes(24).toString("hex"),
    ADMIN_TOKEN: randomBytes(24).toString("hex"),
    SECRETS_KEY: randomBytes(32).toString("base64"),
    TRACKING_SECRET: randomBytes(24).toString("hex"),
  };
  say("   npm start's edge (Miniflare, no file watching)");
  const edge = await startDevEdge({
    persistDir: path.join(ctx.workDir, "state-devstack"),
    vars: { ...secrets, DEV_MODE: "true", DNS_RESOLVER_URL: ctx.dohUrl },
    watch: false,
    log: (line) => say(`   ${line}`),
  });
  const stopEdge = onCleanup("npm start edge (devstack)", () => edge.stop());
  try {
    const admin = new AdminClient(edge.url, secrets.ADMIN_TOKEN);
    const tenant = await admin.createTenant("Bench devstack");
    const key = await admin.createApiKey(tenant.id, {
      name: "bench",
      environment: "live",
      scopes: ["mail.send"],
    });
    const domain = await admin.createDomain(tenant.id, SENDER_DOMAIN);
    if (!domain.verified)
      throw new Error(`sender domain ${SENDER_DOMAIN} is not verified although DEV_MODE=true`);

    const sink = await startSmtpSink(ctx.smtpSinkBin);
    try {
      const origin = await startOrigin({
        edgeUrl: edge.url,
        originToken: secrets.ORIGIN_TOKEN,
        dnsServer: ctx.dnsServer,
        smtpPort: sink.port,
        workDir: ctx.workDir,
        name: "origin-devstack",
      });
      try {
        const bodies = Array.from({ length: requests }, (_, r) =>
          JSON.stringify(
            mailSendBody(
              ctx.html,
              Array.from({ length: perRequest }, (_, i) => recipient(r * perRequest + i)),
            ),
          ),
        );
        const t0 = Date.now();
        const msTo202: number[] = [];
        for (const [r, body] of bodies.entries()) {
          const s = performance.now();
          const res = await postOnce(edge.url, key.api_key, body).catch((err: Error) => {
            throw new Error(`POST ${r + 1} of ${requests} (sink at ${sink.count()}): ${err.message}`);
          });
          if (res.status !== 202)
            throw new Error(`POST ${r + 1} of ${requests} answered ${res.status}: ${res.text.slice(0, 200)}`);
          msTo202.push(round(performance.now() - s, 0));
          say(`   POST ${r + 1}: 202 in ${msTo202.at(-1)} ms (sink at ${sink.count()})`);
        }
        let delivered = n;
        let tEnd: number;
        try {
          tEnd = await sink.waitForCount(n, ctx.quick ? 120_000 : 360_000);
        } catch (err) {
          delivered = sink.count();
          tEnd = Date.now();
          say(`   ${(err as Error).message}`);
        }
        const seconds = (tEnd - t0) / 1000;
        const log = fs.readFileSync(origin.logFile, "utf8");
        const linkReconnects = (log.match(/"msg":"link closed; reconnecting"/g) ?? []).length;
        const edgeHealthyAtEnd = await fetch(`${edge.url}/healthz`, { signal: AbortSignal.timeout(10_000) })
          .then((r) => r.ok)
          .catch(() => false);
        const result: DevStackResult = {
          runtime: "miniflare (npm start)",
          requests,
          perRequest,
          messages: n,
          delivered,
          seconds: round(seconds, 2),
          messagesPerSec: round(delivered / seconds, 0),
          linkReconnects,
          msTo202,
          edgeHealthyAtEnd,
          workerdPeakRssMiB: workerdPeakRssMiB(),
        };
        say(
          `   devstack: ${delivered} of ${n} delivered in ${result.seconds} s (${result.messagesPerSec}/s), ` +
            `${linkReconnects} link reconnects, edge healthy at the end: ${edgeHealthyAtEnd}`,
        );
        if (delivered < n || linkReconnects > 0 || !edgeHealthyAtEnd) {
          throw new Error(
            `npm start's stack: ${delivered} of ${n} delivered, ${linkReconnects} link reconnects, edge healthy: ${edgeHealthyAtEnd}`,
          );
        }
        return result;
      } finally {
        await origin.stop();
      }
    } finally {
      await sink.stop();
    }
  } finally {
    await stopEdge();
  }
}
