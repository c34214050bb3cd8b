/**
 * The edge for the benchmarks: `wrangler dev --local` on loopback with fresh local state, bootstrapped
 * through the admin API (tenant, live key, sender domain; DEV_MODE=true makes the domain count as
 * verified), started by scripts/lib/wrangler-dev.ts `startEdge` with an `--inspector-port` so the Worker
 * can be CPU-profiled over the Chrome DevTools Protocol.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { AdminClient } from "../../../scripts/lib/admin-client.ts";
import { freePort, startEdge } from "../../../scripts/lib/wrangler-dev.ts";
import { SENDER_DOMAIN } from "./mail.ts";
import { startMiniflareEdge } from "../../../scripts/lib/miniflare-edge.ts";
import { cpuSeconds, groupCpuSeconds, onCleanup, say } from "./procs.ts";

export interface BenchEdge {
  url: string;
  /** The Worker behind wrangler's dev proxy; the origin's link goes here (see scripts/lib/wrangler-dev.ts). */
  workerUrl: string;
  pid: number;
  inspectorPort: number;
  originToken: string;
  apiKey: string;
  tenantId: string;
  /** The admin API of this edge (e.g. for a key with other scopes than the bench key's mail.send). */
  admin: AdminClient;
  logFile: string;
  /** CPU seconds of wrangler + workerd (the whole process group). */
  runtime: EdgeRuntime;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/**
 * `wrangler` is what the accept-path numbers are about; `miniflare` runs the same bundle in the same
 * runtime without wrangler dev's proxy and inspector layers, as `npm start` does, so the runs through
 * the edge use it (scripts/lib/miniflare-edge.ts).
 */
export type EdgeRuntime = "wrangler" | "miniflare";

export async function startBenchEdge(
  workDir: string,
  name: string,
  dohUrl: string,
  runtime: EdgeRuntime = "wrangler",
  /** More vars for this edge (e.g. WEBHOOK_ALLOW_PRIVATE for a loopback webhook receiver). */
  extraVars: Record<string, string> = {},
): Promise<BenchEdge> {
  const inspectorPort = await freePort();
  const secrets = {
    ORIGIN_TOKEN: randomBytes(24).toString("hex"),
    ADMIN_TOKEN: randomBytes(24).toString("hex"),
    SECRETS_KEY: randomBytes(32).toString("base64"),
    TRACKING_SECRET: randomBytes(24).toString("hex"),
  };
  const vars = { ...secrets, DEV_MODE: "true", DNS_RESOLVER_URL: dohUrl, ...extraVars };
  const persistDir = path.join(workDir, `state-${name}`);
  let edge: {
    url: string;
    workerUrl: string;
    pid: number;
    logFile: string;
    cpuSeconds: () => number;
    stop: () => Promise<void>;
  };
  if (runtime === "wrangler") {
    say(`   wrangler dev (${name})`);
    const w = await startEdge({
      persistDir,
      logFile: path.join(workDir, `edge-${name}.log`),
      inspectorPort,
      vars,
    });
    edge = { ...w, cpuSeconds: () => groupCpuSeconds(w.pid) };
  } else {
    say(`   miniflare (${name})`);
    const m = await startMiniflareEdge({ persistDir, vars, inspectorPort });
    const pids = m.workerdPids();
    edge = {
      url: m.url,
      workerUrl: m.workerUrl,
      pid: pids[0] ?? process.pid,
      logFile: "",
      cpuSeconds: () => pids.reduce((sum, pid) => sum + safeCpuSeconds(pid), 0),
      stop: m.stop,
    };
  }
  const stop = onCleanup(`${runtime} edge (${name})`, () => edge.stop());
  const admin = new AdminClient(edge.url, secrets.ADMIN_TOKEN);
  const tenant = await admin.createTenant(`Bench ${name}`);
  const key = await admin.createApiKey(tenant.id, {
    name: "bench",
    environment: "live",
    scopes: ["mail.send"],
  });
  const domain = await admin.createDomain(tenant.id, SENDER_DOMAIN);
  if (!domain.verified)
    throw new Error(`sender domain ${SENDER_DOMAIN} is not verified although DEV_MODE=true`);
  return {
    url: edge.url,
    workerUrl: edge.workerUrl,
    pid: edge.pid,
    inspectorPort,
    originToken: secrets.ORIGIN_TOKEN,
    apiKey: key.api_key,
    tenantId: tenant.id,
    admin,
    logFile: edge.logFile,
    runtime,
    cpuSeconds: edge.cpuSeconds,
    stop,
  };
}

function safeCpuSeconds(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return 0;
  }
}

/** POST /v3/mail/send; returns the status, the message ids and the time to the response. */
export async function postMail(
  edge: BenchEdge,
  body: string,
): Promise<{ status: number; ms: number; messageIds: string[]; text: string }> {
  const t0 = performance.now();
  const res = await fetch(`${edge.url}/v3/mail/send`, {
    method: "POST",
    headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
    body,
  });
  const text = await res.text();
  const ms = performance.now() - t0;
  let messageIds: string[] = [];
  if (res.status === 202) {
    const parsed = JSON.parse(text) as { message_id?: string; message_ids?: string[] };
    messageIds = parsed.message_ids ?? (parsed.message_id ? [parsed.message_id] : []);
  }
  return { status: res.status, ms, messageIds, text };
}
