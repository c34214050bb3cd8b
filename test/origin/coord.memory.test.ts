// The in-memory Coordinator (a single origin node, no REDIS_URL) against the shared behavioural suite.
// Its two "nodes" are two workers of one process, so they share the one instance.
import { afterAll, describe, expect, it } from "vitest";
import { createCoordinator, createMemoryCoordinator } from "../../origin/src/coord/index.ts";
import { describeCoordinator } from "../helpers/coordinator-suite.ts";

const coordinator = createMemoryCoordinator();
afterAll(() => coordinator.close());

describeCoordinator("memory", () => ({ a: coordinator, b: coordinator }));

describe("memory coordinator specifics", () => {
  it("hands a freed slot to waiters in arrival order (FIFO), like the transport's old semaphore", async () => {
    const c = createMemoryCoordinator();
    const held = await c.acquireHostSlot("mx.fifo.test", 1, 1_000);
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) =>
      c.acquireHostSlot("mx.fifo.test", 1, 1_000).then(async (release) => {
        order.push(n);
        await release();
      }),
    );
    await held();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
    await c.close();
  });

  it("drops the oldest results beyond maxResults", async () => {
    const c = createMemoryCoordinator({ maxResults: 2 });
    await c.completeJob("j1", "1", 60_000);
    await c.completeJob("j2", "2", 60_000);
    await c.completeJob("j3", "3", 60_000);
    expect(await c.getCompletedJob("j1")).toBeNull();
    expect(await c.getCompletedJob("j2")).toBe("2");
    expect(await c.getCompletedJob("j3")).toBe("3");
    await c.close();
  });

  it("createCoordinator picks memory without REDIS_URL", async () => {
    const c = createCoordinator({ REDIS_URL: undefined });
    expect(c.kind).toBe("memory");
    await c.close();
  });
});
