import { describe, expect, it } from "vitest";
import { utf8ByteLength } from "../../shared/utf8.ts";

/** What the byte limits are defined by: the length of TextEncoder's output. */
const encoded = (s: string) => new TextEncoder().encode(s).byteLength;

/** A deterministic generator, so a failure names a reproducible string. */
function rng(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

/** Units of every UTF-8 width, surrogate pairs, and lone halves of pairs. */
function randomString(next: () => number, length: number): string {
  const units: number[] = [];
  while (units.length < length) {
    const r = next();
    if (r < 0.4) units.push(0x20 + Math.floor(next() * 0x5f));
    else if (r < 0.55) units.push(0x80 + Math.floor(next() * 0x780));
    else if (r < 0.7) units.push(0x800 + Math.floor(next() * 0xd000));
    else if (r < 0.85) units.push(0xd800 + Math.floor(next() * 0x400), 0xdc00 + Math.floor(next() * 0x400));
    else if (r < 0.93) units.push(0xd800 + Math.floor(next() * 0x400));
    else units.push(0xdc00 + Math.floor(next() * 0x400));
  }
  return String.fromCharCode(...units.slice(0, length));
}

describe("utf8ByteLength", () => {
  it("counts what TextEncoder writes, for every kind of unit at lengths on both sides of the short and chunk paths", () => {
    const next = rng(7);
    const lengths = [0, 1, 2, 31, 32, 33, 100, 4_000, 16_383, 16_384, 16_385, 40_000, 100_003];
    for (const length of lengths) {
      for (let k = 0; k < 4; k++) {
        const s = randomString(next, length);
        expect(utf8ByteLength(s), `length ${length}, sample ${k}`).toBe(encoded(s));
      }
    }
  });

  it("does not split a surrogate pair that straddles a chunk boundary", () => {
    // "😀" is U+D83D U+DE00: put its high half as the last unit of the first 16,384-unit chunk.
    for (const before of [16_383, 32_767, 16_382]) {
      const s = "a".repeat(before) + "😀" + "b".repeat(20_000);
      expect(utf8ByteLength(s)).toBe(encoded(s));
      expect(utf8ByteLength(s)).toBe(before + 4 + 20_000);
    }
  });

  it("counts a lone surrogate as U+FFFD (3 bytes), at the end of a chunk and of the string", () => {
    const lone = String.fromCharCode(0xd83d);
    expect(utf8ByteLength(lone)).toBe(3);
    expect(utf8ByteLength("x".repeat(16_383) + lone)).toBe(16_386);
    expect(utf8ByteLength("x".repeat(16_383) + lone + "y".repeat(10))).toBe(16_396);
    expect(utf8ByteLength(String.fromCharCode(0xde00) + "z".repeat(40))).toBe(43);
  });

  it("counts ASCII, 2-, 3- and 4-byte characters at their widths", () => {
    expect(utf8ByteLength("reader@example.net")).toBe(18);
    expect(utf8ByteLength("Grüße")).toBe(7);
    expect(utf8ByteLength("你好".repeat(20))).toBe(120);
    expect(utf8ByteLength("😀".repeat(50))).toBe(200);
  });
});
