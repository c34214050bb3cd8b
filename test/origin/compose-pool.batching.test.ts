/**
 * The compose pool's batches (origin/src/compose/pool.ts, BATCH / PER_WORKER): requests waiting at
 * the end of a loop turn go to a worker together, at most BATCH per message and two batches per
 * worker at a time, and the worker answers each batch with one message; a lone request still goes
 * at once, alone. Counted on the pool's postMessage to its real worker threads, with every
 * result checked, so a batch that lost or mixed up a reply fails here too.
 */
import { generateKeyPairSync } from "node:crypto";
import { Worker } from "node:worker_threads";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { createComposePool, type ComposePool } from "../../origin/src/compose/pool.ts";

const rsaPem = generateKeyPairSync("rsa", { modulusLength: 2048 })
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();

let seq = 0;
function job(): DeliveryJob {
  const messageId = `msg_batch${seq++}`;
  return {
    jobId: `${messageId}.1`,
    messageId,
    tenantId: "t_1",
    attempt: 1,
    recipients: ["alice@dest.test"],
    message: {
      from: { email: "news@sender.test" },
      to: [{ email: "alice@dest.test" }],
      subject: "batched",
      text: "hello",
      headers: {},
      messageIdHeader: `${messageId}@sender.test`,
    },
    dkim: { domain: "sender.test", selector: "s1", privateKeyPem: rsaPem },
  };
}

const pools: ComposePool[] = [];
afterEach(() => vi.restoreAllMocks());
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

/** The batches the pool posts to its workers: the request count of each. */
function spyBatches(): number[] {
  const sizes: number[] = [];
  const post = Worker.prototype.postMessage;
  vi.spyOn(Worker.prototype, "postMessage").mockImplementation(function (
    this: Worker,
    value: unknown,
    transfer?: unknown,
  ) {
    const requests = (value as { requests?: unknown[] }).requests;
    if (requests) sizes.push(requests.length);
    return post.call(this, value, transfer as never);
  });
  return sizes;
}

describe("compose pool batches", () => {
  it("sends the requests of one loop turn in batches of at most 4, two batches per worker at a time", async () => {
    const p = createComposePool({ threads: 1 });
    pools.push(p);
    // Warm the worker (module loading) so timing does not decide the batches below.
    expect((await p.compose(job())).ok).toBe(true);
    const sizes = spyBatches();
    const jobs = Array.from({ length: 10 }, () => job());
    const results = await Promise.all(jobs.map((j) => p.compose(j)));
    for (const [i, r] of results.entries()) {
      if (!r.ok) throw new Error(r.error);
      expect(r.raw.toString()).toContain(`Message-ID: <${jobs[i]!.message.messageIdHeader}>`);
    }
    // 8 at once (two batches of 4: the worker's room), the last 2 when the first batch is answered.
    expect(sizes.slice(0, 2)).toEqual([4, 4]);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(10);
    expect(sizes.every((n) => n <= 4)).toBe(true);
    expect(p.stats()).toMatchObject({ running: 0, queued: 0, crashes: 0 });
  });

  it("a lone request goes at once, in a batch of its own, and is answered alone", async () => {
    const p = createComposePool({ threads: 1 });
    pools.push(p);
    expect((await p.compose(job())).ok).toBe(true);
    const sizes = spyBatches();
    const one = job();
    const r = await p.compose(one);
    expect(r.ok && r.raw.toString()).toContain(`Message-ID: <${one.message.messageIdHeader}>`);
    expect(sizes).toEqual([1]);
  });
});
