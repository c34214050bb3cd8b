/**
 * A whole ScaiSend stack on loopback for end-to-end tests: a DNS server (UDP for the origin's MX
 * look-ups, DoH JSON for the edge's domain verification), an SMTP server standing in for recipients'
 * MX hosts, the edge under `wrangler dev --local`, and an origin node. Everything is real; nothing
 * leaves 127.0.0.1. `stop()` ends every process it started, by pid.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { startOriginNode, type OriginNode } from "../../origin/src/node.ts";
import { createLogger } from "../../origin/src/ops/log.ts";
import { AdminClient, type ApiKeyView, type DomainView } from "../../scripts/lib/admin-client.ts";
import { startEdge, type EdgeProcess } from "../../scripts/lib/wrangler-dev.ts";
import { startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSmtpServer, type SmtpBehaviour, type TestSmtpServer } from "../helpers/smtp-servers.ts";

export interface Stack {
  edge: EdgeProcess;
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
  publish(records: DnsZone): void;
  api(
    method: string,
    pathname: string,
    key: string,
    body?: unknown,
  ): Promise<{ status: number; body: any; headers: Headers }>;
  waitForStatus(messageId: string, statuses: string[], timeoutMs?: number): Promise<any>;
  stop(): Promise<void>;
}

export const SENDER_DOMAIN = "sender.test";
export const MX_HOST = "mx.recipients.test";

export interface StackOptions {
  smtp?: SmtpBehaviour;
  edgeVars?: Record<string, string>;
  startOrigin?: boolean;
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
  const edge = await startEdge({
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
  });

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
    async startOrigin() {
      const config = loadOriginConfig({
        EDGE_URL: edge.workerUrl,
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
      });
      stack.origin = await startOriginNode(config, originLog);
      return stack.origin;
    },
    async stopOrigin() {
      await stack.origin?.drain();
      stack.origin = null;
    },
    publish(records) {
      Object.assign(zone, records);
      dns.setRecords(zone);
    },
    async api(method, pathname, key, body) {
      const res = await fetch(new URL(pathname, edge.url), {
        method,
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
    },
    async waitForStatus(messageId, statuses, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      let last: any;
      while (Date.now() < until) {
        const r = await stack.api("GET", `/v3/messages/${messageId}`, liveKey.api_key);
        last = r.body;
        if (r.status === 200 && statuses.includes(r.body.status)) return r.body;
        await new Promise((res) => setTimeout(res, 150));
      }
      throw new Error(
        `message ${messageId} did not reach ${statuses.join("/")}; last: ${JSON.stringify(last)}`,
      );
    },
    async stop() {
      await stack.stopOrigin().catch(() => undefined);
      await edge.stop();
      await smtp.close();
      await dns.close();
      fs.rmSync(workDir, { recursive: true, force: true });
    },
  };
  if (options.startOrigin !== false) await stack.startOrigin();
  return stack;
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
