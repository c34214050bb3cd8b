/**
 * Compiling a template: parse with @handlebars/parser (the Handlebars project's own grammar, no
 * eval/new Function, so it runs in Workers) and check everything that can be checked without data,
 * so the edge can refuse a bad template with a 400 at accept (docs/templates.md#errors):
 * syntax, unsupported features (partials, decorators), unknown helpers, helper argument counts and
 * options, and the size and nesting limits.
 */
import { parse, type AST } from "@handlebars/parser";
import { utf8ByteLength } from "../utf8.ts";

/** Limits (docs/templates.md#limits). Every one can be lowered (or raised) per call. */
export interface RenderLimits {
  /** Template source, UTF-8 bytes. SendGrid's limit for a version's html_content is 1,048,576. */
  maxTemplateBytes: number;
  /** Nesting of blocks and subexpressions together. */
  maxDepth: number;
  /** Rendered output of one template, UTF-8 bytes. */
  maxOutputBytes: number;
  /** `each` iterations in one render, all loops together. */
  maxIterations: number;
  /** Statements and expressions evaluated in one render: bounds loops that write nothing. */
  maxSteps: number;
}

export const DEFAULT_LIMITS: Readonly<RenderLimits> = Object.freeze({
  maxTemplateBytes: 1_048_576,
  maxDepth: 64,
  maxOutputBytes: 4 * 1_048_576,
  maxIterations: 100_000,
  maxSteps: 2_000_000,
});

/** A template or render error. line/column are 1-based and point into the template source (0 when unknown). */
export interface RenderError {
  message: string;
  line: number;
  column: number;
}

/** A compiled template: immutable, reusable for any number of renders (cache it per version). */
export interface Template {
  readonly kind: "scaisend.template";
  readonly program: AST.Program;
  readonly limits: Readonly<RenderLimits>;
}

export type CompileResult = { ok: true; template: Template } | { ok: false; error: RenderError };

/**
 * Helpers and how they may be called. "block": only as {{#name}}…{{/name}}; "value": as {{name …}}
 * or (name …); "both": either way. Arity is the number of positional arguments.
 */
export const HELPERS: Readonly<
  Record<string, { use: "block" | "value" | "both"; min: number; max: number; hash: readonly string[] }>
> = Object.freeze({
  if: { use: "block", min: 1, max: 1, hash: ["includeZero"] },
  unless: { use: "block", min: 1, max: 1, hash: ["includeZero"] },
  each: { use: "block", min: 1, max: 1, hash: [] },
  with: { use: "block", min: 1, max: 1, hash: [] },
  equals: { use: "both", min: 2, max: 2, hash: [] },
  notEquals: { use: "both", min: 2, max: 2, hash: [] },
  greaterThan: { use: "both", min: 2, max: 2, hash: [] },
  lessThan: { use: "both", min: 2, max: 2, hash: [] },
  and: { use: "both", min: 1, max: 16, hash: [] },
  or: { use: "both", min: 1, max: 16, hash: [] },
  length: { use: "value", min: 1, max: 1, hash: [] },
  formatDate: { use: "value", min: 1, max: 3, hash: [] },
  insert: { use: "value", min: 1, max: 2, hash: ["default"] },
  lookup: { use: "value", min: 2, max: 2, hash: [] },
});

export const isHelperName = (name: string): boolean => Object.hasOwn(HELPERS, name);

/** The helper a path names: a bare identifier (no dots, no ../, no this, no @). */
export function simpleName(path: AST.PathExpression | AST.SubExpression | AST.Literal): string | null {
  if (path.type !== "PathExpression") return null;
  const p = path as AST.PathExpression;
  if (p.data || p.depth !== 0 || p.parts.length !== 1 || (p as { this?: boolean }).this) return null;
  return typeof p.parts[0] === "string" ? p.parts[0] : null;
}

class CompileFailure {
  constructor(
    readonly message: string,
    readonly node: AST.Node | undefined,
  ) {}
}

