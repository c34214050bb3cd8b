import { describe, expect, it } from "vitest";
import {
  createRetrySchedule,
  DEFAULT_RETRY_SCHEDULE,
  MAX_RETRY_STEPS,
  nextRetryDelay,
  parseRetrySchedule,
  RetryScheduleError,
} from "../../shared/delivery/retry-schedule.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;

describe("parseRetrySchedule", () => {
  it("expands Haraka-style entries with repeats", () => {
    expect(parseRetrySchedule("1m, 5m,15m,30m,1h*2,2h*4")).toEqual([
      MIN,
      5 * MIN,
      15 * MIN,
      30 * MIN,
      HOUR,
      HOUR,
      2 * HOUR,
      2 * HOUR,
      2 * HOUR,
      2 * HOUR,
    ]);
  });

  it("reads s, m, h, d and treats a bare number as seconds", () => {
    expect(parseRetrySchedule("30s,2,1d,1.5h")).toEqual([30_000, 2_000, 86_400_000, 1.5 * HOUR]);
  });

  it("treats an empty schedule as no retries", () => {
    expect(parseRetrySchedule("")).toEqual([]);
  });

  it.each(["1x", "m", "1m*", "1m*0", "-1m", "1m,,2m", "1m*2*3"])("rejects %j", (spec) => {
    expect(() => parseRetrySchedule(spec)).toThrow(RetryScheduleError);
  });

  it("refuses absurdly long schedules instead of allocating them", () => {
    expect(() => parseRetrySchedule(`1m*${MAX_RETRY_STEPS + 1}`)).toThrow(/more than/);
    expect(parseRetrySchedule(`1m*${MAX_RETRY_STEPS}`)).toHaveLength(MAX_RETRY_STEPS);
  });
});

describe("nextRetryDelay", () => {
  const intervals = parseRetrySchedule("1m,5m*2");

  it("uses the Nth interval after the Nth failure", () => {
    expect(nextRetryDelay(intervals, 1)).toBe(MIN);
    expect(nextRetryDelay(intervals, 2)).toBe(5 * MIN);
    expect(nextRetryDelay(intervals, 3)).toBe(5 * MIN);
  });

  it("returns null once the schedule is exhausted or the attempt is nonsense", () => {
    expect(nextRetryDelay(intervals, 4)).toBeNull();
    expect(nextRetryDelay(intervals, 0)).toBeNull();
    expect(nextRetryDelay(intervals, 1.5)).toBeNull();
  });
});

describe("the production schedule (DEFAULT_RETRY_SCHEDULE)", () => {
  // The edge's RETRY_SCHEDULE default and wrangler.toml's value are this export (asserted in
  // test/edge/retry-schedule.config.test.ts), so these are the waits deployed mail gets.
  const schedule = createRetrySchedule(DEFAULT_RETRY_SCHEDULE);

  it("waits 1m, 5m, 10m, 30m, then 1h twice, 2h three times and 4h fifteen times", () => {
    expect(schedule.intervals).toEqual([
      MIN,
      5 * MIN,
      10 * MIN,
      30 * MIN,
      ...Array<number>(2).fill(HOUR),
      ...Array<number>(3).fill(2 * HOUR),
      ...Array<number>(15).fill(4 * HOUR),
    ]);
  });

  it("retries 24 times over 68 h 46 min, then the recipient soft-bounces", () => {
    expect(schedule.intervals).toHaveLength(24);
    expect(schedule.totalMs).toBe(68 * HOUR + 46 * MIN);
    expect(schedule.nextRetryDelay(1)).toBe(MIN);
    // The 24th deferral still gets a retry (the last of the 4h steps); the 25th is final.
    expect(schedule.nextRetryDelay(24)).toBe(4 * HOUR);
    expect(schedule.nextRetryDelay(25)).toBeNull();
  });
});
