import { availableParallelism } from "node:os";
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// Three projects, one per runtime:
//  - edge: runs inside workerd with real D1 / Durable Object / R2 bindings from wrangler.toml;
//    migrations are handed in as a test-only binding and applied in test/edge/setup.ts.
//  - node: origin and shared code under plain Node, against real servers on loopback.
//  - e2e: wrangler dev + origin + loopback DNS/SMTP as real processes; one file at a time
//    because each file boots its own stack and the machine has two cores.
// edge and node run together, two files at a time at least: vitest's default (cores − 1) is one
// file at a time on a 2-core machine, where most of a file's time is spent waiting on workerd,
// servers and timers (docs/testing.md#running-time). e2e runs after them (sequence.groupOrder),
// alone, so its stacks never share the cores with other suites.
export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  const workers = Number(process.env.VITEST_MAX_WORKERS) || Math.max(2, availableParallelism() - 1);
  return {
    test: {
      maxWorkers: workers,
      projects: [
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  TEST_MIGRATIONS: migrations,
                  ORIGIN_TOKEN: "test-origin-token-0123456789abcdef",
                  SECRETS_KEY: "dGVzdC1zZWNyZXRzLWtleS0wMTIzNDU2Nzg5YWJjZGU=",
                  ADMIN_TOKEN: "test-admin-token-0123456789abcdef",
                  TRACKING_SECRET: "test-tracking-secret-0123456789abcdef",
                },
                // A DNS-over-HTTPS resolver that never answers (test/edge/dns-check.timeout.test.ts).
                // It waits on a timer rather than an unresolvable promise, which workerd would
                // detect as a hung request and cancel with an error instead of hanging.
                serviceBindings: { SILENT_DOH: "silent-doh" },
                // A real D1 database that is never migrated: queries on it fail like an outage
                // (test/edge/config.coverage.test.ts, the cron sweeper's error path).
                d1Databases: { UNMIGRATED_DB: "unmigrated" },
                workers: [
                  {
                    name: "silent-doh",
                    modules: true,
                    compatibilityDate: "2026-08-01",
                    script:
                      "export default { async fetch() { await new Promise((r) => setTimeout(r, 120000)); return new Response('{}'); } };",
                  },
                ],
              },
            }),
          ],
          test: {
            name: "edge",
            include: ["test/edge/**/*.test.ts"],
            setupFiles: ["test/edge/setup.ts"],
            // Vitest's 5 s default is too short for a workerd test on a loaded 2-core machine (a hub
            // alarm run can take seconds there); a test that hangs still fails.
            testTimeout: 30_000,
          },
        },
        {
          test: {
            name: "node",
            include: ["test/origin/**/*.test.ts", "test/shared/**/*.test.ts"],
            environment: "node",
            testTimeout: 20_000,
          },
        },
        {
          test: {
            name: "e2e",
            include: ["test/e2e/**/*.test.ts"],
            environment: "node",
            testTimeout: 90_000,
            hookTimeout: 120_000,
            fileParallelism: false,
            sequence: { groupOrder: 1 },
          },
        },
      ],
    },
  };
});