export function compileTemplate(source: unknown, limits: Partial<RenderLimits> = {}): CompileResult {
  const lim: RenderLimits = { ...DEFAULT_LIMITS, ...limits };
  if (typeof source !== "string") return fail("the template must be a string", 0, 0);
  if (source.length > lim.maxTemplateBytes || utf8ByteLength(source) > lim.maxTemplateBytes) {
    return fail(`the template is larger than ${lim.maxTemplateBytes} bytes`, 0, 0);
  }
  // Deep nesting would recurse deeply in the parser's own AST passes: refuse it before parsing.
  const nesting = roughNesting(source);
  if (nesting > lim.maxDepth) return fail(`the template nests blocks more than ${lim.maxDepth} deep`, 0, 0);
  let program: AST.Program;
  try {
    program = parse(source);
  } catch (err) {
    return { ok: false, error: parseError(err) };
  }
  try {
    checkProgram(program, 0, lim);
  } catch (err) {
    if (err instanceof CompileFailure) {
      const start = err.node?.loc?.start;
      return fail(err.message, start?.line ?? 0, start ? start.column + 1 : 0);
    }
    if (err instanceof RangeError) return fail("the template nests too deeply", 0, 0);
    throw err;
  }
  return {
    ok: true,
    template: Object.freeze({ kind: "scaisend.template", program, limits: Object.freeze(lim) }),
  };
}

const fail = (message: string, line: number, column: number): CompileResult => ({
  ok: false,
  error: { message, line, column },
});

/**
 * An upper bound of block and subexpression nesting, read from the source text alone: `{{#` and
 * `{{^x` open (the `{{^}}` else does not), `{{/` closes, `(` and `)` inside a mustache count too.
 * Only used to refuse sources whose nesting could not pass the exact check after parsing.
 */
