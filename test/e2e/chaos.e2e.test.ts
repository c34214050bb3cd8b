/**
 * Chaos at the size `npm test` affords (the 1,000-message run is `npm run bench -- --only=chaos`):
 * N = CHAOS_N (default 300) messages through the real edge (the Worker bundle in workerd) to a slow
 * SMTP sink, with `kill -9` of the origin process mid-run and a restart under the same NODE_ID; then
 * the same with the origin on Redis and Redis killed mid-run too (test/bench/chaos.ts runs both).
 *
 * Asserted: every accepted message ends delivered, the sink accepted each one, nothing unknown
 * arrived; no message the killed process had journaled as delivered (its outcome journal, read right
 * after the kill: what it knew) reaches the sink twice; the other duplicates (a 250 the process never
 * read, counted and printed with the sink's timestamps) stay within the jobs it held; and the drain
 * after the restart is well under the lease, which only the edge's boot-id re-dispatch makes possible
 * (docs/link-protocol.md).
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";
import {
  chaosProblems,
  runChaos,
  startChaosStack,
  summaryLine,
  type ChaosResult,
  type ChaosStack,
} from "../bench/chaos.ts";

const N = Number(process.env.CHAOS_N ?? 300);
// 5 SMTP sessions (MAX_CONNECTIONS_PER_HOST's default) × one message per 100 ms: slower than the
// hub feeds the origin, so the origin holds its whole CAPACITY (100 jobs) when it is killed.
const DATA_DELAY_MS = 100;

let workDir: string;
let stack: ChaosStack;

beforeAll(async () => {
  fs.mkdirSync(path.join(REPO_ROOT, ".tmp"), { recursive: true });
  workDir = fs.mkdtempSync(path.join(REPO_ROOT, ".tmp", "e2e-chaos-"));
  stack = await startChaosStack(workDir);
});

afterAll(async () => {
  await stack?.stop();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

function check(r: ChaosResult): void {
  console.log(summaryLine(r));
  expect(chaosProblems(r)).toEqual([]);
  expect(r.duplicatesJournaled).toBe(0);
  // The parts of the scenario that must have happened for the run to mean anything.
  expect(r.inFlightAtKill).toBeGreaterThan(0);
  expect(r.sinkAcceptedAtKill).toBeLessThan(r.accepted);
  expect(r.redispatched).toBeGreaterThan(0);
}

describe("chaos", () => {
  it(`kill -9 of the origin mid-run (${N} messages): every accepted message delivered, none lost`, async () => {
    check(
      await runChaos(stack, { messages: N, redis: false, dataDelayMs: DATA_DELAY_MS, timeoutMs: 60_000 }),
    );
  }, 90_000);

  it(`the same with Redis, and Redis killed mid-run too (${N} messages): none lost`, async () => {
    const r = await runChaos(stack, {
      messages: N,
      redis: true,
      dataDelayMs: DATA_DELAY_MS,
      // HOST_SLOT_TTL_MS stays at its default (60 s): the successor frees the killed process's
      // per-host slots in Redis at once, so the drain bound below also proves that.
      timeoutMs: 60_000,
    });
    check(r);
    expect(r.sinkAcceptedAtRedisKill).toBeLessThan(r.accepted);
  }, 90_000);
});
