/**
 * What the suppression and ASM routes share (docs/api/sendgrid.md#suppressions): the tenant of the
 * credential, SendGrid's `{"errors":[…]}` for request problems and its 404 "resource not found",
 * a bounded JSON body reader, query checks that refuse parameters we do not honour, and the
 * `recipient_emails` lists. Reads need `suppressions.read`, changes `suppressions.write`.
 */
import type { Context } from "hono";
import { AppError, type FieldError } from "../../../../shared/errors.ts";
import { isValidEmail } from "../../../../shared/sendgrid/mail-send.ts";
import type { AppEnv } from "../../context.ts";
import { routePermission } from "../route-permissions.ts";

export const readScope = routePermission();
export const writeScope = routePermission();

/** JSON bodies: 1,000 addresses of 320 characters fit with room to spare. */
export const MAX_JSON_BODY_BYTES = 1_048_576;
/** CSV imports (docs/api/sendgrid.md#suppressions-csv). */
export const MAX_CSV_BODY_BYTES = 10 * 1_048_576;
/** Addresses one request may add, search or delete. */
export const MAX_EMAILS_PER_REQUEST = 1_000;
/** Requests per second per API key on the suppression and ASM routes. */
export const SUPPRESSIONS_RATE_LIMIT = 100;

export const fieldError = (field: string | null, message: string): FieldError => ({
  field,
  message,
  help: null,
});
export const badRequest = (...errors: FieldError[]) =>
  new AppError("invalid_request", "Bad Request", { fields: errors });
export const notFound = () =>
  new AppError("not_found", "resource not found", { fields: [fieldError(null, "resource not found")] });

export function tenantOf(c: Context<AppEnv>): string {
  const p = c.get("principal");
  if (p.kind === "operator")
    throw new AppError("forbidden", "Suppressions belong to a tenant: use one of its API keys");
  return p.tenantId;
}

async function readText(c: Context<AppEnv>, limit: number): Promise<string> {
  const raw = await c.req.arrayBuffer();
  if (raw.byteLength > limit) {
    throw new AppError("payload_too_large", "content too large", {
      fields: [fieldError(null, `The request body may be at most ${limit.toLocaleString("en-US")} bytes.`)],
    });
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(raw);
  } catch {
    throw new AppError("unsupported_media_type", "Invalid UTF8 in request", {
      fields: [fieldError(null, "Invalid UTF8 in request")],
    });
  }
}

/** The JSON body; an empty one is `undefined` (a bodiless DELETE or an axios POST without data). */
export async function readJson(c: Context<AppEnv>): Promise<unknown> {
  const text = await readText(c, MAX_JSON_BODY_BYTES);
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest(fieldError(null, "The request body is not valid JSON."));
  }
}

export async function readCsv(c: Context<AppEnv>): Promise<string> {
  const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "text/csv")
    throw new AppError("unsupported_media_type", "unsupported media type", {
      fields: [fieldError(null, "An import is a CSV file: send it with Content-Type: text/csv.")],
    });
  return readText(c, MAX_CSV_BODY_BYTES);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Refuses keys the route does not know: a field we do not honour is a 400, never ignored. */
export function onlyKeys(body: Record<string, unknown>, allowed: readonly string[], where = ""): void {
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length > 0)
    throw badRequest(...extra.map((k) => fieldError(`${where}${k}`, `Unknown field ${JSON.stringify(k)}.`)));
}

/** An address as the lists hold it, or a 400 naming the field. */
export function emailAt(v: unknown, field: string): string {
  if (typeof v !== "string" || !isValidEmail(v.trim()))
    throw badRequest(fieldError(field, "Must be a valid email address."));
  return v.trim().toLowerCase();
}

/** `{"recipient_emails": [...]}`: 1 to MAX_EMAILS_PER_REQUEST valid addresses. */
export function recipientEmails(body: unknown): string[] {
  if (!isObject(body))
    throw badRequest(fieldError(null, "The body must be a JSON object with recipient_emails."));
  onlyKeys(body, ["recipient_emails"]);
  return emailList(body["recipient_emails"], "recipient_emails");
}

export function emailList(v: unknown, field: string): string[] {
  if (!Array.isArray(v) || v.length === 0)
    throw badRequest(fieldError(field, `${field} must be a non-empty array of email addresses.`));
  if (v.length > MAX_EMAILS_PER_REQUEST)
    throw badRequest(fieldError(field, `At most ${MAX_EMAILS_PER_REQUEST} email addresses per request.`));
  return v.map((e, i) => emailAt(e, `${field}.${i}`));
}

/** The address in the path (clients send it raw or percent-encoded; Hono decodes it). */
export function pathEmail(c: Context<AppEnv>): string {
  return emailAt(c.req.param("email"), "email");
}

/** The query's parameters, refusing unknown or repeated ones. */
export function queryOf(c: Context<AppEnv>, allowed: readonly string[], repeatable: readonly string[] = []) {
  const url = new URL(c.req.url);
  const out = new Map<string, string[]>();
  for (const [k, v] of url.searchParams) {
    if (!allowed.includes(k))
      throw badRequest(fieldError(k, `Unknown query parameter ${JSON.stringify(k)}.`));
    const list = out.get(k) ?? [];
    list.push(v);
    if (list.length > 1 && !repeatable.includes(k))
      throw badRequest(fieldError(k, `The query parameter ${k} may be given once.`));
    out.set(k, list);
  }
  return {
    one: (k: string) => out.get(k)?.[0],
    all: (k: string) => out.get(k) ?? [],
  };
}

/** A non-negative integer query parameter within [min, max], or its default. */
export function intParam(v: string | undefined, name: string, min: number, max: number, dflt: number): number;
export function intParam(v: string | undefined, name: string, min: number, max: number): number | undefined;
export function intParam(v: string | undefined, name: string, min: number, max: number, dflt?: number) {
  if (v === undefined) return dflt;
  if (!/^\d{1,15}$/.test(v) || Number(v) < min || Number(v) > max)
    throw badRequest(fieldError(name, `${name} must be an integer from ${min} to ${max}.`));
  return Number(v);
}

/** Unix seconds as the API shows them. */
export const unixSeconds = (ms: number) => Math.floor(ms / 1000);