function roughNesting(source: string): number {
  let depth = 0;
  let max = 0;
  let i = source.indexOf("{{");
  while (i !== -1) {
    const end = source.indexOf("}}", i + 2);
    const inner = source.slice(i + 2, end === -1 ? source.length : end);
    const head = inner.replace(/^[{~]*\s*/, "");
    if (head.startsWith("#") || (head.startsWith("^") && !/^\^\s*~?$/.test(head))) depth++;
    else if (head.startsWith("/")) depth = Math.max(0, depth - 1);
    let parens = 0;
    let parenMax = 0;
    for (const c of inner) {
      if (c === "(") parenMax = Math.max(parenMax, ++parens);
      else if (c === ")") parens--;
    }
    max = Math.max(max, depth + parenMax);
    if (end === -1) break;
    i = source.indexOf("{{", end + 2);
  }
  return max;
}

/** The parser's errors: Jison parse errors carry `hash.loc`; semantic ones `lineNumber`/`column`. */
function parseError(err: unknown): RenderError {
  if (err instanceof RangeError) return { message: "the template nests too deeply", line: 0, column: 0 };
  const e = err as {
    message?: unknown;
    hash?: { loc?: { last_line?: number; last_column?: number }; token?: string; expected?: string[] };
    lineNumber?: number;
    column?: number;
  };
  const raw = typeof e.message === "string" ? e.message : String(err);
  if (e.hash?.loc) {
    const token = e.hash.token ?? "?";
    const text = (e.hash as { text?: unknown }).text;
    const got =
      token === "EOF"
        ? "end of template (a block is not closed?)"
        : typeof text === "string" && text !== ""
          ? JSON.stringify(text.slice(0, 40))
          : token;
    return {
      message: `syntax error: unexpected ${got}`,
      line: e.hash.loc.last_line ?? 0,
      column: (e.hash.loc.last_column ?? -1) + 1,
    };
  }
  const message = raw.replace(/ - \d+:\d+$/, "");
  return { message: `syntax error: ${message}`, line: e.lineNumber ?? 0, column: (e.column ?? -1) + 1 };
}

function checkProgram(program: AST.Program | undefined, depth: number, lim: RenderLimits): void {
  if (!program) return;
  for (const s of program.body) checkStatement(s, depth, lim);
}

function checkStatement(s: AST.Statement, depth: number, lim: RenderLimits): void {
  switch (s.type) {
    case "ContentStatement":
    case "CommentStatement":
      return;
    case "MustacheStatement": {
      const m = s as AST.MustacheStatement;
      checkCall(m.path, m.params, m.hash, "value", s, depth, lim);
      return;
    }
    case "BlockStatement": {
      const b = s as AST.BlockStatement;
      if (depth + 1 > lim.maxDepth) throw new CompileFailure(`blocks nest more than ${lim.maxDepth} deep`, s);
      checkCall(b.path, b.params, b.hash, "block", s, depth + 1, lim);
      checkProgram(b.program, depth + 1, lim);
      checkProgram(b.inverse, depth + 1, lim);
      return;
    }
    case "PartialStatement":
    case "PartialBlockStatement":
      throw new CompileFailure("partials ({{> name}}) are not supported", s);
    case "Decorator":
    case "DecoratorBlock":
      throw new CompileFailure("decorators ({{* name}}) are not supported", s);
    default:
      throw new CompileFailure(`unsupported template construct ${s.type}`, s);
  }
}

function checkCall(
  path: AST.PathExpression | AST.SubExpression | AST.Literal,
  params: AST.Expression[],
  hash: AST.Hash | undefined,
  as: "block" | "value" | "subexpression",
  node: AST.Node,
  depth: number,
  lim: RenderLimits,
): void {
  const name = simpleName(path);
  const helper = name !== null && isHelperName(name) ? HELPERS[name]! : null;
  const pairs = hash?.pairs ?? [];
  if (path.type === "SubExpression") {
    // {{(helper x)}}: the value of a subexpression used as a helper name. Not Handlebars we support.
    throw new CompileFailure("a subexpression cannot be called as a helper", node);
  }
  if (helper === null) {
    if (params.length > 0 || pairs.length > 0 || as === "subexpression") {
      const label = name ?? (path as { original?: unknown }).original;
      throw new CompileFailure(`unknown helper "${String(label)}"`, node);
    }
    if (path.type === "PathExpression") checkPath(path as AST.PathExpression, depth, lim);
    return;
  }
  if (as === "block" && helper.use === "value") {
    throw new CompileFailure(
      `"${name}" is not a block helper: write {{${name} …}}, not {{#${name} …}}`,
      node,
    );
  }
  if (as !== "block" && helper.use === "block") {
    throw new CompileFailure(`"${name}" must be used as a block: {{#${name} …}}…{{/${name}}}`, node);
  }
  if (params.length < helper.min || params.length > helper.max) {
    const want = helper.min === helper.max ? `${helper.min}` : `${helper.min} to ${helper.max}`;
    throw new CompileFailure(
      `"${name}" takes ${want} argument${helper.max === 1 ? "" : "s"}, got ${params.length}`,
      node,
    );
  }
  for (const pair of pairs) {
    if (!helper.hash.includes(pair.key))
      throw new CompileFailure(`"${name}" has no option "${pair.key}"`, pair);
  }
  for (const p of params) checkExpression(p, depth, lim);
  for (const pair of pairs) checkExpression(pair.value, depth, lim);
}

function checkExpression(e: AST.Expression, depth: number, lim: RenderLimits): void {
  if (e.type === "SubExpression") {
    if (depth + 1 > lim.maxDepth)
      throw new CompileFailure(`expressions nest more than ${lim.maxDepth} deep`, e);
    const sub = e as AST.SubExpression;
    checkCall(sub.path, sub.params, sub.hash, "subexpression", e, depth + 1, lim);
  } else if (e.type === "PathExpression") {
    checkPath(e as AST.PathExpression, depth, lim);
  }
}

function checkPath(p: AST.PathExpression, depth: number, lim: RenderLimits): void {
  if (typeof p.head === "object" && p.head !== null) {
    throw new CompileFailure("a subexpression cannot start a path", p);
  }
  if (p.depth > lim.maxDepth) throw new CompileFailure("too many ../ in a path", p);
  void depth;
}
