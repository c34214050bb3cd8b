/**
 * SendGrid's Email Activity query language (the `query` parameter of GET /v3/messages,
 * docs/api/sendgrid.md#the-query-parameter), parsed into a typed tree. Pure: no I/O, no SQL; the
 * edge compiles the tree to bound parameters (edge/src/db/messages.ts), so nothing here is ever
 * pasted into SQL.
 *
 * Grammar (keywords case-insensitive):
 *   query      := or
 *   or         := and ("OR" and)*
 *   and        := not ("AND" not)*
 *   not        := "NOT" not | primary
 *   primary    := "(" or ")" | "Contains" "(" field "," string ")" | field predicate
 *   predicate  := ("=" | "!=" | "<>" | "<" | ">" | "<=" | ">=") value
 *               | ["NOT"] "LIKE" string | ["NOT"] "IN" "(" value ("," value)* ")"
 *               | ["NOT"] "BETWEEN" value "AND" value | "IS" ["NOT"] "NULL"
 *   value      := string | number | "TIMESTAMP" string
 *   field      := name | name "[" string "]"          (unique_args['key'])
 *   string     := "…" or '…', with \" \' \\ escapes
 *
 * Every error carries the 1-based character position it was found at. Fields are checked here
 * against SendGrid's list: one we do not answer yet is an error, never a condition dropped.
 */

export type FieldType = "string" | "status" | "number" | "timestamp" | "list" | "map";

interface FieldSpec {
  type: FieldType;
  /** The column may be absent (IS NULL is meaningful). */
  nullable?: boolean;
}

/** SendGrid's fields that ScaiSend's catalog answers. `opens`/`clicks` are SendGrid's short names. */
export const ACTIVITY_FIELDS: Record<string, FieldSpec> = {
  msg_id: { type: "string" },
  from_email: { type: "string" },
  to_email: { type: "string" },
  subject: { type: "string" },
  status: { type: "status" },
  template_id: { type: "string", nullable: true },
  api_key_id: { type: "string", nullable: true },
  categories: { type: "list" },
  unique_args: { type: "map", nullable: true },
  last_event_time: { type: "timestamp" },
  opens_count: { type: "number" },
  clicks_count: { type: "number" },
};
const ALIASES: Record<string, string> = { opens: "opens_count", clicks: "clicks_count" };

/** SendGrid fields with nothing behind them in ScaiSend yet: a 400 naming them, not a silent match-all. */
export const UNAVAILABLE_FIELDS = [
  "asm_group_id",
  "teammate",
  "originating_ip",
  "outbound_ip",
  "outbound_ip_type",
  "marketing_campaign_id",
  "marketing_campaign_name",
  "marketing_campaign_split_id",
  "marketing_campaign_version",
  "is_unique",
  "mx_server",
  "bounce_type",
  "event_name",
  "reason",
] as const;

/** Caps keep a query inside D1's 100 bound parameters per statement and the parser's recursion shallow. */
export const MAX_QUERY_LENGTH = 4000;
export const MAX_VALUES = 40;
export const MAX_DEPTH = 32;

export class ActivityQueryError extends Error {
  /** 1-based character position in the query. */
  readonly position: number;
  constructor(message: string, position: number) {
    super(`${message} at position ${position}`);
    this.name = "ActivityQueryError";
    this.position = position;
  }
}

export type Value =
  | { kind: "string"; value: string; pos: number }
  | { kind: "number"; value: number; pos: number }
  /** Unix seconds (the precision SendGrid shows last_event_time in). */
  | { kind: "timestamp"; value: number; pos: number };

export interface FieldRef {
  name: string;
  type: FieldType;
  /** unique_args['key'] */
  key?: string;
  pos: number;
}

export type CompareOp = "=" | "!=" | "<" | ">" | "<=" | ">=";

export type Expr =
  | { type: "and" | "or"; left: Expr; right: Expr }
  | { type: "not"; expr: Expr }
  | { type: "compare"; field: FieldRef; op: CompareOp; value: Value }
  | { type: "like"; field: FieldRef; negated: boolean; pattern: string }
  | { type: "in"; field: FieldRef; negated: boolean; values: Value[] }
  | { type: "between"; field: FieldRef; negated: boolean; low: Value; high: Value }
  | { type: "null"; field: FieldRef; negated: boolean }
  | { type: "contains"; field: FieldRef; value: string };

type Token =
  | { t: "ident"; v: string; pos: number }
  | { t: "string"; v: string; pos: number }
  | { t: "number"; v: number; pos: number }
  | { t: "op"; v: string; pos: number }
  | { t: "end"; pos: number };

