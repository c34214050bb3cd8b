/**
 * A message re-queued by POST /v3/messages/{id}/retry (docs/link-protocol.md#retried-messages) on a
 * real origin JobRunner with its coordinator (the in-process one; Redis keys are the same strings)
 * and outcome journal on disk, delivering through a loopback DNS server to a loopback SMTP server
 * that refuses the recipient the first time: a later dispatch of the same message reuses the stored
 * bounce (no second SMTP transaction), but a job with `freshFrom` is delivered again; and the journal
 * answers only with outcomes of dispatches from `freshFrom` on.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryJob, OriginFrame } from "../../shared/link/protocol.ts";
import { createMemoryCoordinator } from "../../origin/src/coord/index.ts";
import { createDeliveryEngine } from "../../origin/src/delivery/engine.ts";
import type { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { OutcomeJournal } from "../../origin/src/journal/outcome-journal.ts";
import { createMetrics } from "../../origin/src/ops/metrics.ts";
import { JobRunner } from "../../origin/src/worker/job-runner.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

type ResultFrame = Extract<OriginFrame, { type: "result" }>;

let dns: TestDnsServer;
let mx: TestSmtpServer;
let refuse = true;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dns = await startDnsServer({
    records: {
      "dest.test": { MX: [{ preference: 10, exchange: "mx.dest.test" }] },
      "mx.dest.test": { A: ["127.0.0.1"] },
    },
  });
  mx = await startSmtpServer({
    onRcpt: () => (refuse ? { code: 550, message: "5.1.1 no such user" } : null),
  });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await mx?.close();
  await dns?.close();
});

/** Stands in for the edge's side of the link: records results and the jobs taken. */
function recordingLink() {
  const link = {
    results: [] as ResultFrame[],
    connected: true,
    isDraining: false,
    backPressured: false,
    shard: 0,
    leaseMs: 300_000,
    jobDeadlineMs: 120_000,
    creditsOutstanding: 10,
    sendResult(frame: ResultFrame) {
      link.results.push(frame);
    },
    take: (jobIds: string[]) => jobIds,
    release() {},
    forget() {},
    leaseSafeUntil: () => Number.MAX_SAFE_INTEGER,
    grantCredits() {},
  };
  return link;
}

function job(messageId: string, attempt: number, freshFrom?: number): DeliveryJob {
  return {
    jobId: `${messageId}.${attempt}`,
    messageId,
    tenantId: "t_1",
    attempt,
    recipients: ["alice@dest.test"],
    message: {
      from: { email: "news@sender.test" },
      to: [{ email: "alice@dest.test" }],
      subject: "Retried",
      text: "Hello",
      headers: {},
      messageIdHeader: `${messageId}@sender.test`,
    },
    dkim: null,
    ...(freshFrom !== undefined ? { freshFrom } : {}),
  };
}

describe("a retried message at the origin", () => {
  it("is delivered again under freshFrom, while a plain re-dispatch gets the stored bounce", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "retried-message-"));
    const journal = OutcomeJournal.open({ dir, nodeId: "node-r", fsyncIntervalMs: 20, retainMs: 86_400_000 });
    closers.push(async () => {
      await journal.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const coordinator = createMemoryCoordinator();
    const engine = createDeliveryEngine({
      heloName: "node-r.sender.test",
      smtpPort: mx.port,
      dnsServers: [dns.server],
      verpSecret: "verp-secret-for-tests",
      connectTimeoutMs: 2_000,
      maxConnectionsPerHost: 2,
      coordinator,
      hostSlotTtlMs: 5_000,
      allowPrivateMx: true,
    });
    closers.push(() => engine.close());
    const runner = new JobRunner({
      capacity: 10,
      deliver: (j) => engine.deliver(j),
      metrics: createMetrics(),
      log: () => {},
      journal,
      coordination: {
        coordinator,
        nodeId: "node-r",
        bootId: "boot-1",
        claimTtlMs: 60_000,
        resultTtlMs: 60_000,
      },
    });
    const link = recordingLink();
    runner.register(link as unknown as EdgeLink);
    const id = `msg_retry_${Date.now()}`;

    runner.accept([job(id, 1)], link as unknown as EdgeLink);
    await runner.whenIdle();
    expect(link.results.map((r) => r.recipients[0]!.status)).toEqual(["bounced"]);
    const transactions = mx.connections;

    // The same message dispatched again without freshFrom (a lost result): the stored bounce answers.
    refuse = false;
    runner.accept([job(id, 2)], link as unknown as EdgeLink);
    await runner.whenIdle();
    expect(link.results.map((r) => r.recipients[0]!.status)).toEqual(["bounced", "bounced"]);
    expect(mx.messages).toHaveLength(0);
    expect(mx.connections).toBe(transactions);

    // Retried: freshFrom = 3, so the outcomes of dispatches 1 and 2 do not count; delivered now.
    runner.accept([job(id, 3, 3)], link as unknown as EdgeLink);
    await runner.whenIdle();
    expect(link.results.at(-1)).toMatchObject({ jobId: `${id}.3`, recipients: [{ status: "delivered" }] });
    expect(mx.messages.map((m) => m.rcptTo)).toEqual([["alice@dest.test"]]);

    // A re-dispatch of the retry (dispatch 4, freshFrom 3) gets the retry's own stored outcome.
    runner.accept([job(id, 4, 3)], link as unknown as EdgeLink);
    await runner.whenIdle();
    expect(link.results.at(-1)).toMatchObject({ jobId: `${id}.4`, recipients: [{ status: "delivered" }] });
    expect(mx.messages).toHaveLength(1);
  });

  it("the journal's final outcomes can be limited to dispatches from a given one on", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "retried-journal-"));
    const journal = OutcomeJournal.open({ dir, nodeId: "node-j", fsyncIntervalMs: 20, retainMs: 86_400_000 });
    closers.push(async () => {
      await journal.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const frame = (attempt: number, status: "bounced" | "delivered"): ResultFrame => ({
      type: "result",
      jobId: `m1.${attempt}`,
      messageId: "m1",
      attempt,
      recipients: [{ recipient: "a@dest.test", status, response: status }],
    });
    journal.append(frame(1, "bounced"), 0);
    expect(journal.finalOutcomes("m1").get("a@dest.test")?.status).toBe("bounced");
    expect(journal.finalOutcomes("m1", 2).size).toBe(0);
    journal.append(frame(2, "delivered"), 0);
    expect(journal.finalOutcomes("m1", 2).get("a@dest.test")?.status).toBe("delivered");
  });
});
