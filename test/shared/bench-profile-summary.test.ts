/**
 * The benchmarks' CPU profile summary (test/bench/lib/cpuprofile.ts): a long gap between two
 * samples is a wait, not the time of the frame sampled before it.
 */
import { describe, expect, it } from "vitest";
import { samplingIntervalUs, summarizeProfile, type CpuProfile } from "../bench/lib/cpuprofile.ts";

const frame = (functionName: string, url = "file:///repo/edge/src/objects/hub.ts") => ({
  functionName,
  url,
  lineNumber: 0,
  columnNumber: 0,
  scriptId: "1",
});

/** root → dispatch, root → flush, root → (idle); samples every 1 ms, then one 3 s wait after `flush`. */
function profileWithWait(): CpuProfile {
  const samples: number[] = [];
  const timeDeltas: number[] = [];
  const sample = (id: number, dtUs: number) => {
    samples.push(id);
    timeDeltas.push(dtUs);
  };
  for (let i = 0; i < 60; i++) sample(2, 1000); // dispatch: 60 ms
  for (let i = 0; i < 20; i++) sample(3, 1000); // flush: 20 ms
  for (let i = 0; i < 10; i++) sample(4, 1000); // (idle): 10 ms
  sample(3, 1000); // flush, then nothing sampled for 3 s
  sample(2, 3_000_000);
  sample(2, 1000);
  return {
    nodes: [
      { id: 1, callFrame: frame("(root)", ""), children: [2, 3, 4] },
      { id: 2, callFrame: frame("dispatch") },
      { id: 3, callFrame: frame("flush") },
      { id: 4, callFrame: frame("(idle)", "") },
    ],
    startTime: 0,
    endTime: 3_094_000,
    samples,
    timeDeltas,
  } as CpuProfile;
}

describe("summarizeProfile", () => {
  it("takes the median gap as the sampling interval", () => {
    expect(samplingIntervalUs([0, 1000, 900, 3_000_000])).toBe(1000);
    expect(samplingIntervalUs([])).toBe(0);
  });

  it("charges a frame at most four sampling intervals of a gap and counts the rest as idle", () => {
    const s = summarizeProfile(profileWithWait());
    const flush = s.topFunctions.find((f) => f.name === "flush");
    const dispatch = s.topFunctions.find((f) => f.name === "dispatch");
    // flush: 20 samples of 1 ms + the one before the wait, capped at 4 ms (not 3,000 ms).
    expect(flush?.selfMs).toBe(24);
    expect(dispatch?.selfMs).toBe(61);
    expect(s.gapMs).toBe(2996);
    // Busy time is what the frames were charged; the wait is idle with the (idle) samples.
    expect(flush!.selfPct).toBeCloseTo((24 / 85) * 100, 0);
    expect(s.idlePct).toBeGreaterThan(96);
  });

  it("charges every gap when the samples are evenly spaced", () => {
    const even = profileWithWait();
    even.timeDeltas = even.timeDeltas!.map(() => 1000);
    const s = summarizeProfile(even);
    expect(s.gapMs).toBe(0);
    expect(s.topFunctions.find((f) => f.name === "flush")?.selfMs).toBe(21);
  });
});
