/**
 * Picks the Coordinator adapter from config: Redis when REDIS_URL is set (several nodes), otherwise
 * the in-memory one (a single node). See coordinator.ts for the port.
 */
import type { OriginConfig } from "../config.ts";
import type { Coordinator } from "./coordinator.ts";
import { createMemoryCoordinator } from "./memory.ts";
import { createRedisCoordinator, type RedisCoordinatorOptions } from "./redis.ts";

export {
  HostSlotTimeoutError,
  type AcquireHostSlotOptions,
  type Coordinator,
  type ReleaseSlot,
} from "./coordinator.ts";
export { createMemoryCoordinator } from "./memory.ts";
export { createRedisCoordinator } from "./redis.ts";

export function createCoordinator(
  config: Pick<OriginConfig, "REDIS_URL">,
  log?: RedisCoordinatorOptions["log"],
  /** claimOwner(nodeId, bootId) of this process (see RedisCoordinatorOptions.owner). */
  owner?: string,
): Coordinator {
  if (!config.REDIS_URL) return createMemoryCoordinator();
  return createRedisCoordinator(config.REDIS_URL, { ...(log ? { log } : {}), ...(owner ? { owner } : {}) });
}
