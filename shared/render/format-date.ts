/**
 * SendGrid's `formatDate` helper (docs/templates.md#formatdate):
 * `{{formatDate value [format] [timezoneOffset]}}`.
 *
 * - `value` is an epoch number or an ISO 8601 string. SendGrid says "epoch" without a unit, so a
 *   number below 100,000,000,000 is taken as seconds (that is every date before year 5138) and a
 *   larger one as milliseconds (every date after 1973).
 * - `format` uses SendGrid's tokens: YYYY YY MMMM MMM MM M DD D dddd ddd hh h HH H mm m ss s A ZZ Z;
 *   any other character is copied, and `[text]` is copied without its brackets (as in moment.js,
 *   whose tokens SendGrid's are). Without a format the instant is written in ISO 8601 (UTC).
 * - `timezoneOffset` is `±HHMM` or `±HH:MM` (SendGrid's example: "-0800"); without it, UTC.
 *
 * English month and day names only, as in SendGrid's table:
 * https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars#formatdate
 */

const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];
const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/** Longest token first for each letter: the alternation takes the first one that matches. */
const TOKEN = /\[[^\]]*\]|YYYY|YY|MMMM|MMM|MM|M|DD|D|dddd|ddd|hh|h|HH|H|mm|m|ss|s|A|ZZ|Z/g;

/** Seconds below this, milliseconds above (see the header). */
const SECONDS_BELOW = 100_000_000_000;

/** Dates JavaScript can hold: ±8.64e15 ms around 1970. */
const MAX_MS = 8.64e15;

/** A format longer than this is refused (it is template or data text, copied per character). */
export const MAX_DATE_FORMAT_LENGTH = 256;

export type FormatDateResult = { ok: true; value: string } | { ok: false; message: string };

export function formatDate(value: unknown, format: unknown, offset: unknown): FormatDateResult {
  const ms = toEpochMs(value);
  if (ms === null)
    return {
      ok: false,
      message: `formatDate: ${describe(value)} is not a date (epoch number or ISO 8601 string)`,
    };
  let offsetMinutes = 0;
  if (offset !== undefined && offset !== null && offset !== "") {
    const parsed = parseOffset(offset);
    if (parsed === null)
      return { ok: false, message: `formatDate: ${describe(offset)} is not a timezone offset like "-0800"` };
    offsetMinutes = parsed;
  }
  if (format === undefined || format === null || format === "") {
    return { ok: true, value: new Date(ms).toISOString() };
  }
  if (typeof format !== "string")
    return { ok: false, message: `formatDate: the format must be a string, not ${describe(format)}` };
  if (format.length > MAX_DATE_FORMAT_LENGTH) {
    return {
      ok: false,
      message: `formatDate: the format is longer than ${MAX_DATE_FORMAT_LENGTH} characters`,
    };
  }
  // Shift the instant by the offset and read the fields in UTC: that is the wall clock at that offset.
  const d = new Date(ms + offsetMinutes * 60_000);
  if (Number.isNaN(d.getTime())) return { ok: false, message: "formatDate: the date is out of range" };
  const hours24 = d.getUTCHours();
  const hours12 = hours24 % 12 === 0 ? 12 : hours24 % 12;
  const sign = offsetMinutes < 0 ? "-" : "+";
  const offH = pad2(Math.floor(Math.abs(offsetMinutes) / 60));
  const offM = pad2(Math.abs(offsetMinutes) % 60);
  const out = format.replace(TOKEN, (token) => {
    switch (token) {
      case "YYYY":
        return String(d.getUTCFullYear()).padStart(4, "0");
      case "YY":
        return pad2(d.getUTCFullYear() % 100);
      case "MMMM":
        return MONTHS[d.getUTCMonth()]!;
      case "MMM":
        return MONTHS[d.getUTCMonth()]!.slice(0, 3);
      case "MM":
        return pad2(d.getUTCMonth() + 1);
      case "M":
        return String(d.getUTCMonth() + 1);
      case "DD":
        return pad2(d.getUTCDate());
      case "D":
        return String(d.getUTCDate());
      case "dddd":
        return DAYS[d.getUTCDay()]!;
      case "ddd":
        return DAYS[d.getUTCDay()]!.slice(0, 3);
      case "hh":
        return pad2(hours12);
      case "h":
        return String(hours12);
      case "HH":
        return pad2(hours24);
      case "H":
        return String(hours24);
      case "mm":
        return pad2(d.getUTCMinutes());
      case "m":
        return String(d.getUTCMinutes());
      case "ss":
        return pad2(d.getUTCSeconds());
      case "s":
        return String(d.getUTCSeconds());
      case "A":
        return hours24 < 12 ? "AM" : "PM";
      case "ZZ":
        return `${sign}${offH}${offM}`;
      case "Z":
        return `${sign}${offH}:${offM}`;
      default:
        return token.slice(1, -1); // [literal]
    }
  });
  return { ok: true, value: out };
}

function toEpochMs(value: unknown): number | null {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return null;
    const ms = Math.abs(value) < SECONDS_BELOW ? value * 1000 : value;
    return Math.abs(ms) <= MAX_MS ? ms : null;
  }
  if (typeof value === "string") {
    const s = value.trim();
    // Digits only: an epoch sent as a string.
    if (/^-?\d{1,16}$/.test(s)) return toEpochMs(Number(s));
    // ISO 8601 only (Date.parse would also take "July 5" in the process's local zone).
    if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i.test(s))
      return null;
    // A date-only or zone-less ISO string is UTC here, never the process's local time.
    let iso = s.replace(" ", "T").replace(/(\.\d{3})\d+/, "$1");
    if (/^\d{4}-\d{2}-\d{2}$/.test(iso)) iso += "T00:00:00Z";
    else if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(iso)) iso += "Z";
    iso = iso.replace(/([+-]\d{2})(\d{2})$/, "$1:$2");
    const ms = Date.parse(iso);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

function parseOffset(offset: unknown): number | null {
  if (typeof offset !== "string") return null;
  const m = /^([+-])(\d{2}):?(\d{2})$/.exec(offset.trim());
  if (!m) return null;
  const hours = Number(m[2]);
  const minutes = Number(m[3]);
  if (hours > 14 || minutes > 59) return null;
  return (m[1] === "-" ? -1 : 1) * (hours * 60 + minutes);
}

const pad2 = (n: number): string => String(n).padStart(2, "0");

/** A short description of a value for error messages, never the whole of a large value. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return String(value);
}
