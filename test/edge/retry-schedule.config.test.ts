/**
 * The retry schedule production runs with: wrangler.toml's RETRY_SCHEDULE var (the bindings this
 * suite gets come from wrangler.toml) and the edge's config default are both the one exported
 * DEFAULT_RETRY_SCHEDULE, whose steps test/shared/retry-schedule.test.ts spells out.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createRetrySchedule, DEFAULT_RETRY_SCHEDULE } from "../../shared/delivery/retry-schedule.ts";
import { ConfigSchema } from "../../edge/src/env.ts";

const secrets = {
  ORIGIN_TOKEN: env.ORIGIN_TOKEN,
  ADMIN_TOKEN: env.ADMIN_TOKEN,
  SECRETS_KEY: env.SECRETS_KEY,
  TRACKING_SECRET: env.TRACKING_SECRET,
};

describe("RETRY_SCHEDULE in production", () => {
  it("is the exported default, both as the config default and as wrangler.toml's value", () => {
    expect(ConfigSchema.parse(secrets).RETRY_SCHEDULE).toBe(DEFAULT_RETRY_SCHEDULE);
    expect(env.RETRY_SCHEDULE).toBe(DEFAULT_RETRY_SCHEDULE);
  });

  it("ends its last retry before the default maximum queue age expires the message", () => {
    const config = ConfigSchema.parse(secrets);
    expect(createRetrySchedule(config.RETRY_SCHEDULE).totalMs).toBeLessThan(config.MAX_QUEUE_AGE_MS);
  });
});
