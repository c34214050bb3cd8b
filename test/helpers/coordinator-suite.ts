/**
 * One behavioural suite for every Coordinator adapter. `nodes()` returns the coordinators of two
 * "nodes": for Redis, two instances (two connections) on one server; for memory, the one instance a
 * single process shares between its workers.
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
}
