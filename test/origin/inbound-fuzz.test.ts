/**
 * Seeded fuzz of the inbound path: mutated fixture messages (truncated, lines dropped or duplicated,
 * bytes flipped, blank lines inserted) either fail to parse with InboundParseError or classify
 * without throwing, with every result well-formed. A throw in the server would answer 451 and make
 * the sending MTA retry the same broken report for days.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { classifyInbound } from "../../origin/src/inbound/classify.ts";
import { toInboundEvents } from "../../origin/src/inbound/events.ts";
import { InboundParseError, parseInbound } from "../../origin/src/inbound/parse.ts";
import { BOUNCE_REASONS } from "../../origin/src/inbound/reasons.ts";
import { InboundEventSchema } from "../../shared/link/protocol.ts";

const dir = path.resolve(import.meta.dirname, "../fixtures/inbound");
const corpus = readdirSync(dir)
  .filter((f) => f.endsWith(".eml"))
  .sort()
  .map((f) => readFileSync(path.join(dir, f), "latin1"));

function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(text: string, rnd: () => number): string {
  let lines = text.split("\r\n");
  const steps = 1 + Math.floor(rnd() * 4);
  for (let s = 0; s < steps; s++) {
    const i = Math.floor(rnd() * lines.length);
    switch (Math.floor(rnd() * 6)) {
      case 0:
        lines = lines.slice(0, i);
        break;
      case 1:
        lines.splice(i, 1 + Math.floor(rnd() * 5));
        break;
      case 2:
        lines.splice(i, 0, ...lines.slice(i, i + 3));
        break;
      case 3:
        lines.splice(i, 0, "");
        break;
      case 4: {
        const l = lines[i] ?? "";
        const at = Math.floor(rnd() * (l.length + 1));
        lines[i] = l.slice(0, at) + String.fromCharCode(Math.floor(rnd() * 256)) + l.slice(at + 1);
        break;
      }
      default:
        lines[i] = (lines[i] ?? "").toUpperCase();
    }
  }
  return lines.join("\r\n");
}

describe("inbound fuzz", () => {
  it("never throws on mutated reports, and every result is well-formed", async () => {
    const rnd = mulberry32(9);
    const started = Date.now();
    let classified = 0;
    let refused = 0;
    for (let n = 0; n < 3_000 && Date.now() - started < 30_000; n++) {
      const raw = Buffer.from(mutate(corpus[n % corpus.length]!, rnd), "latin1");
      let parsed;
      try {
        parsed = await parseInbound(raw);
      } catch (err) {
        expect(err).toBeInstanceOf(InboundParseError);
        refused++;
        continue;
      }
      const c = classifyInbound(parsed, { verp: { secret: "fixture-verp-secret-0123456789abcdef" } });
      classified++;
      for (const r of c.results) {
        if (r.event === "bounce") {
          expect(r.type).toBe(BOUNCE_REASONS[r.reason]);
          expect(r.recipient).toContain("@");
          expect(r.diagnostic.length).toBeLessThanOrEqual(1_000);
        }
      }
      for (const e of toInboundEvents(c, { receivedAt: 1, raw })) {
        expect(InboundEventSchema.safeParse(e).success).toBe(true);
      }
    }
    expect(classified).toBeGreaterThan(100);
    expect(refused + classified).toBeGreaterThan(100);
  }, 60_000);
});
