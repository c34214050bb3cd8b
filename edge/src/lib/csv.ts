/**
 * RFC 4180 CSV records: fields separated by commas, records by CRLF, LF or CR; a field in double
 * quotes may hold commas, line breaks and doubled quotes. A leading byte-order mark is skipped and
 * blank lines are dropped. Each record carries the 1-based line it starts on, so an importer can
 * name the line of a bad row. The suppression imports of the API and the dashboard both read
 * their files with it (docs/api/sendgrid.md#suppressions-csv, docs/dashboard.md#pages).
 */
export interface CsvRecord {
  line: number;
  fields: string[];
}

export interface ParsedCsv {
  records: CsvRecord[];
  /** The line of the record whose quoted field the text ends inside, or null: the caller refuses such a file. */
  unterminatedAt: number | null;
}

export function parseCsv(text: string): ParsedCsv {
  const records: CsvRecord[] = [];
  let field = "";
  let fields: string[] = [];
  let quoted = false;
  let line = 1;
  let start = 1;
  const end = () => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0]!.trim() === "")) records.push({ line: start, fields });
    fields = [];
    field = "";
  };
  for (let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; i < text.length; i++) {
    const ch = text[i]!;
    // A line ends at LF, at CR alone, or at CRLF (counted once, at its LF below).
    if (ch === "\n" || (ch === "\r" && text[i + 1] !== "\n")) line++;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"' && field === "") quoted = true;
    else if (ch === ",") {
      fields.push(field);
      field = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") {
        i++;
        line++;
      }
      end();
      start = line;
    } else field += ch;
  }
  if (quoted) return { records, unterminatedAt: start };
  if (field !== "" || fields.length > 0) end();
  return { records, unterminatedAt: null };
}
