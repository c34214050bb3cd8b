/**
 * The outcome journal across a restart, with the origin's real EdgeLink, JobRunner and journal against
 * the real Worker bundle in workerd (Miniflare), wired as origin/src/node.ts wires them. A process
 * "dies" the way kill -9 leaves things: its link goes away without a result and its journal is never
 * closed; its successor has the same NODE_ID, a new boot id, and opens the same journal directory.
 * Only delivery is a stand-in (the runner's `deliver` port); every call to it is counted, so "not
 * delivered twice" is observed, not assumed.
 *
 *  - A result journaled but never sent is reported by the successor before its hello, while the hub
 *    still leases that dispatch to the dead process: recorded as that dispatch, never re-dispatched.
 *  - Had the hub re-dispatched it anyway (a replay that came too late), the runner answers the new
 *    dispatch from the journal instead of delivering again, and the journal empties once that answer
 *    is acknowledged.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import type { DeliveryJob, RecipientOutcome } from "../../shared/link/protocol.ts";
import { createMemoryCoordinator } from "../../origin/src/coord/index.ts";
import { OutcomeJournal } from "../../origin/src/journal/outcome-journal.ts";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { createMetrics } from "../../origin/src/ops/metrics.ts";
import { JobRunner } from "../../origin/src/worker/job-runner.ts";
import { freshSecrets, liveSender, testWorkDir } from "../helpers/miniflare-fixture.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";

// Long enough that the dead process's lease cannot run out while its successor connects.
const LEASE_MS = 10_000;
const SENDER = "sender.journal.test";

let edge: MiniflareEdge;
let dns: TestDnsServer;
let workDir: string;
let apiKey: string;
const secrets = freshSecrets();

beforeAll(async () => {
  workDir = testWorkDir("journal-miniflare");
  dns = await startDnsServer({});
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
  apiKey = (await liveSender(edge.url, secrets, "Journal", SENDER)).apiKey;
}, 180_000);

afterAll(async () => {
  await edge?.stop();
  await dns?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

interface Call {
  job: DeliveryJob;
  finish: () => void;
}

interface TestProcess {
  link: EdgeLink;
  journal: OutcomeJournal;
  calls: Call[];
  callsFor(messageId: string): Call[];
  /** kill -9, as the edge and the disk see it: the link goes, the journal is left as written. */
  kill(): void;
}

const live: TestProcess[] = [];
afterEach(async () => {
  for (const p of live.splice(0)) {
    p.link.close();
    await p.journal.close();
  }
});

/** One origin process as node.ts assembles it; `replay: false` leaves the journal's results unsent. */
function startProcess(nodeId: string, journalDir: string, o: { replay?: boolean } = {}): TestProcess {
  const bootId = randomUUID();
  const calls: Call[] = [];
  const journal = OutcomeJournal.open({ dir: journalDir, nodeId, fsyncIntervalMs: 20, retainMs: 86_400_000 });
  const runner = new JobRunner({
    capacity: 10,
    metrics: createMetrics(),
    log: () => {},
    journal,
    coordination: {
      coordinator: createMemoryCoordinator(),
      nodeId,
      bootId,
      claimTtlMs: 60_000,
      resultTtlMs: 86_400_000,
    },
    deliver: (job) =>
      new Promise<RecipientOutcome[]>((resolve) => {
        calls.push({
          job,
          finish: () =>
            resolve(
              job.recipients.map((recipient) => ({
                recipient,
                status: "delivered",
                smtpCode: 250,
                response: "250 2.0.0 OK",
              })),
            ),
        });
      }),
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
  if (o.replay !== false) link.preloadResults(journal.inheritedFor(0));
  runner.register(link);
  link.start();
  const p: TestProcess = {
    link,
    journal,
    calls,
    callsFor: (id) => calls.filter((c) => c.job.messageId === id),
    kill: () => {
      live.splice(live.indexOf(p), 1);
      link.close();
    },
  };
  live.push(p);
  return p;
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

async function sendOne(): Promise<string> {
  const res = await api("POST", "/v3/mail/send", {
    personalizations: [{ to: [{ email: "someone@example.net" }] }],
    from: { email: `app@${SENDER}` },
    subject: "Journal test",
    content: [{ type: "text/plain", value: "hello" }],
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body.message_id;
}

async function until(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function waitForStatus(id: string, status: string, timeoutMs = 20_000): Promise<any> {
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

/**
 * The first process takes the job, the SMTP server says 250, the outcome is journaled, and the
 * process dies before the result reaches the hub (the link is gone when the runner sends it).
 */
async function deliveredThenKilled(nodeId: string, journalDir: string): Promise<string> {
  const first = startProcess(nodeId, journalDir);
  const id = await sendOne();
  await until(() => first.callsFor(id).length === 1);
  // The runner acknowledged the job (leased to this boot) before it ran; the close comes after that ack.
  first.kill();
  first.callsFor(id)[0]!.finish();
  await until(() => first.journal.finalOutcomes(id).size === 1);
  expect(first.link.unackedResults).toBe(1); // never acknowledged: it never left this process
  return id;
}

describe("outcome journal ⇄ OriginHub (Miniflare)", () => {
  it("a result journaled but never sent is reported by the restarted process before its hello: recorded, not delivered again", async () => {
    const nodeId = `journal-${randomUUID().slice(0, 8)}`;
    const dir = path.join(workDir, "journal-a");
    const id = await deliveredThenKilled(nodeId, dir);

    const second = startProcess(nodeId, dir);
    expect(second.journal.recovery.inherited).toBe(1);
    const m = await waitForStatus(id, "delivered");
    // Recorded as the first dispatch: the hub never handed the message out again.
    expect(m).toMatchObject({ dispatches: 1, deferrals: 0 });
    expect(m.events.map((e: { event_type: string }) => e.event_type)).toEqual(["processed", "delivered"]);
    expect(await second.link.waitForAcks(15_000)).toBe(true);
    // A barrier: a later message goes through this process, so any re-dispatch would have come first.
    const next = await sendOne();
    await until(() => second.callsFor(next).length === 1);
    second.callsFor(next)[0]!.finish();
    await waitForStatus(next, "delivered");
    expect(second.callsFor(id)).toHaveLength(0);
  }, 60_000);

  it("a re-dispatch of a journaled message is answered from the journal, and the journal empties once that answer is acknowledged", async () => {
    const nodeId = `journal-${randomUUID().slice(0, 8)}`;
    const dir = path.join(workDir, "journal-b");
    const id = await deliveredThenKilled(nodeId, dir);

    // The journal's result is not replayed: the hello retires the dead process's lease and the hub
    // dispatches the message again, to this process.
    const second = startProcess(nodeId, dir, { replay: false });
    const m = await waitForStatus(id, "delivered");
    expect(m).toMatchObject({ dispatches: 2, deferrals: 0 });
    expect(m.events.map((e: { event_type: string }) => e.event_type)).toEqual(["processed", "delivered"]);
    expect(second.callsFor(id)).toHaveLength(0);
    expect(await second.link.waitForAcks(15_000)).toBe(true);
    expect(second.journal.size).toBe(0);
    await second.journal.close();
    expect(fs.existsSync(second.journal.nodeDir)).toBe(false);
  }, 60_000);
});
