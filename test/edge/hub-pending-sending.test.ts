/**
 * The OriginHub's `sending` marks while D1 fails (issue 6, item 11): each job handed to an origin
 * leaves a mark (D1 status `sending`, dispatches + 1) for the next D1 batch. While D1 fails the marks
 * wait in memory, at most MAX_PENDING_SENDING (10,000) of them: at that many the hub stops dispatching
 * (the rows stay `ready` in its storage) and goes on once a D1 write succeeds. Nothing is dropped.
 *
 * The cap is exercised at its production size: 10,000 outbox entries are enqueued through the hub's
 * RPC (the send path would write each to D1 first; the hub does not read those rows, and the marks of
 * ids D1 does not have update nothing), around two messages sent through the API, whose D1 rows show
 * that their marks survive the outage. D1 fails for real: a trigger makes it refuse every update of a
 * message row, so every batch of marks fails, until the trigger is dropped.
 *
 * Marks taken out for a D1 write still under way count toward the cap too: a failing D1 can take long
 * to answer, and a dispatch during that write must not go past the cap.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { OutboxEntry } from "../../edge/src/objects/origin-hub.ts";
import {
  eventually,
  getMessage,
  type LinkClient,
  linkSettled,
  mailBody,
  openLink,
  sendOne,
  setupTenant,
  resetHub,
  runScheduledAlarm,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");
/** MAX_PENDING_SENDING in edge/src/objects/origin-hub.ts. */
const CAP = 10_000;
/** Entries beyond the cap, dispatched once D1 is back. */
const EXTRA = 40;
const OUTAGE = "test_d1_outage";

