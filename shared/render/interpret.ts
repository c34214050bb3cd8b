/**
 * The interpreter: walks a compiled template's AST against the data (docs/templates.md).
 *
 * Invariants:
 * - Never throws to its caller: every data-dependent failure (a helper given the wrong types, a
 *   limit reached) becomes `{ok:false, error}` with the template position of the node.
 * - Bounded: output bytes, `each` iterations and evaluation steps are counted as they happen and
 *   stop the render at the limit; recursion depth is bounded by the template's nesting, which
 *   compileTemplate already limited. The data is never walked except along the template's paths.
 * - Reads data through values.ts only (own data properties, no prototype keys, no getters).
 * - Pure: no clock, no I/O, no global state; the template and the data are not modified.
 */
import type { AST } from "@handlebars/parser";
import { utf8ByteLength } from "../utf8.ts";
import { describe, formatDate } from "./format-date.ts";
import {
  HELPERS,
  isHelperName,
  simpleName,
  type RenderError,
  type RenderLimits,
  type Template,
} from "./template.ts";
import { escapeHtml, looseEquals, lengthOf, numeric, ownKeys, ownProp, textOf, truthy } from "./values.ts";

export type Escape = "html" | "none";

export interface RenderOptions {
  /** "html": {{x}} is HTML-escaped (html parts); "none": {{x}} is written as is (text, subject). {{{x}}} is never escaped. */
  escape: Escape;
  /**
   * How a plain name ({{name}}, {{a.b}}) is looked up. "handlebars" (the default): in the current
   * context only (reach outer ones with ../). "mustache" (SenderKit templates, docs/api/senderkit.md#templates):
   * its first part in the current context, then each enclosing one out to the root, as the
   * Mustache spec's context stack does; the rest of a dotted name is read inside what was found.
   */
  lookup?: "handlebars" | "mustache";
}

export type RenderResult =
  { ok: true; output: string; missing: string[] } | { ok: false; error: RenderError; missing: string[] };

/** At most this many missing paths are reported (a loop could otherwise list one per item). */
export const MAX_MISSING = 100;

class RenderFailure {
  constructor(
    readonly message: string,
    readonly node: AST.Node | undefined,
  ) {}
}

/** Variables of one `each` iteration (@index, @first, @last, @key), chained to the outer loop's. */
interface DataFrame {
  readonly vars: ReadonlyMap<string, unknown>;
  readonly parent: DataFrame | null;
}

class Renderer {
  private readonly out: string[] = [];
  private outBytes = 0;
  private steps = 0;
  private iterations = 0;
  readonly missing = new Set<string>();
  /** Contexts pushed by blocks that change `this` (each, with, sections); ../ walks back along it. */
  private readonly contexts: unknown[];
  /** Block parameters in scope ({{#each xs as |x i|}}), innermost last. */
  private readonly blockParams: Map<string, unknown>[] = [];
  private data: DataFrame | null = null;

  constructor(
    private readonly root: unknown,
    private readonly escape: Escape,
    private readonly limits: Readonly<RenderLimits>,
    private readonly mustacheLookup = false,
  ) {
    this.contexts = [root];
  }

  result(): string {
    return this.out.join("");
  }

  program(p: AST.Program | undefined): void {
    if (!p) return;
    for (const s of p.body) this.statement(s);
  }

  private step(node: AST.Node): void {
    if (++this.steps > this.limits.maxSteps) {
      throw new RenderFailure(`the render took more than ${this.limits.maxSteps} steps`, node);
    }
  }

  private write(s: string, node: AST.Node): void {
    if (s.length === 0) return;
    this.outBytes += utf8ByteLength(s);
    if (this.outBytes > this.limits.maxOutputBytes) {
      throw new RenderFailure(`the output is larger than ${this.limits.maxOutputBytes} bytes`, node);
    }
    this.out.push(s);
  }

  private statement(s: AST.Statement): void {
    this.step(s);
    switch (s.type) {
      case "ContentStatement":
        this.write((s as AST.ContentStatement).value, s);
        return;
      case "CommentStatement":
        return;
      case "MustacheStatement":
        this.mustache(s as AST.MustacheStatement);
        return;
      case "BlockStatement":
        this.block(s as AST.BlockStatement);
        return;
      default:
        // compileTemplate refuses everything else; a hand-made AST gets an error, not a throw.
        throw new RenderFailure(`unsupported template construct ${s.type}`, s);
    }
  }

  private mustache(m: AST.MustacheStatement): void {
    const name = simpleName(m.path);
    let value: unknown;
    if (name !== null && isHelperName(name)) value = this.call(name, m.params, m.hash, m);
    else if (m.path.type === "PathExpression") value = this.path(m.path as AST.PathExpression);
    else if (m.path.type === "SubExpression")
      throw new RenderFailure("a subexpression cannot be called as a helper", m);
    else value = ownProp(this.context(), String((m.path as AST.StringLiteral).value));
    const budget = this.limits.maxOutputBytes - this.outBytes;
    const text = textOf(value, budget);
    if (text === null)
      throw new RenderFailure(`the output is larger than ${this.limits.maxOutputBytes} bytes`, m);
    this.write(m.escaped && this.escape === "html" ? escapeHtml(text) : text, m);
  }

