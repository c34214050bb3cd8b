/**
 * Seeded fuzz of the Email Activity query (docs/api/sendgrid.md#the-query-parameter): random token
 * soup and random well-formed queries. Whatever the parser accepts compiles to SQL that holds no
 * text of the query (every value is a bound parameter) and runs on D1 as a 200; whatever it refuses
 * is an ActivityQueryError with a position inside the query, answered as a 400 — never a 500.
 */
import { SQLiteSyncDialect } from "drizzle-orm/sqlite-core";
import { describe, expect, it } from "vitest";
import { activityCondition } from "../../edge/src/db/messages.ts";
import { ActivityQueryError, parseActivityQuery } from "../../shared/sendgrid/activity-query.ts";
import { bearer, call, mailBody, sendOne, setupTenant } from "./helpers.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A marker in every string value: it must never appear in the SQL text. */
const MARK = "zq9";
const NASTY = [
  `${MARK}' OR 1=1 --`,
  `${MARK}"); DROP TABLE messages; --`,
  `${MARK}%_\\`,
  `${MARK}ü\u0000`,
  MARK,
];

function generate(r: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const str = () => {
    const v = pick(NASTY);
    return r() < 0.5 ? `"${v.replace(/[\\"]/g, "\\$&")}"` : `'${v.replace(/[\\']/g, "\\$&")}'`;
  };
  const ts = () => `TIMESTAMP "2026-0${1 + Math.floor(r() * 9)}-1${Math.floor(r() * 9)}T10:00:00Z"`;
  const strField = () =>
    pick([
      "msg_id",
      "from_email",
      "to_email",
      "subject",
      "template_id",
      "api_key_id",
      "unique_args['k\\'ey']",
    ]);
  const leaf = (): string => {
    switch (Math.floor(r() * 9)) {
      case 0:
        return `${strField()} ${pick(["=", "!=", "<>"])} ${str()}`;
      case 1:
        return `${strField()} ${pick(["LIKE", "NOT LIKE"])} ${str()}`;
      case 2:
        return `${strField()} ${pick(["IN", "NOT IN"])} (${str()}, ${str()})`;
      case 3:
        return `status ${pick(["=", "!="])} "${pick(["delivered", "processed", "not_delivered", "sandbox", "lost"])}"`;
      case 4:
        return `Contains(categories, ${str()})`;
      case 5:
        return `last_event_time ${pick(["<", ">", "<=", ">=", "="])} ${ts()}`;
      case 6:
        return `last_event_time ${pick(["BETWEEN", "NOT BETWEEN"])} ${ts()} AND ${ts()}`;
      case 7:
        return `${pick(["opens_count", "clicks", "opens"])} ${pick(["<", ">", "=", "!="])} ${Math.floor(r() * 5)}`;
      default:
        return `${pick(["template_id", "api_key_id", "unique_args['k']"])} IS ${pick(["", "NOT "])}NULL`;
    }
  };
  const expr = (depth: number): string => {
    const x = r();
    if (depth > 3 || x < 0.4) return leaf();
    if (x < 0.55) return `NOT ${expr(depth + 1)}`;
    if (x < 0.7) return `(${expr(depth + 1)})`;
    return `${expr(depth + 1)} ${pick(["AND", "OR", "and", "or"])} ${expr(depth + 1)}`;
  };
  const q = expr(0);
  if (r() < 0.7) return q;
  // Token soup: cut, duplicate or splice a random piece.
  const i = Math.floor(r() * q.length);
  const j = Math.floor(r() * q.length);
  return pick([
    q.slice(0, i),
    q.slice(0, i) + q.slice(j),
    q + q.slice(i, j),
    q.slice(i) + " " + q.slice(0, j),
  ]);
}

const dialect = new SQLiteSyncDialect();

function judge(q: string): "ok" | ActivityQueryError {
  try {
    const sql = dialect.sqlToQuery(activityCondition(parseActivityQuery(q)));
    expect(sql.sql, q).not.toContain(MARK);
    return "ok";
  } catch (err) {
    if (err instanceof ActivityQueryError) {
      expect(err.position, q).toBeGreaterThanOrEqual(1);
      expect(err.position, q).toBeLessThanOrEqual(q.length + 1);
      return err;
    }
    throw new Error(`${q}: ${String(err)}`, { cause: err });
  }
}

describe("Email Activity query fuzz", () => {
  it("2,000 queries: accepted ones hold no query text in their SQL, refused ones carry a position", () => {
    const r = rng(20261202);
    let ok = 0;
    for (let n = 0; n < 2000; n++) if (judge(generate(r)) === "ok") ok++;
    // Both sides are exercised (the generator is seeded, so this count is fixed).
    expect(ok).toBeGreaterThan(200);
    expect(ok).toBeLessThan(1900);
  });

  it("150 of them on D1 through the route: 200 for the accepted, 400 for the refused, never a 500", async () => {
    const t = await setupTenant();
    await sendOne(
      t.testKey,
      mailBody(t.from, {
        categories: [MARK],
        personalizations: [{ to: [{ email: "f@example.net" }], custom_args: { "k'ey": MARK } }],
      }),
    );
    const r = rng(7);
    let accepted = 0;
    for (let n = 0; n < 150; n++) {
      const q = generate(r);
      const expected = judge(q) === "ok" ? 200 : 400;
      const res = await call(`/v3/messages?${new URLSearchParams({ query: q })}`, {
        headers: bearer(t.testKey),
      });
      expect(res.status, `${q}: ${await res.text()}`).toBe(expected);
      if (expected === 200) accepted++;
    }
    expect(accepted).toBeGreaterThan(15);
    expect(accepted).toBeLessThan(150);
  });
});
