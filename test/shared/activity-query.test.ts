/**
 * The Email Activity query parser (shared/sendgrid/activity-query.ts) on its own: the tree it
 * builds (precedence, escapes, TIMESTAMP to Unix seconds) and its caps, each an error with a position.
 * The rows each query selects are tested against D1 in test/edge/messages.activity.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  ActivityQueryError,
  MAX_DEPTH,
  MAX_QUERY_LENGTH,
  MAX_VALUES,
  parseActivityQuery,
} from "../../shared/sendgrid/activity-query.ts";

function errorOf(query: string): ActivityQueryError {
  try {
    parseActivityQuery(query);
  } catch (err) {
    if (err instanceof ActivityQueryError) return err;
    throw err;
  }
  throw new Error(`parsed: ${query}`);
}

describe("parseActivityQuery", () => {
  it("AND binds tighter than OR, NOT tighter than AND", () => {
    const e = parseActivityQuery('status="a" OR NOT to_email="b" AND subject="c"');
    expect(e).toMatchObject({
      type: "or",
      left: { type: "compare", field: { name: "status" } },
      right: {
        type: "and",
        left: { type: "not", expr: { type: "compare", field: { name: "to_email" } } },
        right: { type: "compare", field: { name: "subject" } },
      },
    });
  });

  it("reads escapes, single quotes, <> as != and TIMESTAMP as Unix seconds", () => {
    expect(parseActivityQuery('subject="a\\"b\\\\c\\\'d"')).toMatchObject({ value: { value: "a\"b\\c'd" } });
    expect(parseActivityQuery("subject <> 'x'")).toMatchObject({ op: "!=", value: { value: "x" } });
    expect(
      parseActivityQuery(
        'last_event_time BETWEEN TIMESTAMP "2026-01-15T10:00:00Z" AND TIMESTAMP "2026-01-15T10:00:01.9"',
      ),
    ).toMatchObject({
      type: "between",
      low: { kind: "timestamp", value: Date.parse("2026-01-15T10:00:00Z") / 1000 },
      // A time without a zone is UTC, as SendGrid's are; fractions are cut to the second.
      high: { kind: "timestamp", value: Date.parse("2026-01-15T10:00:01Z") / 1000 },
    });
    expect(parseActivityQuery("unique_args['order id']=\"42\"")).toMatchObject({
      field: { name: "unique_args", key: "order id" },
    });
    expect(parseActivityQuery("clicks >= 2")).toMatchObject({
      field: { name: "clicks_count" },
      value: { value: 2 },
    });
  });

  it("caps nesting, values and length, with positions", () => {
    const deep = "(".repeat(MAX_DEPTH + 2) + 'status="a"' + ")".repeat(MAX_DEPTH + 2);
    expect(errorOf(deep).message).toMatch(/^Nested deeper than \d+ at position \d+$/);
    expect(errorOf("NOT ".repeat(MAX_DEPTH + 2) + 'status="a"').message).toMatch(/^Nested deeper/);
    const many = `to_email IN (${Array.from({ length: MAX_VALUES + 1 }, (_, i) => `"u${i}@x"`).join(", ")})`;
    const e = errorOf(many);
    expect(e.message).toMatch(/^More than \d+ values/);
    expect(e.position).toBe(many.indexOf(`"u${MAX_VALUES}@x"`) + 1);
    expect(errorOf("subject=" + '"' + "x".repeat(MAX_QUERY_LENGTH) + '"').position).toBe(
      MAX_QUERY_LENGTH + 1,
    );
  });

  it("refuses what SendGrid's grammar has and ScaiSend does not answer, naming it", () => {
    expect(errorOf('outbound_ip="192.0.2.1"').message).toBe(
      'Field "outbound_ip" is not available in ScaiSend yet at position 1',
    );
    expect(errorOf("template_id IS").message).toBe("Expected NULL, found end of query at position 15");
    expect(errorOf("subject IS NULL").message).toBe("IS NULL cannot be used with subject at position 9");
    expect(errorOf('Contains(subject, "x")').message).toBe(
      "Contains cannot be used with subject at position 1",
    );
    expect(errorOf("").message).toBe("Expected a condition, found end of query at position 1");
  });
});
