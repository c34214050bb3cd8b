/**
 * Back-pressure on unacknowledged results (issue 6, item 11; docs/link-protocol.md): while D1 fails,
 * the edge acknowledges no result, and the origin keeps every result until it is acknowledged. Its
 * memory is bounded by LINK_MAX_UNACKED_RESULTS: at that many results waiting, the link grants no
 * credit and takes no job, and it takes work again once the edge acknowledges them. Nothing is dropped
 * to make room: every message ends delivered once. A result may wait longer than the lease: the
 * origin renews the jobs whose results wait (LINK_LEASE_MS / 5), so the hub does not hand them out again.
 *
 * The origin's real EdgeLink and JobRunner against the real Worker in workerd (Miniflare), as in
 * edge-link.miniflare.test.ts. D1 is made to fail for real through Miniflare's D1 binding: the
 * `events` table is renamed away, so every batch that records a result fails (the hub's `sending`
 * marks touch only `messages` and still land), then renamed back.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import type { DeliveryJob, RecipientOutcome } from "../../shared/link/protocol.ts";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { createMetrics } from "../../origin/src/ops/metrics.ts";
import { JobRunner } from "../../origin/src/worker/job-runner.ts";
import { freshSecrets, liveSender, testWorkDir } from "../helpers/miniflare-fixture.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";

const SENDER = "sender.backpressure.test";
/** LINK_MAX_UNACKED_RESULTS for the origin under test. */
const MAX_UNACKED = 3;
/** The node's capacity: one shard link, so this is the link's share. */
const CAPACITY = 2;
/** More messages than the origin may take while its results wait. */
const MESSAGES = 10;
const HELD = "events_held_by_test";
/** A short lease, so that D1 can stay down for longer than one (the origin renews every LEASE_MS / 5). */
const LEASE_MS = 3_000;

let edge: MiniflareEdge;
let dns: TestDnsServer;
let workDir: string;
let apiKey: string;
const links: EdgeLink[] = [];
let broken = false;
const secrets = freshSecrets();

beforeAll(async () => {
  workDir = testWorkDir("link-backpressure");
  dns = await startDnsServer({});
  edge = await startMiniflareEdge({
    persistDir: path.join(workDir, "edge"),
    vars: { ...secrets, DEV_MODE: "true", DNS_RESOLVER_URL: dns.dohUrl, LINK_LEASE_MS: String(LEASE_MS) },
  });
  apiKey = (await liveSender(edge.url, secrets, "Backpressure", SENDER)).apiKey;
}, 180_000);

afterEach(async () => {
  for (const l of links.splice(0)) l.close();
  if (broken) await restoreD1();
});

