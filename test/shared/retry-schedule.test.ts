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

describe("createRetrySchedule", () => {
  it("default schedule has 22 retries over about 59 hours", () => {
    const schedule = createRetrySchedule(DEFAULT_RETRY_SCHEDULE);
    expect(schedule.intervals).toHaveLength(4 + 2 + 4 + 12);
    expect(schedule.totalMs).toBe(51 * MIN + 2 * HOUR + 8 * HOUR + 48 * HOUR);
    expect(schedule.nextRetryDelay(22)).toBe(4 * HOUR);
    expect(schedule.nextRetryDelay(23)).toBeNull();
  });
});
