/**
 * The set-up the sender-domain Miniflare tests (test/origin/domain-records, dkim-rotation and
 * dual-signing .miniflare.test.ts) shared by copy: a DNS server on loopback (DoH for the edge's
 * verification, UDP/TCP for the receiver's DKIM look-ups), the real Worker in workerd (Miniflare,
 * scripts/lib/miniflare-edge.ts) with DEV_MODE off so a domain counts only once DNS shows its
 * records, the admin API as JSON, and an origin of real EdgeLink + JobRunner whose `deliver` keeps
 * what composeMessage built instead of sending it (only the SMTP hop is left out).
 *
 * `useDomainEdge()` registers the calling file's beforeAll / afterAll; everything stops there.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import type { DeliveryJob, RecipientOutcome } from "../../shared/link/protocol.ts";
import { composeMessage } from "../../origin/src/compose/compose.ts";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { createMetrics } from "../../origin/src/ops/metrics.ts";
import { JobRunner } from "../../origin/src/worker/job-runner.ts";
import { startDnsServer, type DnsZone, type TestDnsServer } from "./dns-server.ts";
import { freshSecrets, testWorkDir, type EdgeSecrets } from "./miniflare-fixture.ts";

/** A record of a domain's `dns_records` (docs/api/admin.md#sender-domains). */
export interface DnsRecordView {
  type?: string;
  purpose: string;
  host: string;
  value: string;
  priority?: number;
  status: string;
  remove_after?: string;
}

export interface DomainEdge {
  readonly edge: MiniflareEdge;
  readonly dns: TestDnsServer;
  /** The file's work folder under .tmp/ (removed in afterAll). */
  readonly workDir: string;
  readonly secrets: EdgeSecrets;
  /** Calls the edge with a bearer token; the status and the parsed body (null if empty). */
  request(
    token: string,
    method: string,
    pathname: string,
    body?: unknown,
  ): Promise<{ status: number; body: any }>;
  /** The same, throwing on a status ≥ 300 (with the answer in the message); the parsed body. */
  call(token: string, method: string, pathname: string, body?: unknown): Promise<any>;
  /** A new tenant and its live key with mail.send, domains.read and domains.write. */
  tenantKey(name: string): Promise<string>;
  /** An origin linked to the edge (shard 0) that keeps each composed message by message id. */
  startOrigin(composed: Map<string, Buffer>): { link: EdgeLink; stop(): void };
}

/** The records with these statuses, as a DNS zone: TXT values and MX records at their hosts. */
export function zoneOf(records: DnsRecordView[], statuses: string[]): DnsZone {
  const zone: DnsZone = {};
  for (const r of records) {
    if (!statuses.includes(r.status)) continue;
    const at = (zone[r.host] ??= {});
    if (r.type === "MX") (at.MX ??= []).push({ preference: r.priority!, exchange: r.value });
    else (at.TXT ??= []).push(r.value);
  }
  return zone;
}

export function useDomainEdge(prefix: string, vars: Record<string, string> = {}): DomainEdge {
  let edge: MiniflareEdge | undefined;
  let dns: TestDnsServer | undefined;
  let workDir: string | undefined;
  const secrets = freshSecrets();

  beforeAll(async () => {
    workDir = testWorkDir(prefix);
    dns = await startDnsServer({});
    edge = await startMiniflareEdge({
      persistDir: path.join(workDir, "edge"),
      vars: { ...secrets, DEV_MODE: "false", DNS_RESOLVER_URL: dns.dohUrl, ...vars },
    });
  }, 180_000);

  afterAll(async () => {
    await edge?.stop();
    await dns?.close();
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  });

  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error("the domain edge is not started (used outside a test?)");
    return v;
  };
  const fx: DomainEdge = {
    get edge() {
      return started(edge);
    },
    get dns() {
      return started(dns);
    },
    get workDir() {
      return started(workDir);
    },
    secrets,
    async request(token, method, pathname, body) {
      const res = await fetch(new URL(pathname, fx.edge.url), {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text === "" ? null : JSON.parse(text) };
    },
    async call(token, method, pathname, body) {
      const res = await fx.request(token, method, pathname, body);
      if (res.status >= 300)
        throw new Error(`${method} ${pathname}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    },
    async tenantKey(name) {
      const tenant = (await fx.call(secrets.ADMIN_TOKEN, "POST", "/api/admin/tenants", { name })).data;
      return (
        await fx.call(secrets.ADMIN_TOKEN, "POST", `/api/admin/tenants/${tenant.id}/api_keys`, {
          name,
          environment: "live",
          scopes: ["mail.send", "domains.read", "domains.write"],
        })
      ).data.api_key as string;
    },
    startOrigin(composed) {
      const runner = new JobRunner({
        capacity: 4,
        metrics: createMetrics(),
        log: () => {},
        deliver: async (job: DeliveryJob): Promise<RecipientOutcome[]> => {
          composed.set(job.messageId, await composeMessage(job));
          return job.recipients.map((recipient) => ({
            recipient,
            status: "delivered",
            smtpCode: 250,
            response: "250 OK",
          }));
        },
      });
      const link: EdgeLink = new EdgeLink({
        edgeUrl: fx.edge.url,
        token: secrets.ORIGIN_TOKEN,
        shard: 0,
        nodeId: `node-${randomUUID().slice(0, 8)}`,
        bootId: randomUUID(),
        version: "test",
        freeCapacity: () => runner.roomFor(link),
        onJobs: (jobs, l) => runner.accept(jobs, l),
        onResultAck: () => runner.refill(),
        log: () => {},
        pingIntervalMs: 1_000,
        resendIntervalMs: 500,
      });
      runner.register(link);
      link.start();
      return { link, stop: () => link.close() };
    },
  };
  return fx;
}