/** Every table's, index's and trigger's definition, to check that the restore is exact. */
async function schema(): Promise<unknown> {
  return (await env.DB.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").all())
    .results;
}

let broken = false;
/**
 * Every UPDATE of a message row is refused. A batch of marks is one transaction, and the first
 * message's mark is in every batch the hub retries (failed marks go back to the head of the list),
 * so every batch fails until the trigger is dropped.
 */
async function breakD1(): Promise<void> {
  await env.DB.prepare(
    `CREATE TRIGGER ${OUTAGE} BEFORE UPDATE ON messages BEGIN SELECT RAISE(ABORT, 'test: D1 refuses writes'); END`,
  ).run();
  broken = true;
}
async function restoreD1(): Promise<void> {
  if (!broken) return;
  await env.DB.prepare(`DROP TRIGGER ${OUTAGE}`).run();
  broken = false;
}

/** The hub's private members these tests look at or drive. */
interface HubInternals {
  pendingSending: string[];
  flushResults(): Promise<void>;
  enqueue(entries: OutboxEntry[]): Promise<{ added: number }>;
}

/** `sending` marks waiting in the hub's memory for a D1 write. */
function pendingMarks(): Promise<number> {
  return runInDurableObject(hub(), (instance) => (instance as unknown as HubInternals).pendingSending.length);
}

const opened: LinkClient[] = [];
beforeEach(async () => {
  await resetHub();
});
afterEach(async () => {
  await restoreD1();
  for (const l of opened.splice(0)) l.close();
});

let batch = 0;
function syntheticEntries(tenantId: string, from: string, n: number): OutboxEntry[] {
  batch++;
  return Array.from({ length: n }, (_, i) => {
    const messageId = `msg_SYNTHETIC${batch}${String(i).padStart(13, "0")}`;
    return {
      messageId,
      tenantId,
      recipients: [`r${i}@example.net`],
      message: {
        from: { email: from },
        to: [{ email: `r${i}@example.net` }],
        subject: "Cap",
        text: "Hello",
        headers: {},
        messageIdHeader: `${messageId.toLowerCase()}@example.com`,
      },
      dkim: null,
      notBefore: 0,
    };
  });
}

describe("`sending` marks while D1 fails", () => {
  it("pauses dispatch at MAX_PENDING_SENDING marks, keeps the rest ready, and dispatches them once D1 is back, with nothing lost", async () => {
    const t = await setupTenant();
    const shape = await schema();
    // First in the outbox (earliest due_at): dispatched, and marked, while D1 fails.
    const first = await sendOne(t.liveKey, mailBody(t.from));
    const synthetic = syntheticEntries(t.tenantId, t.from, CAP + EXTRA - 2);
    expect(await hub().enqueue(synthetic)).toEqual({ added: synthetic.length });
    // Last in the outbox: beyond the cap, dispatched only after D1 is back.
    const last = await sendOne(t.liveKey, mailBody(t.from));
    expect(await hub().stats()).toMatchObject({ ready: CAP + EXTRA, leased: 0 });

    await breakD1();
    const origin = await openLink();
    opened.push(origin);
    // One hello hands out CAP jobs; their marks cannot be written.
    await origin.hello(CAP);
    const jobs = await origin.jobs(CAP, 10_000);
    expect(jobs).toHaveLength(CAP);
    expect(jobs[0]!.messageId).toBe(first);
    expect(new Set(jobs.map((j) => j.messageId)).size).toBe(CAP);
    // The hub has tried to write the marks and failed: they wait in memory, at the cap.
    await eventually(pendingMarks, (n) => n === CAP, 10_000);

    // More credit while the marks wait: the hub handles it and dispatches nothing.
    origin.send({ type: "credit", credits: 100 });
    expect(await linkSettled(origin)).toMatchObject({ credits: 100, jobsOut: CAP });
    // The alarm (as it fires on its own) does not dispatch either while D1 still fails.
    expect(await runScheduledAlarm(hub())).toBe(true);
    expect(await linkSettled(origin)).toMatchObject({ credits: 100, jobsOut: CAP });
    expect(origin.queued("jobs")).toBe(0);
    expect(await hub().stats()).toMatchObject({ ready: EXTRA, leased: CAP });

    await restoreD1();
    expect(await schema()).toEqual(shape);
    // The retried batch of marks lands (the hub retries it by itself), then the rest goes out.
    const rest = await origin.jobs(EXTRA, 10_000);
    expect(rest.map((j) => j.messageId)).toContain(last);
    expect(await linkSettled(origin)).toMatchObject({ credits: 100 - EXTRA, jobsOut: CAP + EXTRA });
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: CAP + EXTRA });

    // Every entry went out exactly once, as its first dispatch.
    const all = [...jobs, ...rest];
    expect(new Set(all.map((j) => j.messageId))).toEqual(
      new Set([first, last, ...synthetic.map((e) => e.messageId)]),
    );
    expect(all.every((j) => j.attempt === 1)).toBe(true);

    // The marks made while D1 failed were not dropped: the first message is `sending`, dispatched once.
    for (const id of [first, last]) {
      const m = await eventually(
        () => getMessage(t.liveKey, id),
        (v) => v.status === "processing",
      );
      expect(m).toMatchObject({ status: "processing", dispatches: 1 });
    }

    // And the messages finish normally.
    for (const id of [first, last]) {
      const job = all.find((j) => j.messageId === id)!;
      origin.send({ type: "ack", jobIds: [job.jobId] });
      origin.send({
        type: "result",
        jobId: job.jobId,
        messageId: id,
        attempt: job.attempt,
        recipients: [
          { recipient: "rcpt@example.net", status: "delivered", smtpCode: 250, response: "250 OK" },
        ],
      });
      expect(await origin.next("resultAck", 5_000)).toEqual({ type: "resultAck", jobIds: [job.jobId] });
      const m = await getMessage(t.liveKey, id);
      expect(m.status).toBe("delivered");
      expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
    }
  }, 60_000);

  it("counts the marks of a batch still being written: a dispatch while the retried write is under way stays paused", async () => {
    const t = await setupTenant();
    const first = await sendOne(t.liveKey, mailBody(t.from));
    expect(await hub().enqueue(syntheticEntries(t.tenantId, t.from, CAP + EXTRA - 1))).toMatchObject({
      added: CAP + EXTRA - 1,
    });
    await breakD1();
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(CAP);
    expect((await origin.jobs(CAP, 10_000))[0]!.messageId).toBe(first);
    await eventually(pendingMarks, (n) => n === CAP, 10_000);
    origin.send({ type: "credit", credits: 100 });
    expect(await linkSettled(origin)).toMatchObject({ credits: 100, jobsOut: CAP });

    // The hub retries the marks (its retry timer does this every second; here it is started by hand
    // so that the send below lands while that write is under way, as it does whenever a failing D1
    // is slow to answer). A send arriving meanwhile asks for a dispatch: it must stay paused.
    await runInDurableObject(hub(), async (instance) => {
      const hubInside = instance as unknown as HubInternals;
      const writing = hubInside.flushResults();
      await hubInside.enqueue([]);
      await writing;
    });
    expect(await linkSettled(origin)).toMatchObject({ credits: 100, jobsOut: CAP });
    expect(await pendingMarks()).toBe(CAP);
    expect(await hub().stats()).toMatchObject({ ready: EXTRA, leased: CAP });

    await restoreD1();
    const rest = await origin.jobs(EXTRA, 10_000);
    expect(new Set(rest.map((j) => j.messageId)).size).toBe(EXTRA);
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: CAP + EXTRA });
    expect(
      await eventually(
        () => getMessage(t.liveKey, first),
        (v) => v.status === "processing",
      ),
    ).toMatchObject({
      status: "processing",
      dispatches: 1,
    });
  }, 60_000);
});
