/**
 * A whole ScaiSend stack on loopback for end-to-end tests: a DNS server (UDP for the origin's MX
 * look-ups, DoH JSON for the edge's domain verification), an SMTP server standing in for recipients'
 * MX hosts, the edge under `wrangler dev --local`, and an origin node. Everything is real; nothing
 * leaves 127.0.0.1. `stop()` ends every process it started, by pid.
 *
 * `stopEdge` / `restartEdge` end the edge (SIGTERM, or SIGKILL to its whole process group) and start
 * it again on the same port over the same persisted D1 / Durable Object state, as a crashed or
 * redeployed edge comes back; `messageIdCounts` counts what the sink accepted per Message-ID.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { startOriginNode, type OriginNode } from "../../origin/src/node.ts";
import { createLogger } from "../../origin/src/ops/log.ts";
import { AdminClient, type ApiKeyView, type DomainView } from "../../scripts/lib/admin-client.ts";
import { startEdge, type EdgeProcess, type StartEdgeOptions } from "../../scripts/lib/wrangler-dev.ts";
import { startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSmtpServer, type SmtpBehaviour, type TestSmtpServer } from "../helpers/smtp-servers.ts";
import { forget, reapOnExit } from "../helpers/process-reaper.ts";

export interface Stack {
  edge: EdgeProcess;
  /** Where API clients go: wrangler's dev server, or the relay with `viaRelay`. */
  readonly apiUrl: string;
  dns: TestDnsServer;
  smtp: TestSmtpServer;
  admin: AdminClient;
  secrets: Record<string, string>;
  tenantId: string;
  liveKey: ApiKeyView;
  testKey: ApiKeyView;
  domain: DomainView;
  origin: OriginNode | null;
  zone: DnsZone;
  startOrigin(): Promise<OriginNode>;
  stopOrigin(): Promise<void>;
  /** Ends the edge: SIGTERM lets wrangler shut down; SIGKILL kills its process group at once. */
  stopEdge(signal: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts the edge again (stopping it first if it runs) on the same port and persisted state. */
  restartEdge(): Promise<EdgeProcess>;
  /** How often the sink accepted each Message-ID (with its angle brackets, as GET /v3/messages/{id} shows it). */
  messageIdCounts(): Map<string, number>;
  publish(records: DnsZone): void;
  api(
    method: string,
    pathname: string,
    key: string,
    body?: unknown,
  ): Promise<{ status: number; body: any; headers: Headers }>;
  waitForStatus(messageId: string, statuses: string[], timeoutMs?: number): Promise<any>;
  /** Polls GET /v3/messages/{id} until `done(body)` holds (a status alone can hold from the 202 on). */
  waitForMessage(messageId: string, done: (body: any) => boolean, timeoutMs?: number): Promise<any>;
  stop(): Promise<void>;
}

export const SENDER_DOMAIN = "sender.test";
export const MX_HOST = "mx.recipients.test";

