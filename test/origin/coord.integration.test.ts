// Two origin nodes (two JobRunners, each with its own delivery engine) sharing one real redis-server,
// delivering through the loopback DNS server to a loopback SMTP sink. Nothing is mocked except the
// edge link, which only records what a node reports.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryJob, OriginFrame } from "../../shared/link/protocol.ts";
import {
  createMemoryCoordinator,
  createRedisCoordinator,
  type Coordinator,
} from "../../origin/src/coord/index.ts";
import { claimOwner, newBootId } from "../../origin/src/coord/coordinator.ts";
import { createDeliveryEngine, type DeliveryEngine } from "../../origin/src/delivery/engine.ts";
import type { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { createMetrics } from "../../origin/src/ops/metrics.ts";
import { JobRunner } from "../../origin/src/worker/job-runner.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.ts";
import { startSinkServer, startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

type ResultFrame = Extract<OriginFrame, { type: "result" }>;

let redis: TestRedisServer;
let dns: TestDnsServer;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  dns = await startDnsServer({
    records: {
      "dest.test": { MX: [{ preference: 10, exchange: "mx.dest.test" }] },
      "mx.dest.test": { A: ["127.0.0.1"] },
    },
  });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await dns?.close();
  await redis?.stop();
});

/**
 * Stands in for the edge: records results, acks and credits granted after the hello (which stated
 * the whole capacity, 10, as a real EdgeLink's would for a node with one shard link).
 */
function fakeLink() {
  const HELLO = 10;
  let received = 0;
  const link = {
    results: [] as ResultFrame[],
    acked: [] as string[],
    credits: 0,
    connected: true,
    isDraining: false,
    backPressured: false,
    shard: 0,
    leaseMs: 300_000,
    jobDeadlineMs: 120_000,
    get creditsOutstanding() {
      return HELLO + link.credits - received;
    },
    sendResult(frame: ResultFrame) {
      link.results.push(frame);
    },
    take(jobIds: string[]) {
      received += jobIds.length;
      link.acked.push(...jobIds);
      return jobIds;
    },
    release() {},
    forget() {},
    leaseSafeUntil: () => Number.MAX_SAFE_INTEGER,
    grantCredits(n: number) {
      link.credits += n;
    },
  };
  return link;
}

interface TestNode {
  runner: JobRunner;
  link: ReturnType<typeof fakeLink>;
  engine: DeliveryEngine;
  coordinator: Coordinator;
}

function redisCoordinator(options: Parameters<typeof createRedisCoordinator>[1] = {}): Coordinator {
  const c = createRedisCoordinator(redis.url, options);
  closers.push(() => c.close());
  return c;
}

function startNode(
  nodeId: string,
  smtpPort: number,
  coordinator: Coordinator,
  opts: { hostSlotWaitMs?: number; bootId?: string } = {},
): TestNode {
  const { bootId = "boot-1", ...engineOpts } = opts;
  const engine = createDeliveryEngine({
    heloName: `${nodeId}.sender.test`,
    smtpPort,
    dnsServers: [dns.server],
    verpSecret: "verp-secret-for-tests",
    connectTimeoutMs: 2_000,
    maxConnectionsPerHost: 2,
    coordinator,
    hostSlotTtlMs: 5_000,
    allowPrivateMx: true, // the test zone's MX hosts are on 127.0.0.1
    ...engineOpts,
  });
  closers.push(() => engine.close());
  const runner = new JobRunner({
    capacity: 10,
    deliver: (job) => engine.deliver(job),
    metrics: createMetrics(),
    log: () => {},
    coordination: { coordinator, nodeId, bootId, claimTtlMs: 60_000, resultTtlMs: 60_000 },
  });
  const link = fakeLink();
  runner.register(link as unknown as EdgeLink);
  return { runner, link, engine, coordinator };
}

const accept = (node: TestNode, job: DeliveryJob) =>
  node.runner.accept([job], node.link as unknown as EdgeLink);

let seq = 0;
function job(recipients: string[], attempt = 1, messageId = `msg_coord_${Date.now()}_${++seq}`): DeliveryJob {
  return {
    jobId: `${messageId}.${attempt}`,
    messageId,
    tenantId: "t_1",
    attempt,
    recipients,
    message: {
      from: { email: "news@sender.test" },
      to: recipients.map((email) => ({ email })),
      subject: "Coordinated",
      text: "Hello",
      headers: {},
      messageIdHeader: `${messageId}@sender.test`,
    },
    dkim: null,
  };
}

