// The Redis Coordinator against a real redis-server on loopback: two coordinator instances are two
// origin nodes sharing one Redis. Same behavioural suite as the memory adapter, plus what only a
// shared store has: slots of a crashed node expiring, renewal of held slots.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createCoordinator,
  createRedisCoordinator,
  HostSlotTimeoutError,
  type Coordinator,
} from "../../origin/src/coord/index.ts";
import { claimOwner, newBootId } from "../../origin/src/coord/coordinator.ts";
import { describeCoordinator } from "../helpers/coordinator-suite.ts";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.ts";

let redis: TestRedisServer;
let a: Coordinator;
let b: Coordinator;
const extra: Coordinator[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  a = createRedisCoordinator(redis.url);
  b = createRedisCoordinator(redis.url);
});
afterAll(async () => {
  await Promise.all([a, b, ...extra].map((c) => c?.close()));
  await redis?.stop();
});

describeCoordinator("redis", () => ({ a, b }));

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe("redis coordinator specifics", () => {
  it("a crashed node's slot frees itself after its TTL", async () => {
    const doomed = createRedisCoordinator(redis.url);
    await doomed.acquireHostSlot("mx.crash.test", 1, 500);
    // The "crash": the node goes away without releasing (close stops its renewals, nothing else).
    await doomed.close();
    const crashedAt = Date.now();
    await expect(b.acquireHostSlot("mx.crash.test", 1, 5_000, { waitMs: 150 })).rejects.toBeInstanceOf(
      HostSlotTimeoutError,
    );
    const release = await b.acquireHostSlot("mx.crash.test", 1, 5_000, { waitMs: 3_000 });
    expect(Date.now() - crashedAt).toBeGreaterThanOrEqual(350);
    await release();
  });

  it("a restarted process frees the slots its killed predecessor held at once; another node still waits", async () => {
    const host = `mx.restart-${Date.now()}.test`;
    const node = "node-restart";
    const killed = createRedisCoordinator(redis.url, {
      owner: claimOwner(node, newBootId(Date.now() - 5_000)),
    });
    await killed.acquireHostSlot(host, 2, 60_000);
    await killed.acquireHostSlot(host, 2, 60_000);
    await killed.close(); // kill -9: the slots stay in Redis for their 60 s TTL
    const other = createRedisCoordinator(redis.url, { owner: claimOwner("node-other", newBootId()) });
    extra.push(other);
    await expect(other.acquireHostSlot(host, 2, 60_000, { waitMs: 150 })).rejects.toBeInstanceOf(
      HostSlotTimeoutError,
    );
    const successor = createRedisCoordinator(redis.url, { owner: claimOwner(node, newBootId()) });
    extra.push(successor);
    const first = await successor.acquireHostSlot(host, 2, 60_000, { waitMs: 150 });
    const second = await successor.acquireHostSlot(host, 2, 60_000, { waitMs: 150 });
    // The limit still holds: the successor's own two slots fill the host.
    await expect(other.acquireHostSlot(host, 2, 60_000, { waitMs: 150 })).rejects.toBeInstanceOf(
      HostSlotTimeoutError,
    );
    await first();
    await second();
  });

  it("a live holder renews its slot, so it outlasts its TTL while held", async () => {
    const release = await a.acquireHostSlot("mx.renew.test", 1, 300);
    // Three TTLs later the slot must still be held.
    await expect(b.acquireHostSlot("mx.renew.test", 1, 300, { waitMs: 900 })).rejects.toBeInstanceOf(
      HostSlotTimeoutError,
    );
    await release();
    const next = await b.acquireHostSlot("mx.renew.test", 1, 300, { waitMs: 500 });
    await next();
  });

  it("an unreachable Redis makes calls fail rather than hang", async () => {
    // Port 9 (discard) on loopback: nothing listens, so every connection is refused.
    const dead = createRedisCoordinator("redis://127.0.0.1:9", { commandTimeoutMs: 500 });
    extra.push(dead);
    const started = Date.now();
    await expect(dead.claimJob("msg_dead", "node", 1_000)).rejects.toThrow();
    await expect(dead.acquireHostSlot("mx.dead.test", 1, 1_000, { waitMs: 100 })).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("createCoordinator picks Redis when REDIS_URL is set", async () => {
    const c = createCoordinator({ REDIS_URL: redis.url });
    extra.push(c);
    expect(c.kind).toBe("redis");
    expect(await c.claimJob("msg_pick", "node", 1_000)).toBe(true);
  });
});
