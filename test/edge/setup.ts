/**
 * Runs before every edge test file: applies the D1 migrations handed in by vitest.config.ts as the
 * test-only TEST_MIGRATIONS binding. applyD1Migrations records what it applied in `d1_migrations`,
 * so running it again for the next file (or against storage another file already migrated) is a no-op.
 */
import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
