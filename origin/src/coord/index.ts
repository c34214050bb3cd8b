/**
 * Picks the Coordinator adapter from config: Redis when REDIS_URL is set (several nodes), otherwise
 * the in-memory one (a single node). See coordinator.ts for the port. The Redis one is wrapped by
 * failover.ts: while Redis does not answer, the per-destination limits are kept per node.
 */
import type { OriginConfig } from "../config.ts";
import type { Coordinator } from "./coordinator.ts";
import { withMemoryFallback } from "./failover.ts";
import { createMemoryCoordinator } from "./memory.ts";
import { createRedisCoordinator, type RedisCoordinatorOptions } from "./redis.ts";

export {
  domainSlotKey,
  HostSlotTimeoutError,
  type AcquireHostSlotOptions,
  type BackoffPolicy,
  type BackoffState,
  type Coordinator,
  type RateDecision,
  type ReleaseSlot,
  type WarmupGrant,
} from "./coordinator.ts";
export { withMemoryFallback, type FailoverCoordinator } from "./failover.ts";
export { createMemoryCoordinator } from "./memory.ts";
export { createRedisCoordinator } from "./redis.ts";

export function createCoordinator(
  config: Pick<OriginConfig, "REDIS_URL">,
  log?: RedisCoordinatorOptions["log"],
  /** claimOwner(nodeId, bootId) of this process (see RedisCoordinatorOptions.owner). */
  owner?: string,
): Coordinator {
  if (!config.REDIS_URL) return createMemoryCoordinator();
  const redis = createRedisCoordinator(config.REDIS_URL, {
    ...(log ? { log } : {}),
    ...(owner ? { owner } : {}),
  });
  return withMemoryFallback(redis, log ? { log } : {});
}
