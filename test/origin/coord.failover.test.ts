// A Redis outage degrades the shared per-destination limits to per-node ones, with a warning, and
// never stops delivery (docs/operations.md, "Throttling and warm-up"). A real redis-server is killed
// by its pid and started again on the same port; nothing is mocked.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createCoordinator,
  createRedisCoordinator,
  HostSlotTimeoutError,
  withMemoryFallback,
  type FailoverCoordinator,
} from "../../origin/src/coord/index.ts";
import { describeCoordinator } from "../helpers/coordinator-suite.ts";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.ts";

const servers: TestRedisServer[] = [];
const coordinators: { close(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(coordinators.map((c) => c.close()));
  for (const s of servers) await s.stop();
});

// While Redis answers, the wrapper is the Redis adapter: the same behavioural suite.
let shared: { a: FailoverCoordinator; b: FailoverCoordinator };
beforeAll(async () => {
  const server = await startRedisServer();
  servers.push(server);
  shared = {
    a: withMemoryFallback(createRedisCoordinator(server.url)),
    b: withMemoryFallback(createRedisCoordinator(server.url)),
  };
  coordinators.push(shared.a, shared.b);
});
describeCoordinator("redis behind the failover", () => shared);

const SLOW = { cost: 1, emissionMs: 3_600_000, burst: 1, maxWaitMs: 0 };

describe("coordinator failover to per-node limits", () => {
  it("while Redis is down the limits are kept in memory (still enforced per node), claims fail as before; when it is back they are shared again", async () => {
    const first = await startRedisServer();
    servers.push(first);
    const logs: { level: string; msg: string }[] = [];
    const log = (level: "info" | "warn" | "error", msg: string) => void logs.push({ level, msg });
    const a = withMemoryFallback(createRedisCoordinator(first.url, { commandTimeoutMs: 500 }), {
      log,
      retryMs: 200,
    });
    const b = withMemoryFallback(createRedisCoordinator(first.url, { commandTimeoutMs: 500 }));
    coordinators.push(a, b);

    // Shared: what node a took, node b cannot.
    expect((await a.takeRateTokens("dest.test", SLOW)).granted).toBe(true);
    expect((await b.takeRateTokens("dest.test", SLOW)).granted).toBe(false);
    expect(a.degraded).toBe(false);

    await first.stop(); // the outage

    // Node a goes on with its own bucket (memory starts empty) and says so once.
    expect((await a.takeRateTokens("dest.test", SLOW)).granted).toBe(true);
    expect(a.degraded).toBe(true);
    expect(logs.filter((l) => l.level === "warn" && /redis unavailable/.test(l.msg))).toHaveLength(1);
    // ...and its own limits still hold: the second token, the second slot of a limit of one.
    expect((await a.takeRateTokens("dest.test", SLOW)).granted).toBe(false);
    const slot = await a.acquireHostSlot("mx.dest.test", 1, 5_000, { waitMs: 100 });
    await expect(a.acquireHostSlot("mx.dest.test", 1, 5_000, { waitMs: 100 })).rejects.toBeInstanceOf(
      HostSlotTimeoutError,
    );
    await slot();
    expect(await a.takeWarmup("sender.test", "2026-12-02", 3, 2)).toEqual({ granted: 2, used: 2 });
    // Claims are not limits: they still need Redis, and fail (the job runner's existing handling).
    await expect(a.claimJob("msg_down", "node-a/boot", 1_000)).rejects.toThrow();
    // Still one warning for the whole outage.
    expect(logs.filter((l) => l.level === "warn")).toHaveLength(1);

    // Redis comes back (empty: no persistence in the test server) where the clients reconnect.
    const second = await startRedisServer({ port: first.port });
    servers.push(second);
    // Each probe uses a key of its own: the call during which the failover notices Redis again may
    // still have been answered from memory, so only calls after it are sure to reach Redis.
    const deadline = Date.now() + 15_000;
    for (let i = 0; a.degraded && Date.now() < deadline; i++) {
      await a.takeRateTokens(`probe-${i}.test`, SLOW);
      if (a.degraded) await new Promise((r) => setTimeout(r, 100));
    }
    expect(a.degraded).toBe(false);
    expect((await a.takeRateTokens("again.test", SLOW)).granted).toBe(true);
    expect(logs.some((l) => l.level === "info" && /redis answers again/.test(l.msg))).toBe(true);
    // Shared again: node b sees node a's token in Redis.
    expect((await b.takeRateTokens("again.test", SLOW)).granted).toBe(false);
  });

  it("createCoordinator wraps Redis in the failover and reports kind redis", async () => {
    const server = await startRedisServer();
    servers.push(server);
    const c = createCoordinator({ REDIS_URL: server.url }) as FailoverCoordinator;
    coordinators.push(c);
    expect(c.kind).toBe("redis");
    expect(c.degraded).toBe(false);
    expect((await c.takeWarmup("k", "2026-12-02", 1, 1)).granted).toBe(1);
  });
});
