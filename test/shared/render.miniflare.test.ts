/**
 * The renderer's modules (shared/render, docs/templates.md) loaded unchanged into a stock Miniflare
 * worker, where workerd refuses eval and new Function at request time exactly as production
 * Workers do. The worker first shows that code generation is refused, then compiles and renders:
 * the answer proves @handlebars/parser and the interpreter generate no code. (The edge test pool
 * allows code generation for its own module loading, so test/edge/render.workerd.test.ts can only
 * guard the globals; this test uses the runtime's own refusal.)
 *
 * Each TypeScript module is transpiled on its own (types erased, nothing bundled), so the worker
 * runs the very modules the edge imports; the one bare import, "@handlebars/parser", is pointed at
 * the package's own ES module file, as a bundler resolves it.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Miniflare } from "miniflare";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const PARSER = "node_modules/@handlebars/parser/dist/esm/index.js";
const TS_MODULES = [
  "shared/render/index.ts",
  "shared/render/interpret.ts",
  "shared/render/template.ts",
  "shared/render/values.ts",
  "shared/render/format-date.ts",
  "shared/utf8.ts",
  "shared/sendgrid/personalize.ts",
];

const WORKER = `
import { compileTemplate, render } from "./shared/render/index.ts";
export default {
  async fetch(request) {
    const refused = {};
    try { new Function("return 1"); refused.Function = false; } catch { refused.Function = true; }
    try { (0, eval)("1"); refused.eval = false; } catch { refused.eval = true; }
    const { source, data, escape } = await request.json();
    const c = compileTemplate(source);
    const result = c.ok ? render(c.template, data, { escape }) : c;
    return Response.json({ refused, result });
  },
};`;

let mf: Miniflare;

beforeAll(async () => {
  const modules = TS_MODULES.map((rel) => ({
    type: "ESModule" as const,
    path: path.join(ROOT, rel),
    contents: ts
      .transpileModule(readFileSync(path.join(ROOT, rel), "utf8"), {
        compilerOptions: {
          module: ts.ModuleKind.ESNext,
          target: ts.ScriptTarget.ES2022,
          verbatimModuleSyntax: true,
          allowImportingTsExtensions: true,
        },
      })
      .outputText.replace(
        /from "@handlebars\/parser"/g,
        `from ${JSON.stringify(path.relative(path.dirname(rel), PARSER))}`,
      ),
  }));
  mf = new Miniflare({
    modules: [
      { type: "ESModule", path: path.join(ROOT, "worker.js"), contents: WORKER },
      ...modules,
      {
        type: "ESModule",
        path: path.join(ROOT, PARSER),
        contents: readFileSync(path.join(ROOT, PARSER), "utf8"),
      },
    ],
    modulesRoot: ROOT,
    compatibilityDate: "2026-08-01",
    host: "127.0.0.1",
  });
  await mf.ready;
}, 60_000);

afterAll(async () => {
  await mf?.dispose();
});

async function renderInWorker(source: string, data: unknown, escape: "html" | "none" = "html") {
  const res = await mf.dispatchFetch("http://127.0.0.1/render", {
    method: "POST",
    body: JSON.stringify({ source, data, escape }),
  });
  return (await res.json()) as { refused: { Function: boolean; eval: boolean }; result: unknown };
}

describe("shared/render in a stock workerd (Miniflare)", () => {
  it("workerd refuses code generation, and the renderer still compiles and renders", async () => {
    const r = await renderInWorker(
      "{{#each items as |it i|}}{{#if @first}}<ol>{{/if}}<li>{{i}}:{{it.name}}</li>{{#if @last}}</ol>{{/if}}{{/each}}" +
        '{{#greaterThan (length items) 1}} {{insert who "default=all"}}{{/greaterThan}} {{formatDate t "YYYY-MM-DD"}}',
      { items: [{ name: "a&b" }, { name: "c" }], t: 1577919600 },
    );
    expect(r.refused).toEqual({ Function: true, eval: true });
    expect(r.result).toEqual({
      ok: true,
      output: "<ol><li>0:a&amp;b</li><li>1:c</li></ol> all 2020-01-01",
      missing: ["who"],
    });
  });

  it("syntax errors come back as values from inside workerd", async () => {
    const r = await renderInWorker("{{#if a}}open", {});
    expect(r.result).toMatchObject({
      ok: false,
      error: { line: 1, message: expect.stringMatching(/syntax error/) },
    });
  });
});
