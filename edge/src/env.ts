/**
 * Bindings and configuration. Vars and secrets are zod-parsed once per isolate at the entry point
 * (a misconfigured deployment answers 500 with the list of bad settings instead of failing later);
 * code below receives the typed `Config`, never raw `env.X` strings.
 */
import { z } from "zod";
import { DEFAULT_RETRY_SCHEDULE, parseRetrySchedule } from "../../shared/delivery/retry-schedule.ts";
import type { OriginHub } from "./objects/origin-hub.ts";
import type { RateLimiter } from "./objects/rate-limiter.ts";

export interface Bindings {
  DB: D1Database;
  BLOBS: R2Bucket;
  ORIGIN_HUB: DurableObjectNamespace<OriginHub>;
  RATE_LIMITER: DurableObjectNamespace<RateLimiter>;
  [key: string]: unknown;
}

const secret = (name: string) =>
  z
    .string({ error: `${name} is not set (wrangler secret put ${name}, or .dev.vars locally)` })
    .min(32, `${name} must be at least 32 characters`);

// Vars arrive as strings; a missing one takes the default.
const intFromString = (def: string) => z.coerce.number().int().positive().default(Number(def));

export const ConfigSchema = z.object({
  ORIGIN_TOKEN: secret("ORIGIN_TOKEN"),
  ADMIN_TOKEN: secret("ADMIN_TOKEN"),
  SECRETS_KEY: z.string({ error: "SECRETS_KEY is not set (base64 of 32 random bytes)" }).refine((v) => {
    try {
      return atob(v).length === 32;
    } catch {
      return false;
    }
  }, "SECRETS_KEY must be base64 of exactly 32 bytes"),
  TRACKING_SECRET: secret("TRACKING_SECRET"),
  DNS_RESOLVER_URL: z.url().default("https://cloudflare-dns.com/dns-query"),
  MAIL_SEND_RATE_LIMIT: intFromString("10000"),
  RETRY_SCHEDULE: z
    .string()
    .default(DEFAULT_RETRY_SCHEDULE)
    .refine((v) => {
      try {
        parseRetrySchedule(v);
        return true;
      } catch {
        return false;
      }
    }, "RETRY_SCHEDULE must look like 1m,5m,1h*3"),
  LINK_LEASE_MS: intFromString("300000"),
  HUB_SHARDS: intFromString("1"),
  MAX_QUEUE_AGE_MS: intFromString(String(72 * 3600 * 1000)),
  DEV_MODE: z
    .enum(["true", "false"])
    .default("false")
    .transform((v) => v === "true"),
});

export type Config = z.infer<typeof ConfigSchema>;

const cache = new WeakMap<object, Config>();

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

export function loadConfig(env: Bindings): ConfigResult {
  const hit = cache.get(env);
  if (hit) return { ok: true, config: hit };
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) {
    return { ok: false, problems: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) };
  }
  cache.set(env, parsed.data);
  return { ok: true, config: parsed.data };
}
