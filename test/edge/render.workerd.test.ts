/**
 * The template renderer (shared/render, docs/templates.md) inside workerd. Production Workers
 * refuse eval and new Function, which is why handlebars.js's compiler cannot run there; the test
 * pool's workerd allows them (it needs them to load test modules), so every call below runs with
 * code generation taken away: eval, Function and the constructors of every function kind throw
 * while the renderer compiles and renders. A control test shows the guard really refuses. The
 * same templates also run in a stock Miniflare worker in test/shared/render.miniflare.test.ts.
 */
import { describe, expect, it } from "vitest";
import { compileTemplate, compileVersion, render, renderVersion } from "../../shared/render/index.ts";

/** Run `fn` with every way of generating code from strings replaced by a function that throws. */
function withoutCodeGeneration<T>(fn: () => T): T {
  const refuse = function refuse(): never {
    throw new EvalError("code generation from strings refused by the test");
  };
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = { eval: g.eval, Function: g.Function };
  const protos = [
    Function.prototype,
    Object.getPrototypeOf(async function () {}) as object,
    Object.getPrototypeOf(function* () {}) as object,
    Object.getPrototypeOf(async function* () {}) as object,
  ];
  const ctors = protos.map((p) => Object.getOwnPropertyDescriptor(p, "constructor")!);
  g.eval = refuse;
  g.Function = refuse;
  for (const p of protos)
    Object.defineProperty(p, "constructor", { value: refuse, configurable: true, writable: true });
  try {
    return fn();
  } finally {
    g.eval = saved.eval;
    g.Function = saved.Function;
    protos.forEach((p, i) => Object.defineProperty(p, "constructor", ctors[i]!));
  }
}

describe("shared/render in workerd", () => {
  it("the guard refuses every way of generating code from strings", () => {
    withoutCodeGeneration(() => {
      const g = globalThis as unknown as {
        eval: (s: string) => unknown;
        Function: new (s: string) => unknown;
      };
      expect(() => g.eval("1 + 1")).toThrow(EvalError);
      expect(() => new g.Function("return 1")).toThrow(EvalError);
      const ctor = (f: object) => (f as { constructor: (s: string) => unknown }).constructor;
      expect(() => ctor(() => 0)("return 1")).toThrow(EvalError);
      expect(() => ctor(async () => 0)("return 1")).toThrow(EvalError);
      expect(() => ctor(function* () {})("return 1")).toThrow(EvalError);
    });
    expect(new Function("return 1")()).toBe(1); // restored afterwards
  });

  it("compiles and renders a template with blocks, helpers, subexpressions and escaping", () => {
    const c = withoutCodeGeneration(() =>
      compileTemplate(
        '<p>Hi {{insert user.name "default=there"}}</p>{{#each items as |item i|}}{{#if @first}}<ul>{{/if}}<li>{{i}} {{item.title}}</li>{{#if @last}}</ul>{{/if}}{{else}}none{{/each}}' +
          '{{#greaterThan (length items) 1}} many{{/greaterThan}}{{#equals code "7"}} seven{{/equals}} {{formatDate at "MMM D, YYYY h:mm A" "-0800"}}',
      ),
    );
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    const r = withoutCodeGeneration(() =>
      render(
        c.template,
        {
          user: { name: "Ann & Bob" },
          items: [{ title: "<x>" }, { title: "y" }],
          code: 7,
          at: "2020-01-01T23:00:00Z",
        },
        { escape: "html" },
      ),
    );
    expect(r).toEqual({
      ok: true,
      output:
        "<p>Hi Ann &amp; Bob</p><ul><li>0 &lt;x&gt;</li><li>1 y</li></ul> many seven Jan 1, 2020 3:00 PM",
      missing: [],
    });
  });

  it("a syntax error and a data error are values here too", () => {
    expect(withoutCodeGeneration(() => compileTemplate("{{#if a}}"))).toMatchObject({
      ok: false,
      error: { line: 1 },
    });
    const v = withoutCodeGeneration(() =>
      compileVersion({ subject: "{{s}}", text: "{{#lessThan a 1}}x{{/lessThan}}" }),
    );
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    const version = v.version;
    expect(withoutCodeGeneration(() => renderVersion(version, { s: "S", a: { no: 1 } }))).toMatchObject({
      ok: false,
      error: { part: "text" },
    });
  });
});
