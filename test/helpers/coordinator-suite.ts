/**
 * One behavioural suite for every Coordinator adapter. `nodes()` returns the coordinators of two
 * "nodes": for Redis, two instances (two connections) on one server; for memory, the one instance a
 * single process shares between its workers. The destination counters (rate tokens, back-off,
 * warm-up) are proven the same way: the memory adapter's TypeScript and the Redis adapter's Lua must
 * agree on every step (docs/operations.md, "Throttling and warm-up").
 */
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { claimOwner } from "../../origin/src/coord/coordinator.ts";
import { HostSlotTimeoutError, type Coordinator } from "../../origin/src/coord/index.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const unique = (label: string) => `${label}-${randomUUID().slice(0, 8)}`;

export function describeCoordinator(name: string, nodes: () => { a: Coordinator; b: Coordinator }): void {
  describe(`${name} coordinator: host slots`, () => {
    it("never lets more than `limit` holders in at once under contention from two nodes", async () => {
      const { a, b } = nodes();
      const host = unique("mx.contended.test");
      let current = 0;
      let peak = 0;
      let done = 0;
      const work = async (c: Coordinator) => {
        const release = await c.acquireHostSlot(host, 2, 5_000, { waitMs: 10_000 });
        current++;
        peak = Math.max(peak, current);
        await sleep(30);
        current--;
        done++;
        await release();
      };
      await Promise.all([
        ...Array.from({ length: 5 }, () => work(a)),
        ...Array.from({ length: 5 }, () => work(b)),
      ]);
      expect(done).toBe(10);
      // Reached the limit (so there was real contention) and never went past it.
      expect(peak).toBe(2);
    });

    it("a full host makes the other node wait, then time out with HostSlotTimeoutError", async () => {
      const { a, b } = nodes();
      const host = unique("mx.full.test");
      const r1 = await a.acquireHostSlot(host, 2, 5_000);
      const r2 = await a.acquireHostSlot(host, 2, 5_000);
      const started = Date.now();
      const err = await b.acquireHostSlot(host, 2, 5_000, { waitMs: 200 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HostSlotTimeoutError);
      expect((err as HostSlotTimeoutError).code).toBe("host_slot_timeout");
      expect((err as HostSlotTimeoutError).host).toBe(host);
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      await r1();
      await r2();
    });

    it("a release frees the slot for the other node, which was waiting", async () => {
      const { a, b } = nodes();
      const host = unique("mx.release.test");
      const held = await a.acquireHostSlot(host, 1, 5_000);
      let got = false;
      const waiting = b.acquireHostSlot(host, 1, 5_000, { waitMs: 5_000 }).then((release) => {
        got = true;
        return release;
      });
      await sleep(150);
      expect(got).toBe(false);
      await held();
      const releaseB = await waiting;
      expect(got).toBe(true);
      await releaseB();
    });

    it("releasing twice frees one slot, not two", async () => {
      const { a, b } = nodes();
      const host = unique("mx.twice.test");
      const release = await a.acquireHostSlot(host, 2, 5_000);
      const kept = await a.acquireHostSlot(host, 2, 5_000);
      await release();
      await release();
      // One slot is free (the released one); the second release must not have freed `kept`'s.
      const heldByB = await b.acquireHostSlot(host, 2, 5_000, { waitMs: 1_000 });
      await expect(b.acquireHostSlot(host, 2, 5_000, { waitMs: 150 })).rejects.toBeInstanceOf(
        HostSlotTimeoutError,
      );
      await heldByB();
      await kept();
    });

    it("a waiter that gave up does not keep a slot", async () => {
      const { a, b } = nodes();
      const host = unique("mx.gaveup.test");
      const held = await a.acquireHostSlot(host, 1, 5_000);
      await expect(b.acquireHostSlot(host, 1, 5_000, { waitMs: 100 })).rejects.toBeInstanceOf(
        HostSlotTimeoutError,
      );
      await held();
      const again = await b.acquireHostSlot(host, 1, 5_000, { waitMs: 500 });
      await again();
    });

    it("limits are per host: a full host does not block another", async () => {
      const { a, b } = nodes();
      const full = unique("mx.one.test");
      const held = await a.acquireHostSlot(full, 1, 5_000);
      const other = await b.acquireHostSlot(unique("mx.two.test"), 1, 5_000, { waitMs: 100 });
      await other();
      await held();
    });
  });

  describe(`${name} coordinator: job claims and results`, () => {
    it("a claim is exclusive: exactly one of many concurrent claims across two nodes wins", async () => {
      const { a, b } = nodes();
      const jobId = unique("msg");
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 ? a : b).claimJob(jobId, i % 2 ? "node-a" : "node-b", 10_000),
        ),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await a.claimJob(jobId, "node-a", 10_000)).toBe(false);
      // Another id is unaffected.
      expect(await b.claimJob(unique("msg"), "node-b", 10_000)).toBe(true);
    });

    it("a restarted process (same node id, later boot id) takes over its predecessor's claim at once; nobody else does", async () => {
      const { a, b } = nodes();
      const jobId = unique("msg");
      const node = unique("node/with/slashes");
      expect(await a.claimJob(jobId, claimOwner(node, "boot-1"), 60_000)).toBe(true);
      // The same process claiming again (an older dispatch still running) is refused.
      expect(await a.claimJob(jobId, claimOwner(node, "boot-1"), 60_000)).toBe(false);
      // Another node, and a node whose id merely starts with the same text, wait for the claim.
      expect(await b.claimJob(jobId, claimOwner(unique("other"), "boot-1"), 60_000)).toBe(false);
      expect(await b.claimJob(jobId, claimOwner(`${node}/x`, "boot-2"), 60_000)).toBe(false);
      expect(await b.claimJob(jobId, claimOwner(node.slice(0, -1), "boot-2"), 60_000)).toBe(false);
      // The next boot of the same node takes it over, and then holds it against the old boot.
      expect(await b.claimJob(jobId, claimOwner(node, "boot-2"), 60_000)).toBe(true);
      expect(await a.claimJob(jobId, claimOwner(node, "boot-1"), 60_000)).toBe(false);
    });

    it("a claim expires after its TTL (its node died without completing)", async () => {
      const { a, b } = nodes();
      const jobId = unique("msg");
      expect(await a.claimJob(jobId, "node-a", 200)).toBe(true);
      expect(await b.claimJob(jobId, "node-b", 200)).toBe(false);
      await sleep(350);
      expect(await b.claimJob(jobId, "node-b", 10_000)).toBe(true);
    });

    it("a completed result is visible to the other node, and completing drops the claim", async () => {
      const { a, b } = nodes();
      const jobId = unique("msg");
      expect(await b.getCompletedJob(jobId)).toBeNull();
      expect(await a.claimJob(jobId, "node-a", 10_000)).toBe(true);
      const result = JSON.stringify([{ recipient: "x@dest.test", status: "delivered", response: "250 ok" }]);
      await a.completeJob(jobId, result, 10_000);
      expect(await b.getCompletedJob(jobId)).toBe(result);
      expect(await b.claimJob(jobId, "node-b", 10_000)).toBe(true);
      // Another id has no result.
      expect(await b.getCompletedJob(unique("msg"))).toBeNull();
    });

    it("a completed result expires after its TTL", async () => {
      const { a, b } = nodes();
      const jobId = unique("msg");
      await a.completeJob(jobId, "[]", 200);
      expect(await b.getCompletedJob(jobId)).toBe("[]");
      await sleep(350);
      expect(await b.getCompletedJob(jobId)).toBeNull();
    });
  });

  describe(`${name} coordinator: destination counters`, () => {
    const policy = { baseMs: 200, maxMs: 10_000, decayMs: 60_000 };

    it("rate tokens: a burst, then a refusal that says when, shared by both nodes; keys are separate", async () => {
      const { a, b } = nodes();
      const key = unique("gmail.test");
      const slow = { cost: 1, emissionMs: 60_000, burst: 2, maxWaitMs: 0 };
      expect(await a.takeRateTokens(key, slow)).toEqual({ granted: true, waitMs: 0 });
      expect(await b.takeRateTokens(key, slow)).toEqual({ granted: true, waitMs: 0 });
      const refused = await b.takeRateTokens(key, slow);
      expect(refused.granted).toBe(false);
      const after = (refused as { retryAfterMs: number }).retryAfterMs;
      expect(after).toBeGreaterThan(50_000);
      expect(after).toBeLessThanOrEqual(60_000);
      // A refusal reserves nothing: the same answer again.
      const again = await a.takeRateTokens(key, slow);
      expect(again.granted).toBe(false);
      expect(await a.takeRateTokens(unique("other.test"), slow)).toEqual({ granted: true, waitMs: 0 });
    });

    it("rate tokens due within maxWaitMs are reserved in turn: each later caller waits one interval more", async () => {
      const { a, b } = nodes();
      const key = unique("paced.test");
      const paced = { cost: 1, emissionMs: 10_000, burst: 1, maxWaitMs: 25_000 };
      const waits: number[] = [];
      for (const c of [a, b, a]) {
        const d = await c.takeRateTokens(key, paced);
        expect(d.granted).toBe(true);
        waits.push((d as { waitMs: number }).waitMs);
      }
      expect(waits[0]).toBe(0);
      expect(waits[1]).toBeGreaterThan(9_000);
      expect(waits[1]).toBeLessThanOrEqual(10_000);
      expect(waits[2]).toBeGreaterThan(19_000);
      expect(waits[2]).toBeLessThanOrEqual(20_000);
      // The fourth would wait ~30 s, past maxWaitMs: refused.
      const fourth = await b.takeRateTokens(key, paced);
      expect(fourth.granted).toBe(false);
      expect((fourth as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(25_000);
      // More than the burst at once goes when the bucket is full, and leaves it in debt.
      const huge = unique("huge.test");
      const hugeReq = { cost: 5, emissionMs: 60_000, burst: 2, maxWaitMs: 0 };
      expect(await a.takeRateTokens(huge, hugeReq)).toEqual({ granted: true, waitMs: 0 });
      const inDebt = await b.takeRateTokens(huge, { ...hugeReq, cost: 1 });
      expect(inDebt.granted).toBe(false);
      // Five tokens charged against a burst of two: the next one is due after four emissions.
      expect((inDebt as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(3.5 * 60_000);
      // A cost of several tokens counts as several.
      const big = unique("cost.test");
      expect(
        (await a.takeRateTokens(big, { cost: 3, emissionMs: 60_000, burst: 3, maxWaitMs: 0 })).granted,
      ).toBe(true);
      expect(
        (await b.takeRateTokens(big, { cost: 1, emissionMs: 60_000, burst: 3, maxWaitMs: 0 })).granted,
      ).toBe(false);
    });

    it("rate tokens under contention from two nodes: exactly the burst is granted", async () => {
      const { a, b } = nodes();
      const key = unique("contended.test");
      const r = { cost: 1, emissionMs: 3_600_000, burst: 3, maxWaitMs: 0 };
      const decisions = await Promise.all(
        Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).takeRateTokens(key, r)),
      );
      expect(decisions.filter((d) => d.granted)).toHaveLength(3);
    });

    it("back-off: a pushback pauses the destination for both nodes, repeats while paused do not raise it, a later one doubles it", async () => {
      const { a, b } = nodes();
      const key = unique("pushy.test");
      expect(await b.backoffState(key, policy)).toEqual({ level: 0, pausedForMs: 0 });
      const first = await a.reportPushback(key, policy);
      expect(first.level).toBe(1);
      expect(first.pausedForMs).toBeGreaterThan(0);
      expect(first.pausedForMs).toBeLessThanOrEqual(200);
      const seen = await b.backoffState(key, policy);
      expect(seen.level).toBe(1);
      expect(seen.pausedForMs).toBeGreaterThan(0);
      // Several sessions seeing the same episode: still level 1.
      expect((await b.reportPushback(key, policy)).level).toBe(1);
      await sleep(300);
      expect(await a.backoffState(key, policy)).toEqual({ level: 1, pausedForMs: 0 });
      const second = await b.reportPushback(key, policy);
      expect(second.level).toBe(2);
      expect(second.pausedForMs).toBeGreaterThan(200);
      expect(second.pausedForMs).toBeLessThanOrEqual(400);
    });

    it("back-off decays one level per decayMs after the pause", async () => {
      const { a, b } = nodes();
      const key = unique("decay.test");
      const quick = { baseMs: 100, maxMs: 1_000, decayMs: 150 };
      await a.reportPushback(key, quick);
      await sleep(150);
      expect((await a.reportPushback(key, quick)).level).toBe(2);
      // Pause of 200 ms, then two decay periods of 150 ms: back to 0.
      await sleep(200 + 2 * 150 + 50);
      expect(await b.backoffState(key, quick)).toEqual({ level: 0, pausedForMs: 0 });
    });

    it("warm-up counts are shared per key and day, granted up to the allowance, atomically", async () => {
      const { a, b } = nodes();
      const key = unique("sender.test");
      expect(await a.takeWarmup(key, "2026-12-02", 3, 5)).toEqual({ granted: 3, used: 3 });
      expect(await b.takeWarmup(key, "2026-12-02", 3, 5)).toEqual({ granted: 2, used: 5 });
      expect(await a.takeWarmup(key, "2026-12-02", 1, 5)).toEqual({ granted: 0, used: 5 });
      // A new day, a new count; another key, its own.
      expect(await b.takeWarmup(key, "2026-12-03", 3, 5)).toEqual({ granted: 3, used: 3 });
      expect(await b.takeWarmup(unique("other.test"), "2026-12-02", 1, 5)).toEqual({ granted: 1, used: 1 });
      // Asking for 0 reads the day's count and counts nothing (the /metrics refresh).
      const read = unique("read.test");
      expect(await a.takeWarmup(read, "2026-12-02", 0, 5)).toEqual({ granted: 0, used: 0 });
      expect(await b.takeWarmup(read, "2026-12-02", 2, 5)).toEqual({ granted: 2, used: 2 });
      expect(await a.takeWarmup(read, "2026-12-02", 0, 5)).toEqual({ granted: 0, used: 2 });
      const contended = unique("contended.test");
      const grants = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).takeWarmup(contended, "2026-12-02", 1, 4)),
      );
      expect(grants.reduce((n, g) => n + g.granted, 0)).toBe(4);
    });
  });
}
