/**
 * The Redis Coordinator, for several origin processes or hosts sharing destinations (REDIS_URL).
 *
 * Keys (all under `keyPrefix`, default "scaisend:"):
 *  - `slots:<host>`      sorted set; member = one slot token, score = the slot's expiry (Redis server
 *                        time, ms). Expired members are dropped before every count, so the slots of a
 *                        node that died free themselves after `ttlMs`; live holders renew theirs every
 *                        ttl/3. The acquire script counts and adds in one step (Lua runs atomically).
 *  - `job:claim:<id>`    SET NX PX: the node now working on `<id>`; dropped by completeJob, else expires.
 *  - `job:done:<id>`     the result stored by completeJob, for `ttlMs`.
 *
 * Time comes from the Redis server (TIME inside the scripts), never from the nodes, so clock skew
 * between hosts cannot stretch or shrink a slot. When the host is full the caller polls with capped,
 * jittered backoff until `waitMs`; cross-node fairness is therefore approximate, not FIFO.
 * If Redis is unreachable, commands fail after `commandTimeoutMs` and callers defer (see transport).
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import {
  HostSlotTimeoutError,
  ownerNode,
  type AcquireHostSlotOptions,
  type Coordinator,
  type ReleaseSlot,
} from "./coordinator.ts";

export interface RedisCoordinatorOptions {
  keyPrefix?: string;
  /**
   * `claimOwner(nodeId, bootId)` of this process. Host-slot tokens carry it, so a restarted process
   * (same node, later boot) frees the slots its killed predecessor still held instead of waiting
   * HOST_SLOT_TTL_MS for them, as it takes over that process's claims (Coordinator.claimJob).
   */
  owner?: string;
  /** A command that gets no reply within this long fails (so a dead Redis defers, never hangs). */
  commandTimeoutMs?: number;
  log?: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
}

// KEYS[1] slots zset. ARGV: ttlMs, limit, token, owner's node prefix ("<nodeId>/" or ""), owner's
// boot id. Tokens are "<nodeId>/<bootId>#<random>"; slots of an earlier boot of this node are dropped
// first (that process is gone, see RedisCoordinatorOptions.owner). Returns 1 when the slot was taken.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local node = ARGV[4]
if node ~= '' then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(member, 1, #node) == node then
      local rest = string.sub(member, #node + 1)
      local hash = string.find(rest, '#', 1, true)
      if hash then
        local boot = string.sub(rest, 1, hash - 1)
        if not string.find(boot, '/', 1, true) and boot < ARGV[5] then redis.call('ZREM', KEYS[1], member) end
      end
    end
  end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`;

// KEYS[1] slots zset. ARGV: ttlMs, token. Pushes the token's expiry out; 0 if it had already expired.
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`;

// KEYS[1] claim key. ARGV: owner, owner's node prefix ("<nodeId>/"), ttlMs. Returns 1 when claimed:
// the key was free, or held by an earlier boot of the same node (isEarlierBootOfSameNode, in Lua).
const CLAIM = `
local held = redis.call('GET', KEYS[1])
if held then
  local node = ARGV[2]
  if node == '' or string.sub(held, 1, #node) ~= node then return 0 end
  local heldBoot = string.sub(held, #node + 1)
  if string.find(heldBoot, '/', 1, true) then return 0 end
  if not (heldBoot < string.sub(ARGV[1], #node + 1)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
`;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createRedisCoordinator(redisUrl: string, options: RedisCoordinatorOptions = {}): Coordinator {
  const prefix = options.keyPrefix ?? "scaisend:";
  const owner = options.owner;
  const node = owner ? ownerNode(owner) : "";
  const boot = owner ? owner.slice(node.length) : "";
  const log = options.log ?? (() => {});
  const redis = new Redis(redisUrl, {
    commandTimeout: options.commandTimeoutMs ?? 5_000,
    // Fail a command after one reconnect attempt instead of queueing it for as long as Redis is away.
    maxRetriesPerRequest: 1,
  });
  let lastError = "";
  redis.on("error", (err: Error) => {
    // ioredis reconnects by itself; log each distinct error once rather than on every retry.
    if (err.message !== lastError) log("warn", "redis error", { error: err.message });
    lastError = err.message;
  });
  redis.on("ready", () => {
    lastError = "";
  });
  const renewals = new Set<NodeJS.Timeout>();
  let closed = false;

  const slotKey = (host: string) => `${prefix}slots:${host.toLowerCase()}`;
  const claimKey = (jobId: string) => `${prefix}job:claim:${jobId}`;
  const doneKey = (jobId: string) => `${prefix}job:done:${jobId}`;

  async function acquireHostSlot(
    host: string,
    limit: number,
    ttlMs: number,
    opts: AcquireHostSlotOptions = {},
  ): Promise<ReleaseSlot> {
    const key = slotKey(host);
    const token = owner ? `${owner}#${randomUUID()}` : randomUUID();
    const ttl = Math.max(1, Math.round(ttlMs));
    const started = Date.now();
    const deadline = opts.waitMs === undefined ? Infinity : started + opts.waitMs;
    let delay = 20;
    for (;;) {
      const taken = await redis.eval(ACQUIRE, 1, key, ttl, Math.max(1, limit), token, node, boot);
      if (taken === 1) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new HostSlotTimeoutError(host, Date.now() - started);
      await sleep(Math.min(left, delay * (0.5 + Math.random())));
      delay = Math.min(500, delay * 1.5);
    }

    const renewal = setInterval(
      () => {
        redis.eval(RENEW, 1, key, ttl, token).then(
          (kept) => {
            if (kept !== 1) log("warn", "host slot expired while held", { host });
          },
          (err: unknown) => log("warn", "host slot renewal failed", { host, error: String(err) }),
        );
      },
      Math.max(50, Math.floor(ttl / 3)),
    );
    renewal.unref();
    renewals.add(renewal);

    let released = false;
    return async () => {
      if (released) return;
      released = true;
      clearInterval(renewal);
      renewals.delete(renewal);
      try {
        await redis.zrem(key, token);
      } catch (err) {
        log("warn", "host slot release failed; it expires by its TTL", { host, error: String(err) });
      }
    };
  }

  return {
    kind: "redis",
    acquireHostSlot,
    async claimJob(jobId, owner, ttlMs) {
      const ttl = Math.max(1, Math.round(ttlMs));
      return (await redis.eval(CLAIM, 1, claimKey(jobId), owner, ownerNode(owner), ttl)) === 1;
    },
    async completeJob(jobId, resultJson, ttlMs) {
      const replies = await redis
        .multi()
        .set(doneKey(jobId), resultJson, "PX", Math.max(1, Math.round(ttlMs)))
        .del(claimKey(jobId))
        .exec();
      const failed = replies?.find(([err]) => err);
      if (!replies || failed) throw failed?.[0] ?? new Error("redis transaction aborted");
    },
    async getCompletedJob(jobId) {
      return redis.get(doneKey(jobId));
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of renewals) clearInterval(t);
      renewals.clear();
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
    },
  };
}
