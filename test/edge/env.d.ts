/**
 * Types of the bindings the edge tests see: the Worker's own (edge/src/env.ts `Bindings`) plus the
 * secrets and the TEST_MIGRATIONS binding that vitest.config.ts defines for tests only.
 * vitest-pool-workers 0.23 types `env` (from "cloudflare:test" and "cloudflare:workers") as `Cloudflare.Env`.
 */
import type { D1Migration } from "cloudflare:test";
import type { Bindings } from "../../edge/src/env.ts";

interface TestBindings extends Bindings {
  TEST_MIGRATIONS: D1Migration[];
  ORIGIN_TOKEN: string;
  ADMIN_TOKEN: string;
  SECRETS_KEY: string;
  TRACKING_SECRET: string;
  MAIL_SEND_RATE_LIMIT: string;
  RETRY_SCHEDULE: string;
  LINK_LEASE_MS: string;
  HUB_SHARDS: string;
  DEV_MODE: string;
  /** A DoH resolver that never answers (vitest.config.ts). */
  SILENT_DOH: Fetcher;
  /** A D1 database without tables (vitest.config.ts). */
  UNMIGRATED_DB: D1Database;
}

declare global {
  namespace Cloudflare {
    interface Env extends TestBindings {}
  }
}

declare module "cloudflare:test" {
  // Older vitest-pool-workers versions type `env` through ProvidedEnv; kept so either works.
  interface ProvidedEnv extends TestBindings {}
}