async function sink(): Promise<TestSmtpServer> {
  const s = await startSinkServer();
  closers.push(() => s.close());
  return s;
}

describe("two origin nodes sharing Redis", () => {
  it("the same job handed to both nodes at once is delivered once; the loser reports nothing", async () => {
    const mx = await sink();
    const a = startNode("node-a", mx.port, redisCoordinator());
    const b = startNode("node-b", mx.port, redisCoordinator());
    const j = job(["alice@dest.test"]);
    accept(a, j);
    accept(b, j);
    await Promise.all([a.runner.whenIdle(), b.runner.whenIdle()]);

    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]?.rcptTo).toEqual(["alice@dest.test"]);
    const reports = [...a.link.results, ...b.link.results];
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({
      jobId: j.jobId,
      recipients: [{ status: "delivered", smtpCode: 250 }],
    });
    // Both nodes took the job; the one that did not run it gave its credit back without a result.
    expect(a.link.acked).toEqual([j.jobId]);
    expect(b.link.acked).toEqual([j.jobId]);
    const loser = a.link.results.length === 0 ? a : b;
    expect(loser.link.credits).toBe(1);
  });

  it("a restarted process takes over the claim its killed predecessor left in Redis, at once", async () => {
    const mx = await sink();
    const shared = redisCoordinator();
    const j = job(["erin@dest.test"]);
    // The old process claimed the message and died before completing it (kill -9): its claim stays
    // in Redis for JOB_CLAIM_TTL_MS (60 s here).
    expect(
      await shared.claimJob(j.messageId, claimOwner("node-r", newBootId(Date.now() - 5_000)), 60_000),
    ).toBe(true);
    // Another node must still wait for it...
    const other = startNode("node-s", mx.port, redisCoordinator());
    accept(other, { ...j, jobId: `${j.messageId}.2`, attempt: 2 });
    await other.runner.whenIdle();
    expect(other.link.results).toHaveLength(0);
    // ...but the same node id under a new boot id (the edge re-dispatched the dead process's jobs
    // to its successor) delivers without waiting out the claim.
    const restarted = startNode("node-r", mx.port, redisCoordinator(), { bootId: newBootId() });
    accept(restarted, { ...j, jobId: `${j.messageId}.3`, attempt: 3 });
    await restarted.runner.whenIdle();
    expect(restarted.link.results[0]?.recipients.map((r) => r.status)).toEqual(["delivered"]);
    expect(mx.messages).toHaveLength(1);
  });

  it("control: with separate in-memory coordinators the same two nodes deliver it twice", async () => {
    const mx = await sink();
    const a = startNode("node-a", mx.port, createMemoryCoordinator());
    const b = startNode("node-b", mx.port, createMemoryCoordinator());
    const j = job(["bob@dest.test"]);
    accept(a, j);
    accept(b, j);
    await Promise.all([a.runner.whenIdle(), b.runner.whenIdle()]);
    expect(mx.messages).toHaveLength(2);
  });

  it("a message re-dispatched to the other node after the first delivered it gets the stored result", async () => {
    const mx = await sink();
    const a = startNode("node-a", mx.port, redisCoordinator());
    const b = startNode("node-b", mx.port, redisCoordinator());
    const first = job(["carol@dest.test", "dan@dest.test"]);
    accept(a, first);
    await a.runner.whenIdle();
    expect(mx.messages).toHaveLength(1);
    expect(a.link.results[0]?.recipients.map((r) => r.status)).toEqual(["delivered", "delivered"]);

    // A's result never reached the edge; its lease ran out and the edge sent attempt 2 to B.
    const second = job(first.recipients, 2, first.messageId);
    accept(b, second);
    // ...and the same job id again, as a re-sent frame would.
    accept(b, { ...first });
    await b.runner.whenIdle();

    expect(mx.messages).toHaveLength(1);
    expect(b.link.results.map((r) => r.jobId)).toEqual([second.jobId, first.jobId]);
    for (const frame of b.link.results) {
      expect(frame.recipients).toEqual(a.link.results[0]?.recipients);
    }
  });

  it("on a later attempt only recipients without a final outcome are delivered again", async () => {
    let bobTries = 0;
    const mx = await startSmtpServer({
      onRcpt: (address) => {
        if (address === "bob@dest.test" && bobTries++ === 0)
          return { code: 451, message: "4.7.1 Greylisted" };
        if (address === "nobody@dest.test") return { code: 550, message: "5.1.1 user unknown" };
        return null;
      },
    });
    closers.push(() => mx.close());
    const a = startNode("node-a", mx.port, redisCoordinator());
    const b = startNode("node-b", mx.port, redisCoordinator());
    const recipients = ["alice@dest.test", "bob@dest.test", "nobody@dest.test"];
    const first = job(recipients);
    accept(a, first);
    await a.runner.whenIdle();
    expect(a.link.results[0]?.recipients.map((r) => r.status)).toEqual(["delivered", "deferred", "bounced"]);
    expect(mx.messages.map((m) => m.rcptTo)).toEqual([["alice@dest.test"]]);

    // Attempt 2 carries every recipient (attempt 1's result was lost) and lands on node B.
    const second = job(recipients, 2, first.messageId);
    accept(b, second);
    await b.runner.whenIdle();
    expect(mx.messages.map((m) => m.rcptTo)).toEqual([["alice@dest.test"], ["bob@dest.test"]]);
    const reported = b.link.results[0]?.recipients ?? [];
    expect(reported.map((r) => [r.recipient, r.status])).toEqual([
      ["alice@dest.test", "delivered"],
      ["bob@dest.test", "delivered"],
      ["nobody@dest.test", "bounced"],
    ]);
    expect(reported[2]).toMatchObject({ smtpCode: 550, enhancedCode: "5.1.1" });

    // Attempt 3 for bob alone: already final, so nothing new goes out.
    accept(a, job(["bob@dest.test"], 3, first.messageId));
    await a.runner.whenIdle();
    expect(mx.messages).toHaveLength(2);
    expect(a.link.results[1]?.recipients).toMatchObject([
      { recipient: "bob@dest.test", status: "delivered" },
    ]);
  });

  it("a message claimed by another live node is not run and not reported", async () => {
    const mx = await sink();
    const other = redisCoordinator();
    const b = startNode("node-b", mx.port, redisCoordinator());
    const j = job(["erin@dest.test"]);
    expect(await other.claimJob(j.messageId, "node-a", 60_000)).toBe(true);
    accept(b, j);
    await b.runner.whenIdle();
    expect(mx.connections).toBe(0);
    expect(b.link.results).toEqual([]);
    expect(b.link.credits).toBe(1);

    // Once the holder completes without final outcomes (say everything deferred), the next attempt runs.
    await other.completeJob(j.messageId, "[]", 60_000);
    accept(b, job(j.recipients, 2, j.messageId));
    await b.runner.whenIdle();
    expect(mx.messages).toHaveLength(1);
    expect(b.link.results[0]?.recipients[0]?.status).toBe("delivered");
  });

  it("host slots are shared: a host kept full by one node defers deliveries on the other", async () => {
    const mx = await sink();
    const a = redisCoordinator();
    const b = startNode("node-b", mx.port, redisCoordinator(), { hostSlotWaitMs: 200 });
    const held = [
      await a.acquireHostSlot("mx.dest.test", 2, 5_000),
      await a.acquireHostSlot("mx.dest.test", 2, 5_000),
    ];
    const outcomes = await b.engine.deliver(job(["fay@dest.test"]));
    expect(outcomes[0]).toMatchObject({ status: "deferred", mxHost: "mx.dest.test" });
    expect(outcomes[0]?.response).toMatch(/no free connection slot for mx\.dest\.test/);
    expect(mx.connections).toBe(0);

    await held[0]!();
    const retried = await b.engine.deliver(job(["fay@dest.test"]));
    expect(retried[0]?.status).toBe("delivered");
    expect(mx.messages).toHaveLength(1);
    await held[1]!();
  });

  it("when Redis cannot be reached the job is reported deferred, not delivered unguarded", async () => {
    const mx = await sink();
    const dead = createRedisCoordinator("redis://127.0.0.1:9", { commandTimeoutMs: 500 });
    closers.push(() => dead.close());
    const n = startNode("node-x", mx.port, dead);
    const j = job(["gus@dest.test"]);
    accept(n, j);
    await n.runner.whenIdle();
    expect(mx.connections).toBe(0);
    expect(n.link.results[0]?.recipients[0]).toMatchObject({ status: "deferred" });
    expect(n.link.results[0]?.recipients[0]?.response).toMatch(/coordination unavailable/);
  });
});
