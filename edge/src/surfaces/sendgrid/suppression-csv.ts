/**
 * CSV import and export of the suppression lists (docs/api/sendgrid.md#suppressions-csv). RFC 4180:
 * a header row, comma-separated, fields with a comma, quote or line break in double quotes.
 * Import columns: `email` (required) and `reason` (bounces, blocks and invalid_emails); other
 * columns are refused, so nothing in the file is silently dropped. Bad rows are skipped and named.
 * Export cells that a spreadsheet would read as a formula get a leading `'` (OWASP CSV injection).
 */
import { AppError } from "../../../../shared/errors.ts";
import { isValidEmail } from "../../../../shared/sendgrid/mail-send.ts";
import type { Db } from "../../db/client.ts";
import { parseCsv } from "../../lib/csv.ts";
import type { SuppressionList } from "../../db/schema.ts";
import { type NewSuppression, type SuppressionRow, tenantSuppressions } from "../../db/suppressions.ts";
import { badRequest, fieldError } from "./suppression-http.ts";

/** Rows one import may hold. */
export const MAX_IMPORT_ROWS = 100_000;
/** Row errors listed in the answer (the count in `skipped` is complete). */
const MAX_LISTED_ERRORS = 100;

/** The columns of a list's export, in order (the dashboard's import takes an export whole). */
export const EXPORT_COLUMNS: Record<SuppressionList, readonly string[]> = {
  bounces: ["email", "created", "reason", "status", "bounce_type"],
  blocks: ["email", "created", "reason", "status"],
  invalid_emails: ["email", "created", "reason"],
  spam_reports: ["email", "created", "ip"],
  unsubscribes: ["email", "created"],
};

const IMPORT_COLUMNS: Record<SuppressionList, readonly string[]> = {
  bounces: ["email", "reason"],
  blocks: ["email", "reason"],
  invalid_emails: ["email", "reason"],
  spam_reports: ["email"],
  unsubscribes: ["email"],
};

function cell(v: string | number | null): string {
  let s = v === null ? "" : String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(list: SuppressionList, rows: SuppressionRow[], header: boolean): string {
  const cols = EXPORT_COLUMNS[list];
  const lines = header ? [cols.join(",")] : [];
  for (const r of rows) {
    const values: Record<string, string | number | null> = {
      email: r.email,
      created: Math.floor(r.createdAt / 1000),
      reason: r.reason,
      status: r.status,
      bounce_type: r.bounceType,
      ip: r.ip,
    };
    lines.push(cols.map((c) => cell(values[c] ?? null)).join(","));
  }
  return lines.length > 0 ? lines.join("\r\n") + "\r\n" : "";
}

export interface ImportResult {
  imported: number;
  skipped: number;
  errors: { row: number; email: string; message: string }[];
}

export async function importCsv(
  db: Db,
  tenantId: string,
  list: SuppressionList,
  text: string,
  now: number,
): Promise<ImportResult> {
  const parsed = parseCsv(text);
  if (parsed.unterminatedAt !== null)
    throw badRequest(fieldError(null, "The CSV ends inside a quoted field."));
  const records = parsed.records.map((r) => r.fields);
  if (records.length === 0)
    throw badRequest(fieldError(null, "The CSV is empty: it needs a header row with email."));
  const header = records[0]!.map((h) => h.trim().toLowerCase());
  const allowed = IMPORT_COLUMNS[list];
  const unknown = header.filter((h) => !allowed.includes(h));
  if (unknown.length > 0 || !header.includes("email") || new Set(header).size !== header.length)
    throw badRequest(
      fieldError(
        null,
        `The header row must name the column email${allowed.length > 1 ? ` and may name ${allowed.slice(1).join(", ")}` : ""}, each once; got ${JSON.stringify(records[0])}.`,
      ),
    );
  if (records.length - 1 > MAX_IMPORT_ROWS)
    throw new AppError("payload_too_large", "content too large", {
      fields: [
        fieldError(null, `An import may hold at most ${MAX_IMPORT_ROWS.toLocaleString("en-US")} rows.`),
      ],
    });
  const emailCol = header.indexOf("email");
  const reasonCol = header.indexOf("reason");
  const result: ImportResult = { imported: 0, skipped: 0, errors: [] };
  const rows = new Map<string, NewSuppression>();
  const skip = (row: number, email: string, message: string) => {
    result.skipped++;
    if (result.errors.length < MAX_LISTED_ERRORS) result.errors.push({ row, email, message });
  };
  records.slice(1).forEach((rec, i) => {
    const row = i + 2; // 1-based, the header is row 1
    const email = (rec[emailCol] ?? "").trim();
    if (rec.length !== header.length)
      return skip(row, email, `expected ${header.length} fields, got ${rec.length}`);
    if (!isValidEmail(email)) return skip(row, email, "not a valid email address");
    const reason = reasonCol >= 0 ? rec[reasonCol]! : null;
    if (reason !== null && reason.length > 1000)
      return skip(row, email, "reason is longer than 1000 characters");
    const key = email.toLowerCase();
    if (rows.has(key)) return skip(row, email, "the address is in the file already");
    rows.set(key, {
      email: key,
      createdAt: now,
      reason: reason || null,
      ...(list === "bounces" ? { bounceType: "hard" } : {}),
    });
  });
  result.imported = await tenantSuppressions(db, tenantId).addSuppressions(list, [...rows.values()]);
  return result;
}
