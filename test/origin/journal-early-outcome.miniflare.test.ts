/**
 * A 250 is journaled the moment the SMTP server's reply is parsed, not when the job ends
 * (origin/src/worker/job-runner.ts header, `appendEarly` in origin/src/journal/outcome-journal.ts).
 * The origin's real EdgeLink, JobRunner, outcome journal and delivery engine run against the real
 * Worker bundle in workerd (Miniflare) and a real SMTP server on loopback. The coordinator is the
 * in-memory one, except that releasing a host slot waits on a promise the test holds: that is the
 * Redis round trip after the 250 in production, and while it is held the job cannot finish.
 *  - One domain: while the release is held, the job's result is already in the journal on disk;
 *    killed then (kill -9 as the edge and the disk see it), the successor reports it before its
 *    hello, and the hub never hands the message out again.
 *  - Two domains, the second server stalling after DATA: the first domain's 250 is journaled as an
 *    early entry (not a result: it lacks the other recipient); the successor answers the hub's
 *    re-dispatch from it and delivers only the other recipient. The SMTP server sees each once.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { createMemoryCoordinator, type Coordinator } from "../../origin/src/coord/index.ts";
import { createDeliveryEngine, type DeliveryEngine } from "../../origin/src/delivery/engine.ts";
import { OutcomeJournal, readJournal } from "../../origin/src/journal/outcome-journal.ts";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { createMetrics } from "../../origin/src/ops/metrics.ts";
import { JobRunner } from "../../origin/src/worker/job-runner.ts";
import { freshSecrets, liveSender, testWorkDir } from "../helpers/miniflare-fixture.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

const LEASE_MS = 10_000;
const SENDER = "sender.early.test";

let edge: MiniflareEdge;
let dns: TestDnsServer;
let sink: TestSmtpServer;
let workDir: string;
let apiKey: string;
const secrets = freshSecrets();
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  workDir = testWorkDir("journal-early");
  dns = await startDnsServer({});
  // The first message to a stall.early.test recipient is taken after DATA and never answered.
  let stalledOnce = false;
  sink = await startSmtpServer({
    stallData: (rcptTo) => {
      if (stalledOnce || !rcptTo.some((r) => r.endsWith("@stall.early.test"))) return false;
      stalledOnce = true;
      return true;
    },
  });
  edge = await startMiniflareEdge({
    persistDir: path.join(workDir, "edge"),
    vars: {
      ...secrets,
      DEV_MODE: "true",
      DNS_RESOLVER_URL: dns.dohUrl,
      LINK_LEASE_MS: String(LEASE_MS),
      RETRY_SCHEDULE: "1s,1s,1s",
    },
  });
  apiKey = (await liveSender(edge.url, secrets, "Early", SENDER)).apiKey;
}, 180_000);

// Each test's processes go with it: a successor left connected would take the next test's jobs.
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

afterAll(async () => {
  await edge?.stop();
  await sink?.close();
  await dns?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

/** The in-memory coordinator, with each host-slot release held until `open()`. */
function heldCoordinator() {
  const inner = createMemoryCoordinator();
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let releasesStarted = 0;
  const coordinator: Coordinator = {
    ...inner,
    async acquireHostSlot(host, max, ttlMs, opts) {
      const release = await inner.acquireHostSlot(host, max, ttlMs, opts);
      return async () => {
        releasesStarted++;
        await gate;
        await release();
      };
    },
  };
  return { coordinator, open, releasesStarted: () => releasesStarted };
}

function startProcess(nodeId: string, journalDir: string, coordinator: Coordinator) {
  const bootId = randomUUID();
  const journal = OutcomeJournal.open({ dir: journalDir, nodeId, fsyncIntervalMs: 20, retainMs: 86_400_000 });
  const engine: DeliveryEngine = createDeliveryEngine({
    heloName: "origin.early.test",
    smtpPort: sink.port,
    smarthost: { host: "127.0.0.1", port: sink.port },
    verpSecret: "verp-secret-for-the-early-journal-test",
    connectTimeoutMs: 5_000,
    maxConnectionsPerHost: 2,
    coordinator,
  });
  let deliveries = 0;
  const runner = new JobRunner({
    capacity: 10,
    metrics: createMetrics(),
    log: () => {},
    journal,
    coordination: { coordinator, nodeId, bootId, claimTtlMs: 60_000, resultTtlMs: 86_400_000 },
    deliver: (job, opts) => {
      deliveries++;
      return engine.deliver(job, opts);
    },
  });
  const link: EdgeLink = new EdgeLink({
    edgeUrl: edge.url,
    token: secrets.ORIGIN_TOKEN,
    shard: 0,
    nodeId,
    bootId,
    version: "test",
    freeCapacity: () => runner.roomFor(link),
    onJobs: (jobs, l) => runner.accept(jobs, l),
    onResultAck: (ids) => {
      journal.acknowledged(ids);
      runner.refill();
    },
    log: () => {},
    pingIntervalMs: 1_000,
    resendIntervalMs: 500,
  });
  link.preloadResults(journal.inheritedFor(0));
  runner.register(link);
  link.start();
  return { link, journal, engine, runner, deliveries: () => deliveries };
}

