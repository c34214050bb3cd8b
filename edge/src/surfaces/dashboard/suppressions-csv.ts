/**
 * The suppressions page's CSV import (docs/dashboard.md#pages): a file of one address per line, or
 * a list's CSV export (SendGrid's columns: email, created, reason, …). Every column of the file is
 * honoured or the file is refused; a bad row is reported by its line number and the good rows are
 * still added. A group's "Add addresses" textarea (asm-groups.tsx) is read with the same checks,
 * one address a line (parseAddressLines). The export side is the API's own toCsv (surfaces/sendgrid/suppression-csv.ts), which
 * quotes per RFC 4180 and neutralises cells a spreadsheet would read as a formula.
 */
import { AppError } from "../../../../shared/errors.ts";
import { isValidEmail } from "../../../../shared/sendgrid/mail-send.ts";
import type { SuppressionList } from "../../db/schema.ts";
import type { NewSuppression } from "../../db/suppressions.ts";
import { type CsvRecord, parseCsv } from "../../lib/csv.ts";
import { EXPORT_COLUMNS } from "../sendgrid/suppression-csv.ts";

/** The file may be this large (bytes) … */
export const MAX_IMPORT_BYTES = 1_048_576;
/** … and hold this many addresses. */
export const MAX_IMPORT_ROWS = 10_000;

export interface ImportRowError {
  line: number;
  value: string;
  message: string;
}

export interface ParsedImport {
  rows: NewSuppression[];
  errors: ImportRowError[];
}

/** The file's records (lib/csv.ts), or a 400 naming the line whose quoted field it ends inside. */
function records(text: string): CsvRecord[] {
  const parsed = parseCsv(text);
  if (parsed.unterminatedAt !== null)
    throw new AppError(
      "invalid_request",
      `The file ends inside a quoted field (line ${parsed.unterminatedAt}).`,
    );
  return parsed.records;
}

export function parseImport(list: SuppressionList, text: string, now: number): ParsedImport {
  const recs = records(text);
  if (recs.length === 0) throw new AppError("invalid_request", "The file holds no addresses.");
  const first = recs[0]!.fields.map((h) => h.trim().toLowerCase());
  let header: string[];
  let body = recs;
  if (first.includes("email")) {
    header = first;
    body = recs.slice(1);
    const allowed = EXPORT_COLUMNS[list];
    const unknown = header.filter((h) => !allowed.includes(h));
    if (unknown.length > 0 || new Set(header).size !== header.length)
      throw new AppError(
        "invalid_request",
        `The header row may name ${allowed.join(", ")} (each once) for ${list}; ${unknown.length ? `${unknown.join(", ")} ${unknown.length === 1 ? "is" : "are"} not kept on this list` : "a column is named twice"}.`,
      );
  } else header = ["email"];
  return checkRows(list, header, body, now, "file");
}

/**
 * The "Add addresses" textarea of a group's page: one address per line (no header, one field a
 * line), with the import's checks and its per-line errors; at most MAX_IMPORT_ROWS addresses.
 */
export function parseAddressLines(text: string, now: number): ParsedImport {
  const recs = records(text);
  if (recs.length === 0) throw new AppError("invalid_request", "Give at least one address, one per line.");
  return checkRows("unsubscribes", ["email"], recs, now, "list");
}

function checkRows(
  list: SuppressionList,
  header: string[],
  body: { line: number; fields: string[] }[],
  now: number,
  what: string,
): ParsedImport {
  if (body.length > MAX_IMPORT_ROWS)
    throw new AppError(
      "payload_too_large",
      `An import may hold at most ${MAX_IMPORT_ROWS.toLocaleString("en-US")} addresses; this ${what} has ${body.length.toLocaleString("en-US")}.`,
    );
  const col = (name: string) => header.indexOf(name);
  const errors: ImportRowError[] = [];
  const seen = new Map<string, NewSuppression>();
  for (const { line, fields } of body) {
    const value = (fields[col("email")] ?? "").trim();
    const bad = (message: string) => errors.push({ line, value, message });
    if (fields.length !== header.length) {
      bad(`expected ${header.length} field${header.length === 1 ? "" : "s"}, got ${fields.length}`);
      continue;
    }
    if (!isValidEmail(value)) {
      bad("not a valid email address");
      continue;
    }
    const get = (name: string) => (col(name) >= 0 ? fields[col(name)]!.trim() : "");
    let createdAt = now;
    const created = get("created");
    if (created !== "") {
      const s = /^\d{1,12}$/.test(created) ? Number(created) : NaN;
      if (!Number.isSafeInteger(s) || s * 1000 > now) {
        bad("created must be a Unix time in seconds, not in the future");
        continue;
      }
      createdAt = s * 1000;
    }
    const reason = get("reason");
    if (reason.length > 1000) {
      bad("reason is longer than 1000 characters");
      continue;
    }
    const status = get("status");
    const bounceType = get("bounce_type");
    if (bounceType !== "" && bounceType !== "hard" && bounceType !== "soft") {
      bad("bounce_type must be hard or soft");
      continue;
    }
    const ip = get("ip");
    if (status.length > 100 || ip.length > 45) {
      bad(status.length > 100 ? "status is longer than 100 characters" : "ip is longer than 45 characters");
      continue;
    }
    const key = value.toLowerCase();
    if (seen.has(key)) {
      bad(`the address is in the ${what} already`);
      continue;
    }
    seen.set(key, {
      email: key,
      createdAt,
      reason: reason || null,
      status: status || null,
      ip: ip || null,
      ...(list === "bounces" ? { bounceType: bounceType || "hard" } : {}),
    });
  }
  return { rows: [...seen.values()], errors };
}
