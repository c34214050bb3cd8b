/**
 * Every message in test/fixtures/inbound (written from the RFC 3464 and RFC 5965 examples and the
 * formats of Gmail, Microsoft 365 / Exchange, Yahoo, Postfix, Exim, qmail and Sendmail) classifies to
 * the JSON next to it. The VERP addresses in them were made with FIXTURE_SECRET.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { classifyInbound } from "../../origin/src/inbound/classify.ts";
import { parseInbound } from "../../origin/src/inbound/parse.ts";
import { BOUNCE_REASONS } from "../../origin/src/inbound/reasons.ts";

const FIXTURE_SECRET = "fixture-verp-secret-0123456789abcdef";
const dir = path.resolve(import.meta.dirname, "../fixtures/inbound");
const emls = readdirSync(dir)
  .filter((f) => f.endsWith(".eml"))
  .sort();

describe("inbound fixtures", () => {
  it("has an expected classification next to every message, and no stray one", () => {
    const jsons = readdirSync(dir).filter((f) => f.endsWith(".json"));
    expect(jsons.sort()).toEqual(emls.map((f) => f.replace(/\.eml$/, ".json")));
    expect(emls.length).toBeGreaterThanOrEqual(20);
  });

  for (const file of emls) {
    it(`classifies ${file}`, async () => {
      const expected = JSON.parse(readFileSync(path.join(dir, file.replace(/\.eml$/, ".json")), "utf8"));
      const parsed = await parseInbound(readFileSync(path.join(dir, file)));
      const got = classifyInbound(parsed, { verp: { secret: FIXTURE_SECRET } });
      expect({ kind: got.kind, results: got.results }).toEqual(expected);
      for (const r of got.results) {
        if (r.event === "bounce") {
          expect(Object.keys(BOUNCE_REASONS)).toContain(r.reason);
          expect(r.type).toBe(BOUNCE_REASONS[r.reason]);
        }
      }
    });
  }
});