async function until(check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function api(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(new URL(pathname, edge.url), {
    method,
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function waitForStatus(id: string, status: string, timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  while (Date.now() < deadline) {
    const r = await api("GET", `/v3/messages/${id}`);
    last = r.body;
    if (r.status === 200 && r.body.status === status) return r.body;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`message ${id} never reached ${status}: ${JSON.stringify(last)}`);
}

async function send(to: string[]): Promise<string> {
  const res = await api("POST", "/v3/mail/send", {
    personalizations: [{ to: to.map((email) => ({ email })) }],
    from: { email: `app@${SENDER}` },
    subject: "Early journal",
    content: [{ type: "text/plain", value: "hello" }],
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body.message_id;
}

const delivered = (recipient: string) => sink.messages.filter((m) => m.rcptTo.includes(recipient)).length;

/** A process whose slot releases are held, and its kill -9 (the link goes, the journal stays). */
function firstProcess(nodeId: string, dir: string) {
  const held = heldCoordinator();
  const p = startProcess(nodeId, dir, held.coordinator);
  cleanup.push(async () => {
    held.open();
    p.link.close();
    await p.engine.close();
    await p.journal.close();
  });
  return { ...p, held, kill: () => p.link.close() };
}

function successor(nodeId: string, dir: string) {
  const p = startProcess(nodeId, dir, createMemoryCoordinator());
  cleanup.push(async () => {
    p.link.close();
    await p.engine.close();
    await p.journal.close();
  });
  return p;
}

describe("a delivered outcome is journaled before the host-slot release completes", () => {
  it("one domain: the job's result is on disk while the release is held, and reported after a kill", async () => {
    const nodeId = `early-${randomUUID().slice(0, 8)}`;
    const dir = path.join(workDir, "journal-one");
    const first = firstProcess(nodeId, dir);
    const recipient = "someone@inbox.early.test";
    const id = await send([recipient]);

    // The server said 250 and the transport began releasing the slot, which is held.
    await until(() => delivered(recipient) === 1 && first.held.releasesStarted() === 1);
    const onDisk = readJournal(dir, nodeId).entries.filter((e) => e.frame.messageId === id);
    expect(onDisk).toHaveLength(1);
    expect(onDisk[0]!.early).toBeUndefined(); // every recipient has its outcome: the result itself
    expect(onDisk[0]!.frame.recipients).toEqual([
      expect.objectContaining({ recipient, status: "delivered", smtpCode: 250 }),
    ]);
    // The job has not finished: no result went to the link.
    expect(first.link.unackedResults).toBe(0);
    expect(first.runner.inFlight).toBe(1);

    first.kill();
    const second = successor(nodeId, dir);
    expect(second.journal.recovery).toMatchObject({ inherited: 1, early: 0 });
    const m = await waitForStatus(id, "delivered");
    expect(m.dispatches).toBe(1); // reported before the hello: never handed out again
    expect(second.deliveries()).toBe(0);
    expect(delivered(recipient)).toBe(1);
  }, 90_000);

  it("one domain, nothing held: the result is written to the journal once", async () => {
    const nodeId = `early-${randomUUID().slice(0, 8)}`;
    const dir = path.join(workDir, "journal-once");
    const p = successor(nodeId, dir); // an unheld coordinator
    const id = await send(["once@inbox.early.test"]);
    await waitForStatus(id, "delivered");
    expect(await p.link.waitForAcks(15_000)).toBe(true);
    const nodeDir = p.journal.nodeDir;
    const lines = fs
      .readdirSync(nodeDir)
      .filter((n) => n.endsWith(".jsonl"))
      .flatMap((n) => fs.readFileSync(path.join(nodeDir, n), "utf8").split("\n"))
      .filter((l) => l.includes(`"messageId":"${id}"`));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).not.toHaveProperty("p");
  }, 90_000);

  it("two domains, one stalling: the other's 250 is an early entry that answers the re-dispatch", async () => {
    const nodeId = `early-${randomUUID().slice(0, 8)}`;
    const dir = path.join(workDir, "journal-two");
    const first = firstProcess(nodeId, dir);
    const done = "one@inbox.early.test";
    const stalls = "two@stall.early.test";
    const id = await send([done, stalls]);

    await until(() => delivered(done) === 1 && first.held.releasesStarted() === 1 && sink.stalled === 1);
    const onDisk = readJournal(dir, nodeId).entries.filter((e) => e.frame.messageId === id);
    expect(onDisk).toHaveLength(1);
    expect(onDisk[0]!.early).toBe(true);
    expect(onDisk[0]!.frame.recipients).toEqual([
      expect.objectContaining({ recipient: done, status: "delivered", smtpCode: 250 }),
    ]);
    expect(first.link.unackedResults).toBe(0);

    first.kill();
    const second = successor(nodeId, dir);
    // Not a result to replay (it lacks the other recipient)...
    expect(second.journal.recovery).toMatchObject({ inherited: 0, early: 1 });
    // ...but it answers the hub's re-dispatch: only the other recipient is delivered again.
    const m = await waitForStatus(id, "delivered");
    expect(m.dispatches).toBe(2);
    expect(second.deliveries()).toBe(1);
    expect(delivered(done)).toBe(1);
    expect(delivered(stalls)).toBe(1);
  }, 90_000);
});