const describe = (tok: Token): string =>
  tok.t === "end"
    ? "end of query"
    : tok.t === "string"
      ? "a string"
      : tok.t === "number"
        ? `number ${tok.v}`
        : `"${tok.v}"`;

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const ch = src[i]!;
    const pos = i + 1;
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === '"' || ch === "'") {
      let v = "";
      i++;
      for (;;) {
        if (i >= src.length) throw new ActivityQueryError("Unterminated string", pos);
        const c = src[i]!;
        if (c === "\\") {
          const n = src[i + 1];
          if (n === '"' || n === "'" || n === "\\") {
            v += n;
            i += 2;
            continue;
          }
          throw new ActivityQueryError(
            n === undefined ? "Unterminated string" : `Unknown escape \\${n}`,
            n === undefined ? pos : i + 1,
          );
        }
        if (c === ch) {
          i++;
          break;
        }
        v += c;
        i++;
      }
      out.push({ t: "string", v, pos });
    } else if (/[0-9]/.test(ch) || (ch === "-" && /[0-9]/.test(src[i + 1] ?? ""))) {
      const m = /^-?\d+(\.\d+)?/.exec(src.slice(i))!;
      if (/[A-Za-z_]/.test(src[i + m[0].length] ?? "")) {
        throw new ActivityQueryError("Malformed number", pos);
      }
      out.push({ t: "number", v: Number(m[0]), pos });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(ch)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      out.push({ t: "ident", v: m[0], pos });
      i += m[0].length;
    } else {
      const two = src.slice(i, i + 2);
      if (two === "!=" || two === "<>" || two === "<=" || two === ">=") {
        out.push({ t: "op", v: two === "<>" ? "!=" : two, pos });
        i += 2;
      } else if ("=<>(),[]".includes(ch)) {
        out.push({ t: "op", v: ch, pos });
        i++;
      } else {
        throw new ActivityQueryError(`Unexpected character "${ch}"`, pos);
      }
    }
  }
  out.push({ t: "end", pos: src.length + 1 });
  return out;
}

