/**
 * Seeded fuzz of the renderer (shared/render): random templates built from Handlebars fragments
 * (valid and broken), mutations of real templates, and random data with hostile values. Whatever
 * the input, compileTemplate and render return a result value and never throw, results have the
 * documented shape, and rendering is deterministic. Small limits keep each case fast and also
 * drive the limit paths. A failure prints the seed and case number to replay it.
 */
import { describe, expect, it } from "vitest";
import { compileTemplate, render, type RenderLimits } from "../../shared/render/index.ts";

/** mulberry32: a small, fast, seedable PRNG (deterministic across runs and machines). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = 0x5eed_0008;
const CASES = 1500;
const LIMITS: Partial<RenderLimits> = {
  maxOutputBytes: 64 * 1024,
  maxIterations: 2000,
  maxSteps: 50_000,
  maxDepth: 24,
};

const NAMES = [
  "a",
  "b",
  "user",
  "items",
  "this",
  "@index",
  "@key",
  "@first",
  "@last",
  "@root.a",
  "../a",
  "__proto__",
  "constructor",
  "x.y.z",
  "items.length",
  "[odd key]",
  "this.name",
  "length",
];
const LITERALS = [
  '"s"',
  "'t'",
  "0",
  "1",
  "-2.5",
  "true",
  "false",
  "null",
  "undefined",
  '"default=D"',
  '"YYYY-MM-DD h:mm A"',
  '"-0800"',
];
const BLOCKS = [
  "if",
  "unless",
  "each",
  "with",
  "equals",
  "notEquals",
  "greaterThan",
  "lessThan",
  "and",
  "or",
  "items",
  "nope",
];
const VALUES = ["length", "formatDate", "insert", "lookup", "equals", "and", "shout"];
const JUNK = [
  "{{",
  "}}",
  "{{{",
  "}}}",
  "{{/if}}",
  "{{else}}",
  "{{^}}",
  "{{~",
  "~}}",
  "{{!",
  "--}}",
  "{{>",
  "{{#",
  "(",
  ")",
  "=",
  "|",
  "as |x|",
  "\\{{",
  "{{{{raw}}}}",
  "\n",
  "é",
  "\u0000",
  "\ud800",
];

function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)]!;
}

function arg(rnd: () => number, depth: number): string {
  const r = rnd();
  if (r < 0.5) return pick(rnd, NAMES);
  if (r < 0.8 || depth > 3) return pick(rnd, LITERALS);
  return `(${pick(rnd, VALUES)} ${args(rnd, depth + 1)})`;
}

function args(rnd: () => number, depth: number): string {
  const n = Math.floor(rnd() * 4);
  return Array.from({ length: n }, () => arg(rnd, depth)).join(" ");
}

function template(rnd: () => number, depth: number): string {
  const parts: string[] = [];
  const n = 1 + Math.floor(rnd() * 5);
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (r < 0.2) parts.push(pick(rnd, ["Hello ", "<p>", "</p>", " & ", "'", "\n  ", "text"]));
    else if (r < 0.45) parts.push(`{{${pick(rnd, NAMES)}}}`);
    else if (r < 0.55) parts.push(`{{{${pick(rnd, NAMES)}}}}`);
    else if (r < 0.7) parts.push(`{{${pick(rnd, VALUES)} ${args(rnd, 0)}}}`);
    else if (r < 0.9 && depth < 6) {
      const name = pick(rnd, BLOCKS);
      const params = rnd() < 0.3 ? " as |v k|" : "";
      const inverse = rnd() < 0.4 ? `{{else}}${template(rnd, depth + 1)}` : "";
      parts.push(
        `{{#${name} ${args(rnd, 0)}${params}}}${template(rnd, depth + 1)}${inverse}{{/${rnd() < 0.95 ? name : "if"}}}`,
      );
    } else parts.push(pick(rnd, JUNK));
  }
  return parts.join("");
}

function value(rnd: () => number, depth: number): unknown {
  const r = rnd();
  if (depth > 3 || r < 0.4)
    return pick(rnd, [
      "",
      "Ben",
      "<b>&'\"",
      0,
      1,
      -1,
      2.5,
      1577919600,
      "2020-01-01T23:00:00Z",
      "3",
      true,
      false,
      null,
      "x".repeat(200),
    ]);
  if (r < 0.7) return Array.from({ length: Math.floor(rnd() * 6) }, () => value(rnd, depth + 1));
  const o: Record<string, unknown> = {};
  for (const k of ["a", "b", "user", "items", "name", "x", "y", "z", "odd key", "length"])
    if (rnd() < 0.4) o[k] = value(rnd, depth + 1);
  return o;
}

function hostileData(rnd: () => number): unknown {
  const base = value(rnd, 0);
  const r = rnd();
  if (r < 0.1)
    return JSON.parse('{"__proto__":{"a":"polluted"},"constructor":{"name":"C"},"a":1}') as unknown;
  if (r < 0.15) {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.user = cyclic;
    cyclic.items = [cyclic, cyclic];
    return cyclic;
  }
  if (r < 0.2) return { items: Array(5000).fill("x"), a: Array(3).fill(Array(3).fill([1, 2])) };
  return base;
}

function mutate(rnd: () => number, s: string): string {
  const chars = [...s];
  const n = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(rnd() * (chars.length + 1));
    const r = rnd();
    if (r < 0.4) chars.splice(at, 1);
    else if (r < 0.8)
      chars.splice(at, 0, pick(rnd, ["{", "}", "#", "/", "~", "(", ")", "@", ".", '"', " ", "^", "!", ">"]));
    else chars.splice(at, 0, pick(rnd, JUNK));
  }
  return chars.join("");
}

const SEEDS = [
  "{{#each user.orderHistory}}<li>{{this.item}} on {{formatDate this.date 'MMM D'}}</li>{{else}}none{{/each}}",
  '{{#if user.profile.male}}Sir{{else if user.profile.female}}Madame{{else}}{{insert name "default=Customer"}}{{/if}}',
  "{{#greaterThan (length cartItems) 0}}{{#each cartItems as |c i|}}{{i}}:{{c}}{{/each}}{{/greaterThan}}",
  "{{#with user}}{{#equals a ../b}}{{@root.a}}{{/equals}}{{/with}}",
];

describe("renderer fuzz (seeded)", () => {
  it(`${CASES} random and mutated templates against random data: no throw, valid shapes, deterministic`, () => {
    const rnd = prng(SEED);
    let compiled = 0;
    let rendered = 0;
    for (let i = 0; i < CASES; i++) {
      const source = rnd() < 0.3 ? mutate(rnd, pick(rnd, SEEDS)) : template(rnd, 0);
      const data = hostileData(rnd);
      const context = `seed ${SEED} case ${i}: ${JSON.stringify(source).slice(0, 300)}`;
      let c: ReturnType<typeof compileTemplate>;
      try {
        c = compileTemplate(source, LIMITS);
      } catch (err) {
        throw new Error(`compileTemplate threw (${String(err)}) for ${context}`);
      }
      if (!c.ok) {
        expect(typeof c.error.message, context).toBe("string");
        expect(Number.isInteger(c.error.line) && Number.isInteger(c.error.column), context).toBe(true);
        continue;
      }
      compiled++;
      for (const escape of ["html", "none"] as const) {
        let r: ReturnType<typeof render>;
        try {
          r = render(c.template, data, { escape });
        } catch (err) {
          throw new Error(`render threw (${String(err)}) for ${context}`);
        }
        expect(Array.isArray(r.missing), context).toBe(true);
        if (r.ok) {
          rendered++;
          expect(typeof r.output, context).toBe("string");
          if (escape === "html")
            expect(/<b>&'"/.test(r.output) && !source.includes("{{{"), context).toBe(false);
          expect(render(c.template, data, { escape }), context).toEqual(r);
        } else {
          expect(typeof r.error.message, context).toBe("string");
        }
      }
    }
    // The generator must exercise the interpreter, not only the parser's error paths.
    expect(compiled).toBeGreaterThan(CASES / 4);
    expect(rendered).toBeGreaterThan(CASES / 4);
    expect(({} as Record<string, unknown>).a).toBeUndefined();
  });
});