export interface StackOptions {
  smtp?: SmtpBehaviour;
  edgeVars?: Record<string, string>;
  startOrigin?: boolean;
  /**
   * Reach the Worker through a plain TCP relay on a port of its own that forwards to the Worker's own
   * socket of whichever edge runs now: the origin's link and `apiUrl` (so `api()`) use it, so the same
   * origin process and clients carry on across `restartEdge`, as they would with one stable hostname
   * in production. The Worker's socket gets a new port each start, and each reload when a file under
   * edge/ changes; wrangler's proxy keeps its port but drops the link (scripts/lib/wrangler-dev.ts).
   */
  viaRelay?: boolean;
  /** Extra origin settings (e.g. CHANNEL_TWILIO_API_URL pointing at a loopback fake provider). */
  originEnv?: Record<string, string>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-e2e-"));
  const secrets = {
    ORIGIN_TOKEN: randomBytes(24).toString("hex"),
    ADMIN_TOKEN: randomBytes(24).toString("hex"),
    SECRETS_KEY: randomBytes(32).toString("base64"),
    TRACKING_SECRET: randomBytes(24).toString("hex"),
    VERP_SECRET: randomBytes(24).toString("hex"),
  };
  // Recipient domains all point at one MX host on 127.0.0.1; the SMTP server decides per address.
  const zone: DnsZone = {
    [MX_HOST]: { A: ["127.0.0.1"] },
    "inbox.test": { MX: [{ preference: 10, exchange: MX_HOST }] },
    "greylist.test": { MX: [{ preference: 10, exchange: MX_HOST }] },
    "unknown-user.test": { MX: [{ preference: 10, exchange: MX_HOST }] },
  };
  const dns = await startDnsServer({ records: zone });
  const smtp = await startSmtpServer(options.smtp ?? {});
  const edgeOptions: StartEdgeOptions = {
    persistDir: path.join(workDir, "edge"),
    testScheduled: true,
    vars: {
      ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
      ADMIN_TOKEN: secrets.ADMIN_TOKEN,
      SECRETS_KEY: secrets.SECRETS_KEY,
      TRACKING_SECRET: secrets.TRACKING_SECRET,
      DNS_RESOLVER_URL: dns.dohUrl,
      RETRY_SCHEDULE: "1s,1s,1s",
      LINK_LEASE_MS: "15000",
      ...options.edgeVars,
    },
  };
  // A detached process group: killed by pid if this process goes before stop() (test/helpers/process-reaper.ts).
  const edge = await startEdge(edgeOptions);
  reapOnExit(edge.pid);
  let edgeStarts = 1;
  const relay = options.viaRelay ? await startRelay(() => currentWorkerUrl(stack.edge)) : null;

  const admin = new AdminClient(edge.url, secrets.ADMIN_TOKEN);
  const tenant = await admin.createTenant("E2E");
  const scopes = ["mail.send", "domains.read", "domains.write"];
  const liveKey = await admin.createApiKey(tenant.id, { name: "live", environment: "live", scopes });
  const testKey = await admin.createApiKey(tenant.id, { name: "test", environment: "test", scopes });
  const domain = await admin.createDomain(tenant.id, SENDER_DOMAIN, "quarantine");