  private block(b: AST.BlockStatement): void {
    const name = simpleName(b.path);
    const params = b.params;
    switch (name) {
      case "if":
      case "unless": {
        const cond = truthy(this.expr(params[0]!), truthy(this.hashValue(b.hash, "includeZero")));
        this.program(cond === (name === "if") ? b.program : b.inverse);
        return;
      }
      case "with": {
        const v = this.expr(params[0]!);
        if (truthy(v)) this.withContext(v, b.program, [v]);
        else this.program(b.inverse);
        return;
      }
      case "each":
        this.each(this.expr(params[0]!), b);
        return;
      case "equals":
      case "notEquals":
      case "greaterThan":
      case "lessThan":
      case "and":
      case "or":
        this.program(this.call(name, params, b.hash, b) ? b.program : b.inverse);
        return;
      default: {
        // A block named after a value, as in Mustache: a list repeats, a truthy value becomes the
        // context, a falsy value or an empty list renders the {{else}} part (Handlebars' blockHelperMissing).
        // The parser's types say a block path is a PathExpression; {{#"a b"}} gives a literal.
        const path = b.path as AST.PathExpression | AST.StringLiteral;
        const v =
          path.type === "PathExpression"
            ? this.path(path as AST.PathExpression)
            : ownProp(this.context(), String((path as AST.StringLiteral).value));
        if (Array.isArray(v)) this.each(v, b);
        else if (v === true) this.program(b.program);
        else if (truthy(v)) this.withContext(v, b.program, [v]);
        else this.program(b.inverse);
      }
    }
  }

  private withContext(ctx: unknown, program: AST.Program | undefined, params: unknown[]): void {
    this.contexts.push(ctx);
    this.pushBlockParams(program, params);
    try {
      this.program(program);
    } finally {
      this.popBlockParams(program);
      this.contexts.pop();
    }
  }

  private each(v: unknown, b: AST.BlockStatement): void {
    const keys = Array.isArray(v) ? null : v !== null && typeof v === "object" ? ownKeys(v) : [];
    const count = Array.isArray(v) ? v.length : keys!.length;
    if (count === 0) {
      this.program(b.inverse);
      return;
    }
    // Refuse a list longer than what is left before copying or walking any of it.
    if (this.iterations + count > this.limits.maxIterations) {
      throw new RenderFailure(`the template loops more than ${this.limits.maxIterations} times`, b);
    }
    const outer = this.data;
    try {
      for (let i = 0; i < count; i++) {
        this.iterations++;
        const key: string | number = keys ? keys[i]! : i;
        const value = ownProp(v, String(key)); // own slots only, even for a sparse array
        const vars = new Map<string, unknown>([
          ["index", i],
          ["first", i === 0],
          ["last", i === count - 1],
        ]);
        vars.set("key", key); // for a list, the index (as handlebars.js sets @key)
        this.data = { vars, parent: outer };
        this.withContext(value, b.program, [value, key]);
      }
    } finally {
      this.data = outer;
    }
  }

  private pushBlockParams(program: AST.Program | undefined, values: unknown[]): void {
    const names = program?.blockParams;
    if (!names || names.length === 0) return;
    this.blockParams.push(new Map(names.map((n, i) => [n, values[i]])));
  }

  private popBlockParams(program: AST.Program | undefined): void {
    if (program?.blockParams && program.blockParams.length > 0) this.blockParams.pop();
  }

  private context(depth = 0): unknown {
    return this.contexts[this.contexts.length - 1 - depth];
  }

  private path(p: AST.PathExpression): unknown {
    const parts = p.parts as string[];
    let value: unknown;
    let rest: string[];
    if (p.data) {
      const [head, ...tail] = parts;
      rest = tail;
      if (head === "root") value = this.root;
      else {
        let frame = this.data;
        for (let d = 0; d < p.depth && frame; d++) frame = frame.parent;
        value = head !== undefined ? frame?.vars.get(head) : undefined;
      }
    } else if (
      !(p as { this?: boolean }).this &&
      p.depth === 0 &&
      parts.length > 0 &&
      this.blockParam(parts[0]!)
    ) {
      value = this.blockParam(parts[0]!)!.get(parts[0]!);
      rest = parts.slice(1);
    } else if (this.mustacheLookup && !(p as { this?: boolean }).this && p.depth === 0 && parts.length > 0) {
      value = undefined;
      for (let d = 0; d < this.contexts.length && value === undefined; d++) {
        value = ownProp(this.context(d), parts[0]!);
      }
      rest = parts.slice(1);
    } else {
      value = p.depth < this.contexts.length ? this.context(p.depth) : undefined;
      rest = parts;
    }
    for (const part of rest) {
      if (value === undefined || value === null) break;
      value = ownProp(value, part);
    }
    if (value === undefined) this.noteMissing(p.original);
    return value;
  }