afterAll(async () => {
  if (broken) await restoreD1();
  await edge?.stop();
  await dns?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

async function breakD1(): Promise<void> {
  await (await edge.d1()).prepare(`ALTER TABLE events RENAME TO ${HELD}`).run();
  broken = true;
}

async function restoreD1(): Promise<void> {
  await (await edge.d1()).prepare(`ALTER TABLE ${HELD} RENAME TO events`).run();
  broken = false;
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

interface HubLinkStats {
  nodeId: string | null;
  credits: number;
  framesIn: number;
  jobsOut: number;
}
interface HubStats {
  ready: number;
  leased: number;
  links: HubLinkStats[];
}

/** Shard 0's own view of its outbox and links (OriginHub.stats() over RPC, through Miniflare). */
async function hubStats(): Promise<HubStats> {
  const hub = (await edge.hubs()).getByName("hub-0") as unknown as { stats(): Promise<HubStats> };
  return await hub.stats();
}

/** Polls `read` until `check` holds, or fails with the last value after `timeoutMs`. */
async function until<T>(
  read: () => T | Promise<T>,
  check: (v: T) => boolean,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (!check(last)) {
    if (Date.now() > deadline) throw new Error(`condition not met in time; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 20));
    last = await read();
  }
  return last;
}

interface TestOrigin {
  link: EdgeLink;
  runner: JobRunner;
  nodeId: string;
  /** Every job delivered, in order. */
  calls: DeliveryJob[];
}

/** One origin process, as origin/src/node.ts wires it, delivering every job at once. */
function startOrigin(): TestOrigin {
  const calls: DeliveryJob[] = [];
  const runner = new JobRunner({
    capacity: CAPACITY,
    metrics: createMetrics(),
    log: () => {},
    deliver: async (job) => {
      calls.push(job);
      return job.recipients.map((recipient): RecipientOutcome => ({
        recipient,
        status: "delivered",
        smtpCode: 250,
        response: "250 OK",
      }));
    },
  });
  const nodeId = `node-${randomUUID().slice(0, 8)}`;
  const l: EdgeLink = new EdgeLink({
    edgeUrl: edge.url,
    token: secrets.ORIGIN_TOKEN,
    shard: 0,
    nodeId,
    bootId: randomUUID(),
    version: "test",
    freeCapacity: () => runner.roomFor(l),
    onJobs: (jobs, from) => runner.accept(jobs, from),
    onResultAck: () => runner.refill(),
    log: () => {},
    pingIntervalMs: 1_000,
    resendIntervalMs: 200,
    maxUnackedResults: MAX_UNACKED,
  });
  links.push(l);
  runner.register(l);
  l.start();
  return { link: l, runner, calls, nodeId };
}

async function sendMessages(count: number): Promise<string[]> {
  // Accepted while D1 works (the send path writes `processed` events).
  const res = await api("POST", "/v3/mail/send", {
    personalizations: Array.from({ length: count }, (_, i) => ({ to: [{ email: `r${i}@example.net` }] })),
    from: { email: `app@${SENDER}` },
    subject: "Back-pressure",
    content: [{ type: "text/plain", value: "Hello there" }],
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const ids: string[] = res.body.message_ids ?? [res.body.message_id];
  expect(ids).toHaveLength(count);
  return ids;
}

async function expectDeliveredOnce(ids: string[]): Promise<void> {
  for (const id of ids) {
    const m = await until(
      () => api("GET", `/v3/messages/${id}`),
      (r) => r.status === 200 && r.body.status === "delivered",
    );
    expect(m.body.events.map((e: { event_type: string }) => e.event_type)).toEqual([
      "processed",
      "delivered",
    ]);
    expect(m.body).toMatchObject({ dispatches: 1, deferrals: 0 });
  }
}

describe("EdgeLink back-pressure on unacknowledged results (Miniflare)", () => {
  it("stops taking work at LINK_MAX_UNACKED_RESULTS while D1 fails, loses no result, and delivers every message once after D1 is back", async () => {
    // Queued while no origin is linked.
    const ids = await sendMessages(MESSAGES);
    await breakD1();

    const { link: l, runner, calls, nodeId } = startOrigin();

    // The link fills up with results the edge cannot record, then stops: back-pressured, nothing
    // running, no credit granted. A grant made while fewer than MAX_UNACKED waited may still bring
    // up to CAPACITY jobs, so it holds between MAX_UNACKED and MAX_UNACKED + CAPACITY - 1 results.
    await until(
      () => ({ bp: l.backPressured, inFlight: runner.inFlight, credits: l.creditsOutstanding }),
      (s) => s.bp && s.inFlight === 0 && s.credits === 0,
    );
    const taken = calls.length;
    expect(taken).toBeGreaterThanOrEqual(MAX_UNACKED);
    expect(taken).toBeLessThanOrEqual(MAX_UNACKED + CAPACITY - 1);
    expect(l.unackedResults).toBe(taken);
    expect(new Set(calls.map((j) => j.messageId)).size).toBe(taken);

    // The hub agrees: the link has no credit, `taken` jobs went out and wait for their results, the
    // rest stay ready.
    const stopped = await until(hubStats, (s) => s.links.some((x) => x.nodeId === nodeId && x.credits === 0));
    const mine = () => stopped.links.find((x) => x.nodeId === nodeId)!;
    expect(mine()).toMatchObject({ credits: 0, jobsOut: taken });
    expect(stopped).toMatchObject({ ready: MESSAGES - taken, leased: taken });

    // It stays stopped: the link re-sends its results (every 200 ms) and the hub fails to record them
    // again and again. Once the hub has handled two more rounds of them, still nothing more went out.
    const later = await until(hubStats, (s) =>
      s.links.some((x) => x.nodeId === nodeId && x.framesIn >= mine().framesIn + 2 * taken),
    );
    expect(later.links.find((x) => x.nodeId === nodeId)).toMatchObject({ credits: 0, jobsOut: taken });
    expect(later).toMatchObject({ ready: MESSAGES - taken, leased: taken });
    runner.refill(); // a refill (as after any resultAck) grants nothing while back-pressured
    expect(l.creditsOutstanding).toBe(0);
    expect(calls).toHaveLength(taken);
    expect(l.unackedResults).toBe(taken); // not one result dropped to make room

    // D1 is back: the re-sent results are recorded and acknowledged, the link takes work again, and
    // the remaining messages go through it.
    await restoreD1();
    await until(
      () => calls.length,
      (n) => n === MESSAGES,
    );
    expect(await l.waitForAcks(20_000)).toBe(true);
    await expectDeliveredOnce(ids);
    // Each message was delivered by the origin exactly once.
    expect(calls.map((j) => j.messageId).sort()).toEqual([...ids].sort());
    const after = await hubStats();
    expect(after).toMatchObject({ ready: 0, leased: 0 });
    expect(after.links.find((x) => x.nodeId === nodeId)).toMatchObject({ jobsOut: MESSAGES });
  }, 90_000);

  it("keeps the lease of a job whose result waits for the edge longer than the lease, so the message is not dispatched again", async () => {
    const [id] = await sendMessages(1);
    await breakD1();
    const { link: l, calls, nodeId } = startOrigin();
    await until(
      () => l.unackedResults,
      (n) => n === 1,
    );
    expect(calls.map((j) => j.messageId)).toEqual([id]);
    // The lease is what is under test: D1 stays down for two whole leases after the result was sent.
    // Without renewals the hub's alarm would give the job back to the outbox meanwhile, acknowledge the
    // re-sent result without applying it, and dispatch the message a second time.
    await new Promise((r) => setTimeout(r, 2 * LEASE_MS));
    const held = await hubStats();
    expect(held).toMatchObject({ ready: 0, leased: 1 });
    expect(held.links.find((x) => x.nodeId === nodeId)).toMatchObject({ jobsOut: 1 });

    await restoreD1();
    expect(await l.waitForAcks(20_000)).toBe(true);
    await expectDeliveredOnce([id!]);
    expect(calls.map((j) => j.messageId)).toEqual([id]);
    expect(await hubStats()).toMatchObject({ ready: 0, leased: 0 });
  }, 60_000);
});
