/** RFC 4180 records with their line numbers (edge/src/lib/csv.ts), as both suppression imports read them. */
import { describe, expect, it } from "vitest";
import { parseCsv } from "../../edge/src/lib/csv.ts";

describe("parseCsv", () => {
  it("splits records at CRLF, LF and CR alone, and numbers each by the line it starts on", () => {
    expect(parseCsv("email,reason\r\na@x.org,one\nb@x.org,two\rc@x.org,three")).toEqual({
      records: [
        { line: 1, fields: ["email", "reason"] },
        { line: 2, fields: ["a@x.org", "one"] },
        { line: 3, fields: ["b@x.org", "two"] },
        { line: 4, fields: ["c@x.org", "three"] },
      ],
      unterminatedAt: null,
    });
  });

  it("keeps commas, doubled quotes and line breaks inside quotes, and counts those lines", () => {
    const { records } = parseCsv('email,reason\n"a@x.org","said ""no"",\nthen left"\nb@x.org,\n');
    expect(records).toEqual([
      { line: 1, fields: ["email", "reason"] },
      { line: 2, fields: ["a@x.org", 'said "no",\nthen left'] },
      { line: 4, fields: ["b@x.org", ""] },
    ]);
  });

  it("skips a byte-order mark and blank lines", () => {
    expect(parseCsv("\ufeffemail\n\n  \na@x.org\n").records).toEqual([
      { line: 1, fields: ["email"] },
      { line: 4, fields: ["a@x.org"] },
    ]);
  });

  it("reports the line of a record whose quoted field never ends", () => {
    expect(parseCsv('email\na@x.org\n"b@x.org\nc@x.org\n').unterminatedAt).toBe(3);
  });

  it("a quote inside an unquoted field is kept as it is", () => {
    expect(parseCsv('a"b,c').records).toEqual([{ line: 1, fields: ['a"b', "c"] }]);
  });
});
