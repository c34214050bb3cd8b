// Search and paging over the stored messages, shared by the JSON API (`?query=&start=&limit=`) and
// the inbox page's search box (docs/dev-inbox.md).
//
// A query is whitespace-separated terms, all of which must match (case-insensitive substring).
// A bare term matches any of from / to / cc / envelope / subject / text / HTML body; a term
// prefixed `from:`, `to:` or `subject:` matches only that field (`to:` includes Cc and the
// envelope recipients, `from:` the envelope sender). `"quoted words"` make one term.
import type { StoredMessage } from "./types.ts";

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;
const MAX_QUERY_LENGTH = 500;

type Field = "any" | "from" | "to" | "subject";
interface Term {
  field: Field;
  needle: string;
}

export interface Page {
  total: number;
  start: number;
  messages: StoredMessage[];
}

export class QueryError extends Error {}

export function parseQuery(query: string): Term[] {
  if (query.length > MAX_QUERY_LENGTH)
    throw new QueryError(`query is longer than ${MAX_QUERY_LENGTH} characters`);
  const terms: Term[] = [];
  for (const match of query.matchAll(/(?:(from|to|subject):)?(?:"([^"]*)"|(\S+))/gi)) {
    const needle = (match[2] ?? match[3] ?? "").toLowerCase();
    if (!needle) continue;
    terms.push({ field: (match[1]?.toLowerCase() as Field | undefined) ?? "any", needle });
  }
  return terms;
}

function fieldText(m: StoredMessage, field: Field): string {
  switch (field) {
    case "from":
      return `${m.from}\n${m.envelope.mailFrom}`;
    case "to":
      return `${m.to}\n${m.cc}\n${m.envelope.rcptTo.join("\n")}`;
    case "subject":
      return m.subject;
    case "any":
      return [
        m.from,
        m.envelope.mailFrom,
        m.to,
        m.cc,
        m.envelope.rcptTo.join("\n"),
        m.subject,
        m.text,
        m.html ?? "",
      ].join("\n");
  }
}

export function matches(m: StoredMessage, terms: Term[]): boolean {
  return terms.every((t) => fieldText(m, t.field).toLowerCase().includes(t.needle));
}

/** `messages` newest first; returns the page and the number of matches in all. */
export function search(messages: StoredMessage[], query: string, start: number, limit: number): Page {
  const terms = parseQuery(query);
  const found = terms.length ? messages.filter((m) => matches(m, terms)) : messages;
  return { total: found.length, start, messages: found.slice(start, start + limit) };
}

/** Parses `start` / `limit` from a query string; throws QueryError on anything but small integers. */
export function parsePaging(params: URLSearchParams): { start: number; limit: number } {
  return {
    start: intParam(params, "start", 0, 0, Number.MAX_SAFE_INTEGER),
    limit: intParam(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
  };
}

function intParam(params: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = params.get(name);
  if (raw === null || raw === "") return fallback;
  if (!/^\d{1,16}$/.test(raw)) throw new QueryError(`${name} must be an integer`);
  const value = Number(raw);
  if (value < min || value > max) throw new QueryError(`${name} must be between ${min} and ${max}`);
  return value;
}
