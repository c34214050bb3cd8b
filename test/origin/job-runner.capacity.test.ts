/**
 * Issue 6, item 9: a node's capacity is split across its shard links instead of being offered whole
 * to every one. The links here are real EdgeLinks that are never started (no edge needed to ask
 * how much room each one states in its hello).
 */
import { describe, expect, it } from "vitest";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { createMetrics } from "../../origin/src/ops/metrics.ts";
import { JobRunner } from "../../origin/src/worker/job-runner.ts";

function runnerWithLinks(capacity: number, shards: number): { runner: JobRunner; links: EdgeLink[] } {
  const runner = new JobRunner({
    capacity,
    metrics: createMetrics(),
    log: () => {},
    deliver: async () => [],
  });
  const links = Array.from({ length: shards }, (_, shard) => {
    const link: EdgeLink = new EdgeLink({
      edgeUrl: "http://127.0.0.1:9",
      token: "t".repeat(32),
      shard,
      nodeId: "node",
      bootId: "boot",
      version: "test",
      freeCapacity: () => runner.roomFor(link),
      onJobs: () => {},
      log: () => {},
    });
    runner.register(link);
    return link;
  });
  return { runner, links };
}

describe("JobRunner capacity across shard links", () => {
  it("gives each of 4 links a quarter of CAPACITY 10 (3, 3, 2, 2), never the whole free room", () => {
    const { runner, links } = runnerWithLinks(10, 4);
    expect(links.map((l) => runner.roomFor(l))).toEqual([3, 3, 2, 2]);
    expect(links.reduce((sum, l) => sum + runner.roomFor(l), 0)).toBe(10);
  });

  it("gives every link at least one job of room when there are more links than capacity", () => {
    const { runner, links } = runnerWithLinks(2, 3);
    expect(links.map((l) => runner.roomFor(l))).toEqual([1, 1, 1]);
  });

  it("gives a single link the whole capacity", () => {
    const { runner, links } = runnerWithLinks(7, 1);
    expect(runner.roomFor(links[0]!)).toBe(7);
  });
});
