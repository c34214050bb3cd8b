/**
 * How the renderer reads and judges template data (docs/templates.md).
 *
 * Data comes from API callers (`dynamic_template_data`), so it is read as untrusted: only own data
 * properties, never a getter and never `__proto__`/`constructor`/`prototype`, so a template cannot
 * reach Object.prototype or run code through the data (prototype-pollution safe by construction).
 */

const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** `obj[key]`, own data properties only; undefined for anything else. */
export function ownProp(obj: unknown, key: string): unknown {
  if (obj === null || obj === undefined) return undefined;
  if (typeof obj === "string") return key === "length" ? obj.length : undefined;
  if (typeof obj !== "object") return undefined;
  if (FORBIDDEN_KEYS.has(key)) return undefined;
  const d = Object.getOwnPropertyDescriptor(obj, key);
  return d && "value" in d ? d.value : undefined;
}

/** Own enumerable keys of a plain object (the order JSON gave them), without the forbidden ones. */
export function ownKeys(obj: object): string[] {
  return Object.keys(obj).filter((k) => !FORBIDDEN_KEYS.has(k));
}

/**
 * Handlebars truthiness, which SendGrid documents the same way: false, undefined, null, "", 0
 * (and 0.0, NaN) and an empty array are false; everything else, negative numbers and empty objects
 * included, is true. `includeZero` makes 0 true ({{#if n includeZero=true}}, as in Handlebars).
 */
export function truthy(v: unknown, includeZero = false): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v === 0 && includeZero) return true;
  return Boolean(v);
}

/** A number, or a string that is entirely a decimal number; null otherwise ("" is not 0 here). */
export function numeric(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "string" && /^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(v)) {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

const isPrimitive = (v: unknown): v is string | number | boolean =>
  typeof v === "string" || typeof v === "number" || typeof v === "boolean";

/**
 * SendGrid's `equals`: "will also attempt to coerce data types … `{{#equals 3 "3"}}` will evaluate
 * to true". Numbers and numeric strings compare as numbers; other primitives by their text; null
 * and a missing value equal each other; objects and arrays only themselves.
 */
export function looseEquals(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if ((a === null || a === undefined) && (b === null || b === undefined)) return true;
  const na = numeric(a);
  const nb = numeric(b);
  if (na !== null && nb !== null) return na === nb;
  if (isPrimitive(a) && isPrimitive(b)) return String(a) === String(b);
  return false;
}

/** Number of characters (Unicode code points) of a string, items of an array, else 0 (SendGrid's `length`). */
export function lengthOf(v: unknown): number {
  if (Array.isArray(v)) return v.length;
  if (typeof v !== "string") return 0;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < v.length) {
      const next = v.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** Nested arrays deeper than this are written as "" (JavaScript would flatten them without end). */
const MAX_ARRAY_DEPTH = 8;

/**
 * The text of a value, as Handlebars writes it: null/undefined as "", arrays joined with ","
 * (JavaScript's Array#toString), objects as "[object Object]". `budget` bounds the result's length
 * so a huge array fails fast instead of being joined first; null means it would be longer.
 */
export function textOf(v: unknown, budget: number): string | null {
  if (v === undefined || v === null) return "";
  if (typeof v === "string") return v.length <= budget ? v : null;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return arrayText(v, budget, 0);
  if (typeof v === "object") return "[object Object]";
  return "";
}

function arrayText(arr: unknown[], budget: number, depth: number): string | null {
  if (depth >= MAX_ARRAY_DEPTH) return "";
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; i < arr.length; i++) {
    const item = arr[i];
    const t = Array.isArray(item)
      ? arrayText(item, budget - length, depth + 1)
      : textOf(item, budget - length);
    if (t === null) return null;
    length += t.length + (i > 0 ? 1 : 0);
    if (length > budget) return null;
    parts.push(t);
  }
  return parts.join(",");
}

/**
 * HTML escaping of `{{x}}`. The set is the one SendGrid's delivered mail shows (&amp; &lt; &gt;
 * &quot; and an apostrophe), e.g. sendgrid-python#602 and sendgrid-nodejs#741; the apostrophe is
 * written &#39; rather than SendGrid's &apos;, which HTML 4 clients show literally
 * (sendgrid-nodejs#954). Both render as the same character in any HTML 5 client.
 */
export function escapeHtml(s: string): string {
  return /[&<>"']/.test(s) ? s.replace(/[&<>"']/g, (c) => HTML_ENTITIES[c]!) : s;
}

const HTML_ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};