  private blockParam(name: string): Map<string, unknown> | undefined {
    for (let i = this.blockParams.length - 1; i >= 0; i--) {
      if (this.blockParams[i]!.has(name)) return this.blockParams[i];
    }
    return undefined;
  }

  private noteMissing(path: string): void {
    if (this.missing.size < MAX_MISSING) this.missing.add(path);
  }

  private expr(e: AST.Expression): unknown {
    this.step(e);
    switch (e.type) {
      case "PathExpression":
        return this.path(e as AST.PathExpression);
      case "StringLiteral":
      case "NumberLiteral":
      case "BooleanLiteral":
        return (e as AST.StringLiteral).value;
      case "NullLiteral":
        return null;
      case "UndefinedLiteral":
        return undefined;
      case "SubExpression": {
        const sub = e as AST.SubExpression;
        const name = simpleName(sub.path);
        if (name === null || !isHelperName(name))
          throw new RenderFailure("unknown helper in a subexpression", e);
        return this.call(name, sub.params, sub.hash, e);
      }
      default:
        throw new RenderFailure(`unsupported expression ${e.type}`, e);
    }
  }

  private hashValue(hash: AST.Hash | undefined, key: string): unknown {
    const pair = hash?.pairs.find((p) => p.key === key);
    return pair ? this.expr(pair.value) : undefined;
  }

  /** A helper called for its value ({{name …}}, (name …), or the condition of a comparison block). */
  private call(name: string, params: AST.Expression[], hash: AST.Hash | undefined, node: AST.Node): unknown {
    const spec = HELPERS[name]!;
    if (params.length < spec.min || params.length > spec.max) {
      throw new RenderFailure(
        `"${name}" takes ${spec.min} to ${spec.max} arguments, got ${params.length}`,
        node,
      );
    }
    const args = params.map((p) => this.expr(p));
    switch (name) {
      case "equals":
        return looseEquals(args[0], args[1]);
      case "notEquals":
        return !looseEquals(args[0], args[1]);
      case "greaterThan":
        return compare(name, args[0], args[1], node) > 0;
      case "lessThan":
        return compare(name, args[0], args[1], node) < 0;
      case "and":
        return args.every((a) => truthy(a));
      case "or":
        return args.some((a) => truthy(a));
      case "length":
        return lengthOf(args[0]);
      case "formatDate": {
        if (args[0] === undefined || args[0] === null) return "";
        const r = formatDate(args[0], args[1], args[2]);
        if (!r.ok) throw new RenderFailure(r.message, node);
        return r.value;
      }
      case "insert": {
        const v = args[0];
        if (v !== undefined && v !== null && v !== "") return v;
        const fallback = args.length > 1 ? args[1] : this.hashValue(hash, "default");
        if (fallback === undefined || fallback === null) return "";
        if (typeof fallback !== "string") return fallback;
        // SendGrid documents both {{insert name "default=Customer"}} and {{insert name "your business"}}.
        return fallback.startsWith("default=") ? fallback.slice("default=".length) : fallback;
      }
      case "lookup":
        return typeof args[1] === "string" || typeof args[1] === "number"
          ? ownProp(args[0], String(args[1]))
          : undefined;
      default:
        throw new RenderFailure(`"${name}" must be used as a block`, node);
    }
  }
}

/**
 * greaterThan/lessThan: numbers (and numeric strings) compare as numbers, two other strings
 * alphabetically (by UTF-16 code unit). A missing value is never greater or less than anything.
 * Anything else (objects, arrays, booleans) is a data error.
 */
function compare(name: string, a: unknown, b: unknown, node: AST.Node): number {
  const na = numeric(a);
  const nb = numeric(b);
  if (na !== null && nb !== null) return na - nb;
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  if (a === undefined || a === null || b === undefined || b === null) return 0;
  throw new RenderFailure(
    `"${name}" compares numbers or strings, not ${describe(a)} and ${describe(b)}`,
    node,
  );
}

export function render(template: Template, data: unknown, options: RenderOptions): RenderResult {
  if (!template || template.kind !== "scaisend.template") {
    return { ok: false, error: { message: "not a compiled template", line: 0, column: 0 }, missing: [] };
  }
  const escape: Escape = options?.escape === "none" ? "none" : "html";
  const r = new Renderer(data ?? {}, escape, template.limits, options?.lookup === "mustache");
  try {
    r.program(template.program);
    return { ok: true, output: r.result(), missing: [...r.missing] };
  } catch (err) {
    const missing = [...r.missing];
    if (err instanceof RenderFailure) {
      const start = err.node?.loc?.start;
      return {
        ok: false,
        error: { message: err.message, line: start?.line ?? 0, column: start ? start.column + 1 : 0 },
        missing,
      };
    }
    // Only a runtime fault could land here (e.g. a stack overflow); it is still an error value.
    const message =
      err instanceof RangeError
        ? "the template nests too deeply to render"
        : "the template could not be rendered";
    return { ok: false, error: { message, line: 0, column: 0 }, missing };
  }
}