const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/** Parses a query; throws ActivityQueryError with the position of the first problem. */
export function parseActivityQuery(src: string): Expr {
  if (src.length > MAX_QUERY_LENGTH) {
    throw new ActivityQueryError(`Query longer than ${MAX_QUERY_LENGTH} characters`, MAX_QUERY_LENGTH + 1);
  }
  const toks = tokenize(src);
  let k = 0;
  let values = 0;
  const peek = () => toks[k]!;
  const next = () => toks[k++]!;
  const isKw = (tok: Token, kw: string) => tok.t === "ident" && tok.v.toUpperCase() === kw;
  const isOp = (tok: Token, op: string) => tok.t === "op" && tok.v === op;
  const fail = (what: string, tok: Token = peek()): never => {
    throw new ActivityQueryError(`Expected ${what}, found ${describe(tok)}`, tok.pos);
  };
  const expectOp = (op: string) => {
    if (!isOp(peek(), op)) fail(`"${op}"`);
    next();
  };
  const expectString = (what: string): { v: string; pos: number } => {
    const tok = peek();
    if (tok.t !== "string") return fail(what);
    next();
    return tok;
  };

  const field = (): FieldRef => {
    const tok = peek();
    if (tok.t !== "ident") return fail("a field name");
    next();
    const lower = tok.v.toLowerCase();
    const name = ALIASES[lower] ?? lower;
    const spec = ACTIVITY_FIELDS[name];
    if (!spec) {
      if ((UNAVAILABLE_FIELDS as readonly string[]).includes(lower)) {
        throw new ActivityQueryError(`Field "${tok.v}" is not available in ScaiSend yet`, tok.pos);
      }
      throw new ActivityQueryError(`Unknown field "${tok.v}"`, tok.pos);
    }
    const ref: FieldRef = { name, type: spec.type, pos: tok.pos };
    if (spec.type === "map") {
      if (!isOp(peek(), "[")) fail(`"[" and a key after ${name}`);
      next();
      ref.key = expectString("a quoted key").v;
      expectOp("]");
    }
    return ref;
  };

  const value = (f: FieldRef): Value => {
    const tok = peek();
    if (++values > MAX_VALUES) throw new ActivityQueryError(`More than ${MAX_VALUES} values`, tok.pos);
    if (f.type === "timestamp") {
      if (!isKw(tok, "TIMESTAMP")) return fail(`TIMESTAMP "…" for ${f.name}`);
      next();
      const s = expectString('a quoted time after TIMESTAMP, e.g. "2026-01-15T10:00:00Z"');
      let text = s.v;
      if (ISO.test(text) && text.includes("T") && !/(Z|[+-]\d{2}:?\d{2})$/.test(text)) text += "Z";
      const ms = ISO.test(s.v) ? Date.parse(text) : NaN;
      if (Number.isNaN(ms)) throw new ActivityQueryError(`Not an ISO-8601 time: "${s.v}"`, s.pos);
      return { kind: "timestamp", value: Math.floor(ms / 1000), pos: tok.pos };
    }
    if (f.type === "number") {
      if (tok.t !== "number" || !Number.isInteger(tok.v)) return fail(`a whole number for ${f.name}`);
      next();
      return { kind: "number", value: tok.v, pos: tok.pos };
    }
    if (tok.t !== "string") return fail(`a quoted string for ${f.name}`);
    next();
    return { kind: "string", value: tok.v, pos: tok.pos };
  };

  const allow = (f: FieldRef, ok: boolean, tok: Token, what: string) => {
    if (!ok) throw new ActivityQueryError(`${what} cannot be used with ${f.name}`, tok.pos);
  };

  const predicate = (f: FieldRef): Expr => {
    const tok = peek();
    const ordered = f.type === "number" || f.type === "timestamp";
    if (tok.t === "op" && ["=", "!=", "<", ">", "<=", ">="].includes(tok.v)) {
      allow(f, f.type !== "list", tok, `"${tok.v}"`);
      allow(f, ordered || tok.v === "=" || tok.v === "!=", tok, `"${tok.v}"`);
      next();
      return { type: "compare", field: f, op: tok.v as CompareOp, value: value(f) };
    }
    if (isKw(tok, "IS")) {
      next();
      const negated = isKw(peek(), "NOT");
      if (negated) next();
      if (!isKw(peek(), "NULL")) fail("NULL");
      allow(f, ACTIVITY_FIELDS[f.name]!.nullable === true, tok, "IS NULL");
      next();
      return { type: "null", field: f, negated };
    }
    const negated = isKw(tok, "NOT");
    if (negated) next();
    const kw = peek();
    if (isKw(kw, "LIKE")) {
      allow(f, f.type === "string" || f.type === "map", kw, "LIKE");
      next();
      if (++values > MAX_VALUES) throw new ActivityQueryError(`More than ${MAX_VALUES} values`, peek().pos);
      return { type: "like", field: f, negated, pattern: expectString("a quoted LIKE pattern").v };
    }
    if (isKw(kw, "IN")) {
      allow(f, f.type !== "list" && f.type !== "timestamp", kw, "IN");
      next();
      expectOp("(");
      const values: Value[] = [value(f)];
      while (isOp(peek(), ",")) {
        next();
        values.push(value(f));
      }
      expectOp(")");
      return { type: "in", field: f, negated, values };
    }
    if (isKw(kw, "BETWEEN")) {
      allow(f, ordered, kw, "BETWEEN");
      next();
      const low = value(f);
      if (!isKw(peek(), "AND")) fail("AND in BETWEEN … AND …");
      next();
      return { type: "between", field: f, negated, low, high: value(f) };
    }
    return fail(negated ? "LIKE, IN or BETWEEN after NOT" : `an operator after ${f.name}`, kw);
  };

  const primary = (depth: number): Expr => {
    const tok = peek();
    if (depth > MAX_DEPTH) throw new ActivityQueryError(`Nested deeper than ${MAX_DEPTH}`, tok.pos);
    if (isOp(tok, "(")) {
      next();
      const e = or(depth + 1);
      expectOp(")");
      return e;
    }
    if (isKw(tok, "CONTAINS") && isOp(toks[k + 1]!, "(")) {
      next();
      next();
      const f = field();
      allow(f, f.type === "list", tok, "Contains");
      expectOp(",");
      if (++values > MAX_VALUES) throw new ActivityQueryError(`More than ${MAX_VALUES} values`, peek().pos);
      const v = expectString("a quoted value").v;
      expectOp(")");
      return { type: "contains", field: f, value: v };
    }
    const f = field();
    if (f.type === "list") fail(`"Contains(${f.name}, …)"`, tok);
    return predicate(f);
  };
  const not = (depth: number): Expr => {
    if (isKw(peek(), "NOT")) {
      next();
      if (depth > MAX_DEPTH) throw new ActivityQueryError(`Nested deeper than ${MAX_DEPTH}`, peek().pos);
      return { type: "not", expr: not(depth + 1) };
    }
    return primary(depth);
  };
  const and = (depth: number): Expr => {
    let left = not(depth);
    while (isKw(peek(), "AND")) {
      next();
      left = { type: "and", left, right: not(depth) };
    }
    return left;
  };
  function or(depth: number): Expr {
    let left = and(depth);
    while (isKw(peek(), "OR")) {
      next();
      left = { type: "or", left, right: and(depth) };
    }
    return left;
  }

  if (peek().t === "end") fail("a condition");
  const e = or(0);
  if (peek().t !== "end") fail("AND, OR or the end of the query");
  return e;
}
