// The throttle and warm-up settings (docs/configuration.md): their defaults, the spec formats, and bad
// values refused at start-up with the reason, as loadOriginConfig reports every other setting.
import { describe, expect, it } from "vitest";
import { RecipientOutcomeSchema } from "../../shared/link/protocol.ts";
import { describeConfig, loadOriginConfig } from "../../origin/src/config.ts";
import { createMemoryCoordinator } from "../../origin/src/coord/index.ts";
import {
  createThrottle,
  createThrottlePolicy,
  MAX_RETRY_AFTER_MS,
  destinationKey,
  isPushback,
  pushbackKind,
  parseRate,
} from "../../origin/src/delivery/throttle.ts";
import { parseWarmupSchedule, parseWarmupStart } from "../../origin/src/delivery/warmup.ts";

const base = {
  ORIGIN_TOKEN: "t".repeat(32),
  VERP_SECRET: "v".repeat(32),
  EDGE_URL: "https://edge.example.com",
};

describe("throttle and warm-up settings", () => {
  it("defaults: the big providers limited, everyone else 20 connections and no rate, warm-up off", () => {
    const c = loadOriginConfig(base);
    expect(c).toMatchObject({
      THROTTLE_MAX_WAIT_MS: 30_000,
      THROTTLE_BACKOFF_MS: 60_000,
      THROTTLE_BACKOFF_MAX_MS: 3_600_000,
      THROTTLE_BACKOFF_DECAY_MS: 600_000,
      THROTTLE_PUSHBACK_AFTER: 3,
    });
    expect(c.THROTTLE_RATES).toBeUndefined();
    expect(c.WARMUP_SCHEDULE).toBeUndefined();
    const p = createThrottlePolicy();
    expect(p.limitsFor("gmail.com")).toEqual({ rate: 20, intervalMs: 1_000, concurrency: 20 });
    expect(p.limitsFor(destinationKey("hotmail.com"))).toEqual({
      rate: 10,
      intervalMs: 1_000,
      concurrency: 10,
    });
    expect(p.limitsFor(destinationKey("AOL.com"))).toEqual({ rate: 10, intervalMs: 1_000, concurrency: 10 });
    expect(p.limitsFor(destinationKey("me.com"))).toEqual({ rate: 5, intervalMs: 1_000, concurrency: 5 });
    expect(p.limitsFor("example.org")).toEqual({ rate: null, intervalMs: 1_000, concurrency: 20 });
    for (const key of ["THROTTLE_RATES", "THROTTLE_CONCURRENCY", "WARMUP_SCHEDULE", "WARMUP_START"]) {
      expect(describeConfig()).toMatch(new RegExp(`^  ${key} +\\S`, "m"));
    }
  });

  it("settings override the defaults per domain, `*` for the rest; an alias domain sets its provider's bucket", () => {
    const p = createThrottlePolicy({
      rates: "googlemail.com=600/1m, example.org=5/s, *=100/1h",
      concurrency: "*=3",
    });
    expect(p.limitsFor("gmail.com")).toEqual({ rate: 600, intervalMs: 60_000, concurrency: 20 });
    expect(p.limitsFor("example.org")).toEqual({ rate: 5, intervalMs: 1_000, concurrency: 3 });
    expect(p.limitsFor("other.net")).toEqual({ rate: 100, intervalMs: 3_600_000, concurrency: 3 });
    expect(createThrottlePolicy({ rates: "gmail.com=none" }).limitsFor("gmail.com").rate).toBeNull();
    expect(parseRate("1/300ms")).toEqual({ rate: 1, intervalMs: 300 });
  });

  it.each([
    ["THROTTLE_RATES", "gmail.com=fast", /THROTTLE_RATES: invalid rate "fast"/],
    ["THROTTLE_RATES", "gmail.com", /THROTTLE_RATES: invalid rate entry "gmail.com"/],
    ["THROTTLE_CONCURRENCY", "gmail.com=0", /THROTTLE_CONCURRENCY: invalid concurrency "gmail.com=0"/],
    ["WARMUP_SCHEDULE", "50,lots", /WARMUP_SCHEDULE: invalid warm-up schedule entry "lots"/],
    [
      "WARMUP_START",
      "example.com=12/01/2026",
      /WARMUP_START: invalid warm-up start "example.com=12\/01\/2026"/,
    ],
  ])("%s=%s is refused with the reason", (key, value, message) => {
    expect(() => loadOriginConfig({ ...base, [key]: value })).toThrow(message);
  });

  it("warm-up specs: repeats expand, start dates are UTC days", () => {
    expect(parseWarmupSchedule("50, 100, 200*3")).toEqual([50, 100, 200, 200, 200]);
    expect(parseWarmupSchedule("")).toEqual([]);
    expect(parseWarmupStart("Example.com=2026-12-01,*=2026-11-30")).toEqual(
      new Map([
        ["example.com", Date.UTC(2026, 11, 1)],
        ["*", Date.UTC(2026, 10, 30)],
      ]),
    );
  });

  it("pushback is a 421 anywhere or a 4xx for every recipient; timeouts and partial refusals are not", () => {
    const d = (smtpCode?: number) => ({
      recipient: "a@x.test",
      status: "deferred" as const,
      response: "x",
      ...(smtpCode ? { smtpCode } : {}),
    });
    const ok = { recipient: "b@x.test", status: "delivered" as const, response: "250", smtpCode: 250 };
    expect(isPushback([d(421), ok])).toBe(true);
    expect(isPushback([d(451), d(450)])).toBe(true);
    expect(isPushback([d(451), ok])).toBe(false);
    expect(isPushback([d()])).toBe(false);
    // A 421 is pushback at once; an all-4xx transaction only once it repeats (pushbackAfter).
    expect(pushbackKind([d(421), ok])).toBe("421");
    expect(pushbackKind([d(451), d(450)])).toBe("tempfail");
    expect(pushbackKind([d(451), ok])).toBeNull();
    expect(createThrottlePolicy().pushbackAfter).toBe(3);
  });
});

describe("retryAfterMs stays inside the link schema", () => {
  it("a very slow rate defers with at most MAX_RETRY_AFTER_MS, which RecipientOutcomeSchema accepts", async () => {
    const coordinator = createMemoryCoordinator();
    const throttle = createThrottle({
      coordinator,
      policy: createThrottlePolicy({ rates: "slow.test=1/30d" }),
    });
    const first = await throttle.enter("slow.test", ["a@slow.test"]);
    expect(first.ok).toBe(true);
    if (first.ok) await first.release();
    const second = await throttle.enter("slow.test", ["b@slow.test"]);
    expect(second.ok).toBe(false);
    if (second.ok) return;
    expect(second.outcomes[0]!.retryAfterMs).toBe(MAX_RETRY_AFTER_MS);
    expect(RecipientOutcomeSchema.safeParse(second.outcomes[0]).success).toBe(true);
    await coordinator.close();
  });
});
