/**
 * Retry schedules as data (Haraka `outbound/config.js` style): "1m,5m,15m,30m,1h*2,2h*4,4h*12".
 * Each entry is a duration with an optional `*N` repeat. The edge hub owns retries, the origin
 * only reports deferrals, so this lives in shared/ and stays pure (no node:*, no clock).
 *
 * Attempts count failures: after the Nth temporary failure the next try waits intervals[N-1];
 * past the end of the list the message has run out of retries and bounces (soft).
 */

/** Units Haraka accepts; a bare number is seconds. */
const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A schedule longer than this is a typo ("1m*100000"), not a plan; refuse it instead of allocating it. */
export const MAX_RETRY_STEPS = 1_000;

const ENTRY = /^(\d+(?:\.\d+)?)\s*([smhd]?)\s*(?:\*\s*(\d+))?$/i;

export class RetryScheduleError extends Error {
  override name = "RetryScheduleError";
}

/** Parses a schedule string into delays in milliseconds. Throws RetryScheduleError on bad syntax. */
export function parseRetrySchedule(spec: string): number[] {
  const intervals: number[] = [];
  const entries = spec.split(",").map((entry) => entry.trim());
  if (entries.length === 1 && entries[0] === "") return intervals; // "" means: never retry
  for (const entry of entries) {
    const match = ENTRY.exec(entry);
    if (!match) throw new RetryScheduleError(`invalid retry schedule entry "${entry}"`);
    const [, amount = "", unit = "", times] = match;
    const ms = Math.round(Number(amount) * (UNIT_MS[unit.toLowerCase()] ?? 1_000));
    const repeat = times === undefined ? 1 : Number(times);
    if (repeat < 1) throw new RetryScheduleError(`repeat count must be at least 1 in "${entry}"`);
    if (intervals.length + repeat > MAX_RETRY_STEPS) {
      throw new RetryScheduleError(`retry schedule has more than ${MAX_RETRY_STEPS} steps`);
    }
    for (let i = 0; i < repeat; i++) intervals.push(ms);
  }
  return intervals;
}

/**
 * Delay before the next try after `attempt` failed tries (1-based), or null when the schedule is
 * exhausted and the recipient should bounce.
 */
export function nextRetryDelay(intervals: readonly number[], attempt: number): number | null {
  if (!Number.isInteger(attempt) || attempt < 1) return null;
  return intervals[attempt - 1] ?? null;
}

export interface RetrySchedule {
  readonly intervals: readonly number[];
  /** Total time from the first failure to the last retry, useful for "gives up after" messages. */
  readonly totalMs: number;
  nextRetryDelay(attempt: number): number | null;
}

export function createRetrySchedule(spec: string): RetrySchedule {
  const intervals = Object.freeze(parseRetrySchedule(spec));
  return {
    intervals,
    totalMs: intervals.reduce((sum, ms) => sum + ms, 0),
    nextRetryDelay: (attempt) => nextRetryDelay(intervals, attempt),
  };
}

/**
 * The production schedule: the edge's `RETRY_SCHEDULE` default (edge/src/env.ts) and the value
 * wrangler.toml deploys. 24 retries over 68 h 46 min after the first failure, so the last one is due
 * before the 72 h maximum queue age (`MAX_QUEUE_AGE_MS`) ends the message.
 */
export const DEFAULT_RETRY_SCHEDULE = "1m,5m,10m,30m,1h*2,2h*3,4h*15";
