/**
 * The bounded TTL cache under the isolate caches (edge/src/lib/isolate-cache.ts), with an explicit clock.
 */
import { describe, expect, it } from "vitest";
import { IsolateCache, MISSING } from "../../edge/src/lib/isolate-cache.ts";

describe("IsolateCache", () => {
  it("serves an entry for less than the TTL, then loads again", async () => {
    let now = 1000;
    const cache = new IsolateCache<string, number>(10, 10, () => now);
    let loads = 0;
    const load = async () => ++loads;
    expect(await cache.get("a", 100, load)).toBe(1);
    now += 99;
    expect(await cache.get("a", 100, load)).toBe(1);
    now += 1;
    expect(await cache.get("a", 100, load)).toBe(2);
  });

  it("a flood of unknown keys fills only the negative half, capped, and keeps the known entries", async () => {
    const cache = new IsolateCache<string, string>(3, 5, () => 0);
    for (const k of ["k1", "k2", "k3"]) await cache.get(k, 1000, async () => `v-${k}`);
    for (let i = 0; i < 1000; i++) await cache.get(`unknown-${i}`, 1000, async () => MISSING);
    expect(cache.size).toEqual({ positive: 3, negative: 5 });
    // The newest unknown keys are the ones kept; the known ones are all still served from memory.
    expect(cache.peek("unknown-999", 1000)).toBe(MISSING);
    expect(cache.peek("unknown-0", 1000)).toBeUndefined();
    for (const k of ["k1", "k2", "k3"]) expect(cache.peek(k, 1000)).toBe(`v-${k}`);
  });

  it("evicts the least recently used entry first", async () => {
    const cache = new IsolateCache<string, string>(2, 2, () => 0);
    await cache.get("a", 1000, async () => "A");
    await cache.get("b", 1000, async () => "B");
    expect(cache.peek("a", 1000)).toBe("A"); // a is now the most recent
    await cache.get("c", 1000, async () => "C");
    expect(cache.peek("b", 1000)).toBeUndefined();
    expect(cache.peek("a", 1000)).toBe("A");
  });

  it("concurrent misses share one load", async () => {
    const cache = new IsolateCache<string, number>(10, 10, () => 0);
    let loads = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const load = async () => {
      loads++;
      await gate;
      return 7;
    };
    const all = Promise.all([
      cache.get("a", 1000, load),
      cache.get("a", 1000, load),
      cache.get("a", 1000, load),
    ]);
    release();
    expect(await all).toEqual([7, 7, 7]);
    expect(loads).toBe(1);
  });

  it("a delete while a load is in flight keeps that load's (possibly older) answer out of the cache", async () => {
    const cache = new IsolateCache<string, string>(10, 10, () => 0);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const inflight = cache.get("a", 1000, async () => {
      await gate;
      return "before the change";
    });
    cache.delete("a");
    release();
    expect(await inflight).toBe("before the change");
    expect(cache.peek("a", 1000)).toBeUndefined();
    expect(await cache.get("a", 1000, async () => "after")).toBe("after");
  });

  it("a failed load is not cached", async () => {
    const cache = new IsolateCache<string, string>(10, 10, () => 0);
    await expect(cache.get("a", 1000, async () => Promise.reject(new Error("D1 down")))).rejects.toThrow(
      "D1 down",
    );
    expect(await cache.get("a", 1000, async () => "ok")).toBe("ok");
  });

  it("getMany loads all misses in one call and caches absent keys as MISSING", async () => {
    const cache = new IsolateCache<string, string>(10, 10, () => 0);
    const calls: string[][] = [];
    const loadMissing = async (missing: string[]) => {
      calls.push(missing);
      return new Map(missing.filter((k) => k !== "nope").map((k) => [k, k.toUpperCase()]));
    };
    const first = await cache.getMany(["a", "b", "nope"], 1000, loadMissing);
    expect([...first]).toEqual([
      ["a", "A"],
      ["b", "B"],
      ["nope", MISSING],
    ]);
    await cache.getMany(["a", "nope", "c"], 1000, loadMissing);
    expect(calls).toEqual([["a", "b", "nope"], ["c"]]);
  });

  it("a TTL of 0 always loads and caches nothing", async () => {
    const cache = new IsolateCache<string, number>(10, 10, () => 0);
    let loads = 0;
    await cache.get("a", 0, async () => ++loads);
    await cache.get("a", 0, async () => ++loads);
    expect(loads).toBe(2);
    expect(cache.size).toEqual({ positive: 0, negative: 0 });
  });
});
