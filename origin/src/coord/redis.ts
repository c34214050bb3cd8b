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
 *  - `rate:<dest>`       the GCRA theoretical arrival time of a destination's token bucket (ms, as a
 *                        decimal string); expires once the bucket is full again.
 *  - `backoff:<dest>`    hash {level, until}; expires once the level has decayed to 0.
 *  - `warmup:<key>:<day>` recipients counted for a warm-up key on a UTC day; kept two days.
 *  The per-domain connection limit is `slots:domain:<domain>` (coordinator.ts, domainSlotKey).
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
  MAX_BACKOFF_LEVEL,
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

// Server time in ms, as the scripts above.
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS[1] rate key. ARGV: cost, emissionMs, burst, maxWaitMs. The GCRA step of coordinator.ts `gcra`.
// Returns {1, waitMs} when the tokens were reserved, {0, retryAfterMs} when they were not.
const RATE = `${NOW}
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost, T, burst, maxWait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local base = math.max(tat, now)
local nxt = base + cost * T
local at = math.max(now, base + (math.min(cost, burst) - burst) * T)
if at - now > maxWait then return {0, math.ceil(at - now)} end
redis.call('SET', KEYS[1], string.format('%.3f', nxt), 'PX', math.max(1, math.ceil(nxt - now)))
return {1, math.ceil(at - now)}
`;

// KEYS[1] backoff hash. The effective level at `now` (coordinator.ts effectiveBackoff); sets
// level, pausedMs. ARGV[1] decayMs.
const BACKOFF_NOW = `${NOW}
local held = redis.call('HMGET', KEYS[1], 'level', 'until')
local level, untl, paused = 0, 0, 0
if held[1] then
  level, untl = tonumber(held[1]), tonumber(held[2])
  if now < untl then
    paused = untl - now
  else
    level = math.max(0, level - math.floor((now - untl) / math.max(1, tonumber(ARGV[1]))))
  end
end
`;

const BACKOFF_STATE = `${BACKOFF_NOW}
return {level, paused}
`;

// ARGV: decayMs, baseMs, maxMs, maxLevel. coordinator.ts `pushback`: no change while paused.
const PUSHBACK = `${BACKOFF_NOW}
if paused > 0 then return {level, paused} end
level = math.min(tonumber(ARGV[4]), level + 1)
local pause = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (level - 1))
redis.call('HSET', KEYS[1], 'level', level, 'until', now + pause)
redis.call('PEXPIRE', KEYS[1], math.ceil(pause + tonumber(ARGV[1]) * level))
return {level, math.ceil(pause)}
`;

// KEYS[1] warm-up day counter. ARGV: requested, allowance, ttlMs. Returns {granted, used}.
const WARMUP = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local granted = math.max(0, math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used))
if granted > 0 then
  used = redis.call('INCRBY', KEYS[1], granted)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {granted, used}
`;
/** A warm-up day counter outlives its day, for a node whose clock is a little behind. */
const WARMUP_TTL_MS = 2 * 86_400_000;

const pair = (reply: unknown): [number, number] => {
  const [a, b] = reply as [number, number];
  return [Number(a), Number(b)];
};

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
  const rateKey = (dest: string) => `${prefix}rate:${dest}`;
  const backoffKey = (dest: string) => `${prefix}backoff:${dest}`;
  const warmupKey = (key: string, day: string) => `${prefix}warmup:${key}:${day}`;

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
    async takeRateTokens(dest, r) {
      const [ok, ms] = pair(
        await redis.eval(RATE, 1, rateKey(dest), r.cost, r.emissionMs, r.burst, Math.max(0, r.maxWaitMs)),
      );
      return ok === 1 ? { granted: true, waitMs: ms } : { granted: false, retryAfterMs: ms };
    },
    async backoffState(dest, p) {
      const [level, pausedForMs] = pair(await redis.eval(BACKOFF_STATE, 1, backoffKey(dest), p.decayMs));
      return { level, pausedForMs };
    },
    async reportPushback(dest, p) {
      const [level, pausedForMs] = pair(
        await redis.eval(PUSHBACK, 1, backoffKey(dest), p.decayMs, p.baseMs, p.maxMs, MAX_BACKOFF_LEVEL),
      );
      return { level, pausedForMs };
    },
    async takeWarmup(key, day, requested, allowance) {
      const [granted, used] = pair(
        await redis.eval(WARMUP, 1, warmupKey(key, day), requested, Math.max(0, allowance), WARMUP_TTL_MS),
      );
      return { granted, used };
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