  const originLog = createLogger(process.env.E2E_LOG === "1" ? "debug" : "error");
  const stack: Stack = {
    edge,
    dns,
    smtp,
    admin,
    secrets,
    tenantId: tenant.id,
    liveKey,
    testKey,
    domain,
    origin: null,
    zone,
    get apiUrl() {
      return relay ? relay.url : stack.edge.url;
    },
    async startOrigin() {
      const config = loadOriginConfig({
        EDGE_URL: relay ? relay.url : stack.edge.workerUrl,
        ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
        VERP_SECRET: secrets.VERP_SECRET,
        NODE_ID: `e2e-${randomBytes(3).toString("hex")}`,
        HELO_NAME: "origin.e2e.test",
        SMTP_PORT: String(smtp.port),
        DNS_SERVERS: dns.server,
        // The test zone's MX hosts are on 127.0.0.1.
        ALLOW_PRIVATE_MX: "true",
        HTTP_PORT: "0",
        CONNECT_TIMEOUT_MS: "3000",
        DRAIN_TIMEOUT_MS: "5000",
        CAPACITY: "20",
        ...options.originEnv,
      });
      stack.origin = await startOriginNode(config, originLog);
      return stack.origin;
    },
    async stopOrigin() {
      await stack.origin?.drain();
      stack.origin = null;
    },
    async stopEdge(signal) {
      const pid = stack.edge.pid;
      if (signal === "SIGTERM") {
        await stack.edge.stop();
        forget(pid);
        return;
      }
      // A killed host's connections die with it: the relay's too.
      relay?.dropAll();
      forget(pid);
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        return; // already gone
      }
      // Gone once no process of its group is left (wrangler and its workerd child).
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        try {
          process.kill(-pid, 0);
        } catch {
          return;
        }
        await new Promise((res) => setTimeout(res, 50));
      }
      throw new Error(`edge process group ${pid} still alive 10 s after SIGKILL`);
    },
    async restartEdge() {
      await stack.edge.stop();
      forget(stack.edge.pid);
      edgeStarts++;
      stack.edge = await startEdge({
        ...edgeOptions,
        port: stack.edge.port,
        logFile: path.join(workDir, `wrangler-${edgeStarts}.log`),
      });
      reapOnExit(stack.edge.pid);
      return stack.edge;
    },
    messageIdCounts() {
      const counts = new Map<string, number>();
      for (const m of smtp.messages) {
        const head = m.raw.toString("utf8").split("\r\n\r\n", 1)[0]!;
        const id = /^Message-ID:\s*(<[^>\r\n]+>)/im.exec(head)?.[1];
        if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      return counts;
    },
    publish(records) {
      Object.assign(zone, records);
      dns.setRecords(zone);
    },
    async api(method, pathname, key, body) {
      const res = await fetch(new URL(pathname, stack.apiUrl), {
        method,
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
    },
    waitForStatus(messageId, statuses, timeoutMs = 20_000) {
      return stack
        .waitForMessage(messageId, (body) => statuses.includes(body.status), timeoutMs)
        .catch((error: Error) => {
          throw new Error(error.message.replace("did not get there", `did not reach ${statuses.join("/")}`));
        });
    },
    async waitForMessage(messageId, done, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      let last: any;
      while (Date.now() < until) {
        const r = await stack.api("GET", `/v3/messages/${messageId}`, liveKey.api_key);
        last = r.body;
        if (r.status === 200 && done(r.body)) return r.body;
        await new Promise((res) => setTimeout(res, 150));
      }
      throw new Error(`message ${messageId} did not get there; last: ${JSON.stringify(last)}`);
    },
    async stop() {
      await stack.stopOrigin().catch(() => undefined);
      await relay?.close();
      await stack.edge.stop();
      forget(stack.edge.pid);
      await smtp.close();
      await dns.close();
      // E2E_KEEP=1 keeps the edge's state and wrangler logs for a post-mortem.
      if (process.env.E2E_KEEP === "1") console.log(`e2e state kept in ${workDir}`);
      else fs.rmSync(workDir, { recursive: true, force: true });
    },
  };
  if (options.startOrigin !== false) await stack.startOrigin();
  return stack;
}

/**
 * The Worker's own socket as wrangler last logged it (it logs a new one on every reload). Reads only
 * what the log gained since the last look (with some overlap, for a line caught half-written).
 */
const workerUrlSeen = new Map<string, { size: number; url: URL }>();
function currentWorkerUrl(edge: EdgeProcess): URL {
  const size = fs.statSync(edge.logFile).size;
  const seen = workerUrlSeen.get(edge.logFile);
  if (seen && seen.size === size) return seen.url;
  const from = Math.max(0, (seen?.size ?? 0) - 4096);
  const buf = Buffer.alloc(size - from);
  const fd = fs.openSync(edge.logFile, "r");
  try {
    fs.readSync(fd, buf, 0, buf.length, from);
  } finally {
    fs.closeSync(fd);
  }
  const found = [
    ...buf
      .toString("utf8")
      .matchAll(/"userWorkerUrl":\{"protocol":"http:","hostname":"([\d.]+)","port":"(\d+)"/g),
  ].at(-1);
  const url = found ? new URL(`http://${found[1]}:${found[2]}`) : (seen?.url ?? new URL(edge.workerUrl));
  workerUrlSeen.set(edge.logFile, { size, url });
  return url;
}

/**
 * A TCP relay on 127.0.0.1: each connection is piped to `target()` as it is at connect time, and is
 * closed when either side closes. A connection refused upstream (the edge is down) closes the client's.
 */
async function startRelay(
  target: () => URL,
): Promise<{ url: string; dropAll(): void; close(): Promise<void> }> {
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const to = target();
    const upstream = net.connect(Number(to.port), to.hostname);
    for (const s of [client, upstream]) {
      open.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        open.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  const dropAll = () => {
    for (const s of open) s.destroy();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    dropAll,
    close: () =>
      new Promise<void>((resolve) => {
        dropAll();
        server.close(() => resolve());
      }),
  };
}

/** The records the edge asked the tenant to publish, as a zone for the test DNS server. */
export function zoneFromDomain(domain: DomainView): DnsZone {
  const zone: DnsZone = {};
  for (const r of domain.dns_records) {
    const entry = (zone[r.host] ??= {});
    (entry.TXT ??= []).push(r.value);
  }
  return zone;
}
