/**
 * The template renderer (shared/render, docs/templates.md): each helper, escaping, missing
 * variables, compile errors with positions, limits, hostile input, template versions and legacy
 * substitutions. Golden outputs from SendGrid's own examples are in render.sendgrid-docs.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  applySubstitutions,
  compileTemplate,
  compileVersion,
  MAX_MISSING,
  render,
  renderVersion,
  type Escape,
  type RenderLimits,
  type RenderResult,
} from "../../shared/render/index.ts";

function run(
  source: string,
  data: unknown,
  escape: Escape = "html",
  limits: Partial<RenderLimits> = {},
): RenderResult {
  const c = compileTemplate(source, limits);
  if (!c.ok) throw new Error(`compile: ${c.error.message}`);
  return render(c.template, data, { escape });
}

function out(source: string, data: unknown = {}, escape: Escape = "html"): string {
  const r = run(source, data, escape);
  if (!r.ok) throw new Error(`render: ${r.error.message}`);
  return r.output;
}

function compileError(source: string, limits: Partial<RenderLimits> = {}) {
  const c = compileTemplate(source, limits);
  if (c.ok) throw new Error(`expected a compile error for ${source.slice(0, 60)}`);
  return c.error;
}

function renderError(source: string, data: unknown, limits: Partial<RenderLimits> = {}) {
  const r = run(source, data, "html", limits);
  if (r.ok) throw new Error(`expected a render error for ${source.slice(0, 60)}`);
  return r.error;
}

describe("escaping", () => {
  const data = { v: `<a href="x">Tom & Jerry's</a>` };
  it('{{x}} is HTML-escaped in "html" mode: & < > " \' become entities', () => {
    expect(out("{{v}}", data)).toBe("&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;");
  });
  it('{{x}} is written as is in "none" mode (plain text, subject)', () => {
    expect(out("{{v}}", data, "none")).toBe(data.v);
  });
  it("{{{x}}} and {{& x}} are raw in both modes", () => {
    expect(out("{{{v}}}|{{& v}}", data, "html")).toBe(`${data.v}|${data.v}`);
    expect(out("{{{v}}}", data, "none")).toBe(data.v);
  });
  it("template text itself is never escaped", () => {
    expect(out("<b>&amp; 'q'</b>")).toBe("<b>&amp; 'q'</b>");
  });
  it("values are written as Handlebars writes them", () => {
    expect(
      out("{{n}}|{{f}}|{{t}}|{{z}}|{{nul}}|{{arr}}|{{obj}}", {
        n: 1.5,
        f: false,
        t: true,
        z: 0,
        nul: null,
        arr: [1, "a", [2, 3]],
        obj: { a: 1 },
      }),
    ).toBe("1.5|false|true|0||1,a,2,3|[object Object]");
  });
});

describe("paths", () => {
  it("deep paths, this, ., bracket segments and array indexes", () => {
    const data = { a: { b: { c: "deep" } }, "odd key": "odd", list: ["zero", "one"] };
    expect(out("{{a.b.c}} {{this.a.b.c}} {{[odd key]}} {{list.[1]}} {{list.length}}", data)).toBe(
      "deep deep odd one 2",
    );
    expect(out("{{#with a.b}}{{.}}{{/with}}", { a: { b: "dot" } })).toBe("dot");
  });
  it("../ reaches the enclosing context; @root the top", () => {
    const data = { title: "T", groups: [{ name: "g1", items: ["a", "b"] }] };
    expect(
      out("{{#each groups}}{{#each items}}{{../name}}:{{this}}:{{@root.title}} {{/each}}{{/each}}", data),
    ).toBe("g1:a:T g1:b:T ");
  });
  it("a null value is present (not missing) and renders empty", () => {
    const r = run("[{{a}}]", { a: null });
    expect(r).toEqual({ ok: true, output: "[]", missing: [] });
  });
  it("a literal as the mustache or block path looks up that key", () => {
    expect(out('{{"a b"}}', { "a b": "x" })).toBe("x");
    expect(out('{{#"a b"}}[{{this}}]{{/"a b"}}', { "a b": ["x", "y"] })).toBe("[x][y]");
  });
});

describe("if / else if / else / unless", () => {
  const cases: [unknown, boolean][] = [
    [true, true],
    [false, false],
    [undefined, false],
    [null, false],
    ["", false],
    ["0", true],
    [0, false],
    [0.0, false],
    [-1, true],
    [0.5, true],
    [[], false],
    [[0], true],
    [{}, true],
  ];
  it.each(cases)("if %j is %s; unless is the opposite", (v, want) => {
    expect(out("{{#if v}}T{{else}}F{{/if}}", { v })).toBe(want ? "T" : "F");
    expect(out("{{#unless v}}T{{else}}F{{/unless}}", { v })).toBe(want ? "F" : "T");
  });
  it("includeZero=true makes 0 true", () => {
    expect(out("{{#if n includeZero=true}}T{{else}}F{{/if}}", { n: 0 })).toBe("T");
  });
  it("else if chains stop at the first true branch", () => {
    const t = "{{#if a}}A{{else if b}}B{{else if c}}C{{else}}D{{/if}}";
    expect([out(t, { a: 1, b: 1 }), out(t, { b: 1, c: 1 }), out(t, { c: 1 }), out(t, {})]).toEqual([
      "A",
      "B",
      "C",
      "D",
    ]);
  });
  it("{{^x}} renders when x is false", () => {
    expect(out("{{^x}}no x{{/x}}", {})).toBe("no x");
  });
});

describe("each", () => {
  it("@index, @first, @last and this over an array", () => {
    expect(
      out("{{#each xs}}{{@index}}{{this}}{{#if @first}}<{{/if}}{{#if @last}}>{{/if}} {{/each}}", {
        xs: ["a", "b", "c"],
      }),
    ).toBe("0a< 1b 2c> ");
  });
  it("@key over an object, in the data's order; over a list it is the index", () => {
    expect(out("{{#each o}}{{@key}}={{this}};{{/each}}", { o: { b: 2, a: 1 } })).toBe("b=2;a=1;");
    expect(out("{{#each xs}}{{@key}}{{/each}}", { xs: ["a", "b"] })).toBe("01");
  });
  it("../ inside an if inside each skips the if (it does not change the context)", () => {
    expect(out("{{#each xs}}{{#if this}}{{../title}}{{/if}}{{/each}}", { title: "T", xs: [1, 0, 2] })).toBe(
      "TT",
    );
  });
  it("{{else}} renders for an empty list, an empty object, or a missing value", () => {
    const t = "{{#each xs}}x{{else}}empty{{/each}}";
    expect([out(t, { xs: [] }), out(t, { xs: {} }), out(t, {}), out(t, { xs: 5 })]).toEqual([
      "empty",
      "empty",
      "empty",
      "empty",
    ]);
  });
  it("block params name the item and the index", () => {
    expect(out("{{#each xs as |item i|}}{{i}}:{{item.n}} {{/each}}", { xs: [{ n: "a" }, { n: "b" }] })).toBe(
      "0:a 1:b ",
    );
  });
  it("@../index reads the outer loop's index", () => {
    expect(
      out("{{#each a}}{{#each this}}{{@../index}}.{{@index}} {{/each}}{{/each}}", { a: [[1, 2], [3]] }),
    ).toBe("0.0 0.1 1.0 ");
  });
  it("a section {{#list}} repeats for an array and takes an object as the context", () => {
    expect(
      out("{{#xs}}[{{this}}]{{/xs}}|{{#o}}{{name}}{{/o}}|{{#no}}x{{else}}none{{/no}}", {
        xs: [1, 2],
        o: { name: "n" },
      }),
    ).toBe("[1][2]|n|none");
  });
});

describe("with", () => {
  it("changes the context, ../ goes back, else renders for a falsy value", () => {
    const t = "{{#with user}}{{name}} of {{../org}}{{else}}nobody{{/with}}";
    expect(out(t, { user: { name: "Ann" }, org: "Acme" })).toBe("Ann of Acme");
    expect(out(t, { org: "Acme" })).toBe("nobody");
  });
  it("with a block param", () => {
    expect(out("{{#with user as |u|}}{{u.name}}{{/with}}", { user: { name: "Ann" } })).toBe("Ann");
  });
});

describe("equals / notEquals", () => {
  const eq = (a: unknown, b: unknown) => out("{{#equals a b}}Y{{else}}N{{/equals}}", { a, b });
  it("coerces numbers and numeric strings; compares other primitives by text", () => {
    expect([eq(3, "3"), eq("3.0", 3), eq(true, "true"), eq("a", "a"), eq("a", "b"), eq(1, 2)]).toEqual([
      "Y",
      "Y",
      "Y",
      "Y",
      "N",
      "N",
    ]);
  });
  it('"" is not 0, and a missing value equals only null or another missing value', () => {
    expect([eq("", 0), eq(undefined, null), eq(undefined, 0), eq(undefined, "")]).toEqual([
      "N",
      "Y",
      "N",
      "N",
    ]);
  });
  it("objects and arrays are never equal to a copy", () => {
    expect([eq({ a: 1 }, { a: 1 }), eq([1], [1]), eq([1], "1")]).toEqual(["N", "N", "N"]);
  });
  it("notEquals is the negation; both work inline and as subexpressions", () => {
    expect(out("{{#notEquals a b}}Y{{else}}N{{/notEquals}}", { a: 1, b: 2 })).toBe("Y");
    expect(out("{{equals a b}} {{notEquals a b}}", { a: 1, b: "1" })).toBe("true false");
    expect(out("{{#if (equals a b)}}same{{/if}}", { a: "x", b: "x" })).toBe("same");
  });
});

describe("greaterThan / lessThan", () => {
  const gt = (a: unknown, b: unknown) => out("{{#greaterThan a b}}Y{{else}}N{{/greaterThan}}", { a, b });
  const lt = (a: unknown, b: unknown) => out("{{#lessThan a b}}Y{{else}}N{{/lessThan}}", { a, b });
  it("numbers and numeric strings compare as numbers", () => {
    expect([gt(100, 78), gt(55, 78), gt("100", "78"), gt("10", 9), lt(-1, 0), lt(2, 2)]).toEqual([
      "Y",
      "N",
      "Y",
      "Y",
      "Y",
      "N",
    ]);
  });
  it("two other strings compare alphabetically", () => {
    expect([gt("b", "a"), lt("apple", "banana")]).toEqual(["Y", "Y"]);
  });
  it("a missing value is neither greater nor less", () => {
    expect([gt(undefined, 1), lt(undefined, 1), gt(1, null)]).toEqual(["N", "N", "N"]);
  });
  it("an object, array or boolean is a data error at the helper's position, not a throw", () => {
    const e = renderError("line one\n  {{#greaterThan a 1}}x{{/greaterThan}}", { a: { x: 1 } });
    expect(e).toEqual({
      message: '"greaterThan" compares numbers or strings, not an object and 1',
      line: 2,
      column: 3,
    });
    expect(renderError("{{#lessThan a b}}x{{/lessThan}}", { a: [1], b: true }).message).toMatch(/lessThan/);
  });
});

describe("and / or", () => {
  it("and needs every argument true, or any; SendGrid's truthiness", () => {
    const and = "{{#and a b c}}Y{{else}}N{{/and}}";
    const or = "{{#or a b c}}Y{{else}}N{{/or}}";
    expect([out(and, { a: 1, b: "x", c: [1] }), out(and, { a: 1, b: "", c: 1 })]).toEqual(["Y", "N"]);
    expect([out(or, { a: 0, b: "", c: -1 }), out(or, { a: 0, b: "", c: [] })]).toEqual(["Y", "N"]);
  });
});

describe("length", () => {
  it("characters of a string (code points), items of an array, 0 otherwise", () => {
    expect(
      out("{{length s}} {{length e}} {{length a}} {{length n}} {{length o}} {{length missing}}", {
        s: "héllo",
        e: "👍👍",
        a: [1, 2, 3],
        n: 12345,
        o: { length: 9 },
      }),
    ).toBe("5 2 3 0 0 0");
  });
});

describe("formatDate", () => {
  const fd = (v: unknown, f?: string, z?: string) =>
    out(`{{formatDate v${f !== undefined ? ` "${f}"` : ""}${z ? ` "${z}"` : ""}}}`, { v });
  it("epoch seconds and milliseconds are the same instant", () => {
    expect(fd(1577919600, "YYYY-MM-DD HH:mm:ss")).toBe("2020-01-01 23:00:00");
    expect(fd(1577919600000, "YYYY-MM-DD HH:mm:ss")).toBe("2020-01-01 23:00:00");
    expect(fd("1577919600", "YYYY")).toBe("2020");
  });
  it("without a format the instant is ISO 8601 in UTC", () => {
    expect(fd("2020-01-01T23:00:00+01:00")).toBe("2020-01-01T22:00:00.000Z");
  });
  it("a date-only or zone-less ISO string is UTC, never the machine's zone", () => {
    expect(fd("2026-01-01", "YYYY-MM-DD HH:mm")).toBe("2026-01-01 00:00");
    expect(fd("2026-01-01T10:30", "HH:mm")).toBe("10:30");
  });
  it("offsets with and without a colon; [text] is literal; 12 AM and 12 PM", () => {
    expect(fd("2020-01-01T23:00:00Z", "YYYY-MM-DD HH:mm Z", "+02:00")).toBe("2020-01-02 01:00 +02:00");
    expect(fd("2020-01-01T00:05:00Z", "[at] h:mm A")).toBe("at 12:05 AM");
    expect(fd("2020-01-01T12:05:00Z", "h A ZZ")).toBe("12 PM +0000");
  });
  it("a missing date renders empty; a bad date or offset is a data error", () => {
    expect(out("[{{formatDate nothing 'YYYY'}}]")).toBe("[]");
    expect(renderError("{{formatDate d 'YYYY'}}", { d: "July 5, 2020" }).message).toMatch(/not a date/);
    expect(renderError("{{formatDate d 'YYYY' 'PST'}}", { d: 0 }).message).toMatch(/timezone offset/);
    expect(renderError("{{formatDate d}}", { d: { a: 1 } }).message).toMatch(/not a date/);
    expect(renderError("{{formatDate d f}}", { d: 0, f: 7 }).message).toMatch(/format must be a string/);
  });
});

describe("insert and lookup", () => {
  it('insert takes "default=x", a bare default, or default=x; "" and null use it', () => {
    const t = '{{insert a "default=A"}}|{{insert b "B"}}|{{insert c default="C"}}|{{insert d}}';
    expect(out(t, {})).toBe("A|B|C|");
    expect(out(t, { a: "", b: null, c: "c", d: 0 })).toBe("A|B|c|0");
  });
  it("the default is escaped like any {{x}}", () => {
    expect(out('{{insert a "default=<i>"}}')).toBe("&lt;i&gt;");
  });
  it("lookup reads a key chosen by data", () => {
    expect(out("{{lookup labels lang}}", { labels: { en: "Hello", fr: "Bonjour" }, lang: "fr" })).toBe(
      "Bonjour",
    );
    expect(
      out("{{#each langs}}{{lookup ../labels this}} {{/each}}", {
        labels: { en: "Hi" },
        langs: ["en", "xx"],
      }),
    ).toBe("Hi  ");
  });
});

describe("whitespace control and comments", () => {
  it("~ trims, comments vanish, standalone block lines are removed", () => {
    expect(out("a  {{~x~}}  b{{! note }}{{!-- {{not}} --}}", { x: "X" })).toBe("aXb");
    expect(out("<ul>\n  {{#each xs}}\n  <li>{{this}}</li>\n  {{/each}}\n</ul>", { xs: [1, 2] })).toBe(
      "<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>",
    );
  });
});

describe("missing variables", () => {
  it("lists each absent path once, as written in the template, in first-seen order", () => {
    const r = run(
      "{{a}} {{b.c}} {{a}} {{#each xs}}{{this.name}}{{/each}} {{#if flag}}{{/if}} {{insert d 'x'}} {{@root.e}}",
      {
        b: {},
        xs: [{}, { name: "n" }, {}],
      },
    );
    expect(r.ok && r.missing).toEqual(["a", "b.c", "this.name", "flag", "d", "@root.e"]);
  });
  it("present values (including null, false, 0, '') are not missing", () => {
    const r = run("{{a}}{{b}}{{c}}{{d}}", { a: null, b: false, c: 0, d: "" });
    expect(r.ok && r.missing).toEqual([]);
  });
  it(`reports at most ${MAX_MISSING} paths`, () => {
    const source = Array.from({ length: MAX_MISSING + 50 }, (_, i) => `{{v${i}}}`).join("");
    const r = run(source, {});
    expect(r.ok && r.missing.length).toBe(MAX_MISSING);
  });
  it("a failed render still reports what was missing before it stopped", () => {
    const r = run("{{gone}}{{#greaterThan o 1}}{{/greaterThan}}", { o: {} });
    expect(r.ok).toBe(false);
    expect(r.missing).toEqual(["gone"]);
  });
});

describe("compile errors (the edge's 400 at accept)", () => {
  it("a syntax error has a message and a 1-based position", () => {
    expect(compileError("Hello\n{{name")).toMatchObject({
      line: 2,
      message: expect.stringMatching(/^syntax error/),
    });
    expect(compileError("{{#if a}}never closed")).toMatchObject({
      line: 1,
      message: expect.stringMatching(/not closed/),
    });
    expect(compileError("{{#if a}}x{{/each}}")).toMatchObject({
      line: 1,
      message: expect.stringMatching(/if doesn't match each/),
    });
  });
  it("unknown helpers, partials and decorators are refused with their position", () => {
    expect(compileError("ok\n  {{shout name}}")).toEqual({
      message: 'unknown helper "shout"',
      line: 2,
      column: 3,
    });
    expect(compileError("{{#repeat 3}}x{{/repeat}}").message).toBe('unknown helper "repeat"');
    expect(compileError("{{> footer}}").message).toMatch(/partials/);
    expect(compileError("{{#> layout}}x{{/layout}}").message).toMatch(/partials/);
    expect(compileError("{{* deco}}").message).toMatch(/decorators/);
    expect(compileError("{{#if (shout a)}}{{/if}}").message).toBe('unknown helper "shout"');
  });
  it("helpers used the wrong way, with the wrong number of arguments or an unknown option", () => {
    expect(compileError("{{if a}}").message).toMatch(/must be used as a block/);
    expect(compileError("{{#length a}}{{/length}}").message).toMatch(/not a block helper/);
    expect(compileError("{{#equals a}}{{/equals}}").message).toBe('"equals" takes 2 arguments, got 1');
    expect(compileError("{{#if a b}}{{/if}}").message).toBe('"if" takes 1 argument, got 2');
    expect(compileError("{{formatDate a b c d}}").message).toBe('"formatDate" takes 1 to 3 arguments, got 4');
    expect(compileError("{{#each xs limit=3}}{{/each}}").message).toBe('"each" has no option "limit"');
  });
  it("a non-string source is an error value", () => {
    expect(compileTemplate(42 as unknown as string)).toEqual({
      ok: false,
      error: { message: "the template must be a string", line: 0, column: 0 },
    });
  });
  it("render refuses something that is not a compiled template, without throwing", () => {
    expect(render({} as never, {}, { escape: "html" }).ok).toBe(false);
  });
});

describe("limits", () => {
  it("template size is counted in UTF-8 bytes", () => {
    expect(compileTemplate("x".repeat(100), { maxTemplateBytes: 100 }).ok).toBe(true);
    expect(compileError("é".repeat(51), { maxTemplateBytes: 100 }).message).toBe(
      "the template is larger than 100 bytes",
    );
  });
  it("block and subexpression nesting", () => {
    const nest = (n: number) => "{{#if a}}".repeat(n) + "x" + "{{/if}}".repeat(n);
    expect(compileTemplate(nest(10), { maxDepth: 10 }).ok).toBe(true);
    expect(compileError(nest(11), { maxDepth: 10 }).message).toMatch(/nests .*10 deep/);
    const sub = (n: number) => `{{#if ${"(and ".repeat(n)}a${")".repeat(n)}}}x{{/if}}`;
    expect(compileTemplate(sub(5), { maxDepth: 6 }).ok).toBe(true);
    expect(compileTemplate(sub(8), { maxDepth: 6 }).ok).toBe(false);
  });
  it("a hostile nesting depth (20,000 blocks) is refused quickly, not a stack overflow", () => {
    const n = 20_000;
    expect(compileError("{{#if a}}".repeat(n) + "{{/if}}".repeat(n)).message).toMatch(/nests/);
    expect(compileError(`{{x ${"(".repeat(n)}}}`).message).toMatch(/nests/);
  });
  it("output size stops the render", () => {
    const e = renderError(
      "{{#each xs}}{{this}}{{/each}}",
      { xs: Array(50).fill("0123456789") },
      { maxOutputBytes: 400 },
    );
    expect(e.message).toBe("the output is larger than 400 bytes");
    expect(renderError("{{big}}", { big: "x".repeat(1000) }, { maxOutputBytes: 400 }).message).toMatch(
      /larger than 400/,
    );
    expect(renderError("{{arr}}", { arr: Array(1000).fill("x") }, { maxOutputBytes: 400 }).message).toMatch(
      /larger than 400/,
    );
  });
  it("loop iterations are counted across all loops; a list over the limit is refused before it is walked", () => {
    const data = { a: Array(100).fill(0), b: Array(100).fill(0) };
    expect(
      run("{{#each a}}{{#each ../b}}{{/each}}{{/each}}", data, "html", { maxIterations: 10_100 }).ok,
    ).toBe(true);
    expect(
      renderError("{{#each a}}{{#each ../b}}{{/each}}{{/each}}", data, { maxIterations: 10_000 }).message,
    ).toBe("the template loops more than 10000 times");
    expect(
      renderError("{{#each a}}{{/each}}", { a: Array(1_000_000) }, { maxIterations: 1000 }).message,
    ).toMatch(/loops more/);
  });
  it("evaluation steps bound a loop that writes nothing", () => {
    const e = renderError(
      "{{#each a}}{{#if x}}{{/if}}{{#if y}}{{/if}}{{/each}}",
      { a: Array(1000).fill({}) },
      { maxSteps: 1000 },
    );
    expect(e.message).toBe("the render took more than 1000 steps");
  });
});

describe("hostile data", () => {
  it("prototype keys are never read, even as own properties from JSON", () => {
    const data = JSON.parse(
      '{"__proto__": {"polluted": "yes"}, "constructor": {"name": "C"}, "a": {}}',
    ) as unknown;
    const r = run(
      "[{{__proto__.polluted}}][{{constructor.name}}][{{a.constructor.name}}][{{a.__proto__}}][{{lookup a 'constructor'}}][{{a.hasOwnProperty}}]",
      data,
    );
    expect(r.ok && r.output).toBe("[][][][][][]");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
  it("inherited properties and getters are never read", () => {
    let getterRan = false;
    const data = Object.create({ inherited: "from prototype" }) as Record<string, unknown>;
    Object.defineProperty(data, "g", {
      enumerable: true,
      get() {
        getterRan = true;
        return "secret";
      },
    });
    expect(out("[{{inherited}}][{{g}}][{{#each this}}{{@key}}={{this}}{{/each}}]", data)).toBe("[][][g=]");
    expect(getterRan).toBe(false);
  });
  it("a sparse array's holes are not read from Array.prototype", () => {
    const sparse: unknown[] = [];
    sparse[2] = "c";
    expect(out("{{#each xs}}[{{this}}]{{/each}}", { xs: sparse })).toBe("[][][c]");
  });
  it("deeply nested and cyclic data does not overflow the stack", () => {
    let deep: unknown = "bottom";
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(run("{{d}}", { d: deep }).ok).toBe(true);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const arr: unknown[] = [];
    for (let i = 0; i < 50; i++) arr.push(arr);
    expect(out("{{c.self.self.self.self}}", { c: cyclic })).toBe("[object Object]");
    expect(run("{{a}}", { a: arr }, "html", { maxOutputBytes: 10_000 }).ok).toBe(false);
  });
  it("data that is not an object renders as an empty context", () => {
    expect(out("[{{a}}]", null)).toBe("[]");
    expect(out("[{{a}}][{{this}}]", "str")).toBe("[][str]");
  });
});

describe("template versions: subject, html, text and preheader", () => {
  it("each part gets its escaping; the subject is folded onto one line", () => {
    const v = compileVersion({
      subject: "Order {{id}} for {{name}}\r\nBcc: evil@example.com",
      html: "<p>{{name}}</p>",
      text: "Hi {{name}}",
      preheader: "{{name}}'s order",
    });
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    const r = renderVersion(v.version, { id: 7, name: `O'Hara & "Sons" <x>` });
    expect(r).toEqual({
      ok: true,
      rendered: {
        subject: `Order 7 for O'Hara & "Sons" <x> Bcc: evil@example.com`,
        html: "<p>O&#39;Hara &amp; &quot;Sons&quot; &lt;x&gt;</p>",
        text: `Hi O'Hara & "Sons" <x>`,
        preheader: "O&#39;Hara &amp; &quot;Sons&quot; &lt;x&gt;'s order",
      },
      missing: [],
    });
  });
  it("a data value with CR/LF cannot add a header through the subject", () => {
    const v = compileVersion({ subject: "{{{s}}}" });
    if (!v.ok) throw new Error("compile");
    const r = renderVersion(v.version, { s: "Hi\r\nBcc: x@example.com\n\nbody" });
    expect(r.ok && r.rendered.subject).toBe("Hi Bcc: x@example.com body");
  });
  it("absent parts are skipped; missing paths are merged over the parts", () => {
    const v = compileVersion({ subject: "{{a}}", html: null, text: "{{b}} {{a}}" });
    if (!v.ok) throw new Error("compile");
    const r = renderVersion(v.version, {});
    expect(r).toEqual({ ok: true, rendered: { subject: "", text: " " }, missing: ["a", "b"] });
  });
  it("compile and render errors name the part", () => {
    expect(compileVersion({ subject: "ok", html: "<p>{{#if}}</p>" })).toMatchObject({
      ok: false,
      error: { part: "html" },
    });
    const v = compileVersion({ text: "{{formatDate d 'YYYY'}}" });
    if (!v.ok) throw new Error("compile");
    expect(renderVersion(v.version, { d: "nope" })).toMatchObject({
      ok: false,
      error: { part: "text", line: 1, column: 1 },
    });
  });
});

describe("legacy substitutions and sections", () => {
  // https://www.twilio.com/docs/sendgrid/for-developers/sending-email/substitution-tags
  // https://www.twilio.com/docs/sendgrid/for-developers/sending-email/section-tags
  it("keys are replaced verbatim as sent, whatever their delimiters", () => {
    const r = applySubstitutions(
      "Hi -name-, :city and %code%; not name or {{name}}",
      {
        "-name-": "Ann",
        ":city": "Oslo",
        "%code%": "42",
      },
      null,
    );
    expect(r).toEqual({ ok: true, output: "Hi Ann, Oslo and 42; not name or {{name}}" });
  });
  it("a value naming a section becomes the section, whose own tags are filled", () => {
    const r = applySubstitutions(
      "<p>-greeting-</p>",
      { "-greeting-": "%hello_section%", "-name-": "Ann" },
      { "%hello_section%": "Hello -name-!" },
    );
    expect(r).toEqual({ ok: true, output: "<p>Hello Ann!</p>" });
  });
  it("the longest key wins and replaced values are not scanned again", () => {
    const r = applySubstitutions("-a- -ab-", { "-a-": "-ab-", "-ab-": "X" }, {});
    expect(r).toEqual({ ok: true, output: "-ab- X" });
  });
  it("prototype-named keys are plain keys", () => {
    expect(
      applySubstitutions("__proto__ constructor", { __proto__: "P", constructor: "C" } as never, {}),
    ).toMatchObject({ ok: true });
    const fromJson = JSON.parse('{"__proto__": "P", "constructor": "C"}') as Record<string, string>;
    expect(applySubstitutions("__proto__ constructor", fromJson, {})).toEqual({ ok: true, output: "P C" });
  });
  it("growth past the limit is an error value; no substitutions leave the text as it is", () => {
    const r = applySubstitutions("-x- ".repeat(100), { "-x-": "y".repeat(1000) }, {}, 10_000);
    expect(r).toEqual({
      ok: false,
      error: { message: "substitutions make the text longer than 10000 characters" },
    });
    expect(applySubstitutions("-x-", undefined, undefined)).toEqual({ ok: true, output: "-x-" });
  });
});
