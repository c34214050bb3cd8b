/**
 * Error renderers, one per API dialect (docs/api/sendgrid.md#errors, docs/api/admin.md#errors). Routes and services throw AppError;
 * each sub-app's onError turns it into its dialect. Unknown errors are logged with the request id
 * and answered with a generic 500 — never a stack trace.
 */
import type { Context, ErrorHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { AppError, isAppError } from "../../../shared/errors.ts";
import type { AppEnv } from "../context.ts";

function toAppError(err: unknown, c: Context<AppEnv>): AppError {
  if (isAppError(err)) return err;
  if (err instanceof HTTPException && err.status < 500) {
    return new AppError(err.status === 404 ? "not_found" : "invalid_request", err.message || "Bad Request");
  }
  console.error(
    JSON.stringify({
      level: "error",
      msg: "unhandled error",
      requestId: c.get("requestId"),
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
      stack: err instanceof Error ? err.stack : undefined,
    }),
  );
  return new AppError("internal", "Internal server error");
}

function withHeaders(c: Context<AppEnv>, e: AppError) {
  for (const [k, v] of Object.entries(e.headers)) c.header(k, v);
  if (e.retryAfterSeconds !== undefined) c.header("Retry-After", String(e.retryAfterSeconds));
}

/** "query.page_size" → ["query","page_size"]; a bare field path is in the body. */
function locOf(field: string | null): (string | number)[] {
  const parts = field ? field.split(".").map((p) => (/^\d+$/.test(p) ? Number(p) : p)) : [];
  return parts[0] === "query" || parts[0] === "path" || parts[0] === "body" ? parts : ["body", ...parts];
}

/** FastAPI style: `{"detail": "..."}`; used for auth, routing, reads and the admin API. */
export const renderFastApi: ErrorHandler<AppEnv> = (err, c) => {
  const e = toAppError(err, c);
  withHeaders(c, e);
  if (e.code === "invalid_request" && e.fields.length > 0) {
    // FastAPI's validation shape: a list of {loc, msg, type}.
    const detail = e.fields.map((f) => ({
      loc: locOf(f.field),
      msg: f.message,
      type: "value_error",
    }));
    return c.json({ detail }, 422);
  }
  return c.json({ detail: e.message }, e.status as ContentfulStatusCode);
};

/**
 * SendGrid style for /v3/mail/*: `{"errors":[{message, field, help}]}` for request problems
 * (validation, size, unverified sender). Auth and rate-limit answers keep ScaiSend's `{detail}`
 * bodies (docs/api/sendgrid.md#authentication), which SendGrid clients surface just as well through the status code.
 */
export const renderSendGrid: ErrorHandler<AppEnv> = (err, c) => {
  const e = toAppError(err, c);
  if (e.fields.length === 0) return renderFastApi(e, c);
  withHeaders(c, e);
  const errors = e.fields.map((f) => ({ message: f.message, field: f.field, help: f.help ?? null }));
  return c.json({ errors }, e.status as ContentfulStatusCode);
};
