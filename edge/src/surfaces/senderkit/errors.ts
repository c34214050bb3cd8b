/**
 * SenderKit's error dialect for everything under /v1 (docs/api/senderkit.md#errors):
 * `{"error":{"code","message","issues"?,"limit"?}}`. Routes throw SkError with SenderKit's own codes;
 * an AppError from a shared part (auth cache, rate limiter, the send path) is mapped onto the
 * nearest SenderKit code. Unknown errors are logged with the request id and answered with a generic
 * 500, never a stack trace.
 */
import type { Context, ErrorHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { isAppError, type AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";

export interface SkIssue {
  code: string;
  path: (string | number)[];
  message: string;
  [k: string]: unknown;
}

export class SkError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly extra: { issues?: SkIssue[]; limit?: number; retryAfterSeconds?: number } = {},
  ) {
    super(message);
    this.name = "SkError";
  }
}

/** zod's issues as SenderKit returns them (Zod issues: code, path, message, and the issue's details). */
export function zodIssues(error: z.ZodError): SkIssue[] {
  return error.issues.map((i) => {
    const { input: _input, ...rest } = i as typeof i & { input?: unknown };
    return { ...rest, path: i.path.map((p) => (typeof p === "symbol" ? String(p) : p)) } as SkIssue;
  });
}

export const invalidRequest = (message: string, issues?: SkIssue[]) =>
  new SkError(400, "invalid_request", message, issues ? { issues } : {});

/** A shared part's AppError in SenderKit's codes. */
function fromAppError(e: AppError): SkError {
  const issues = e.fields.map((f) => ({
    code: "custom",
    path: f.field ? f.field.split(".").filter((p) => p !== "body") : [],
    message: f.message,
  }));
  const withIssues = issues.length > 0 ? { issues } : {};
  switch (e.code) {
    case "unauthorized":
      return new SkError(401, "unauthorized", e.message);
    case "rate_limited":
      return new SkError(429, "rate_limited", "Too many requests", {
        ...(e.headers["X-RateLimit-Limit"] ? { limit: Number(e.headers["X-RateLimit-Limit"]) } : {}),
        ...(e.retryAfterSeconds !== undefined ? { retryAfterSeconds: e.retryAfterSeconds } : {}),
      });
    case "not_found":
      return new SkError(404, "not_found", e.message);
    case "conflict":
      return new SkError(409, "conflict", e.message);
    case "unprocessable":
      return new SkError(422, "idempotency_key_reused", e.message, withIssues);
    case "internal":
      return new SkError(500, "internal_error", "Internal server error");
    case "unavailable":
      return new SkError(503, "unavailable", e.message);
    case "payload_too_large":
      // SenderKit has no 413: an oversized message is a validation failure.
      return new SkError(400, "invalid_request", e.fields[0]?.message ?? e.message, withIssues);
    case "forbidden":
      // The send path's 403 is an unverified From domain; SenderKit has no 403 in its contract.
      return new SkError(400, "invalid_request", e.fields[0]?.message ?? e.message, withIssues);
    default:
      return new SkError(400, "invalid_request", e.fields[0]?.message ?? e.message, withIssues);
  }
}

function toSkError(err: unknown, c: Context<AppEnv>): SkError {
  if (err instanceof SkError) return err;
  if (isAppError(err)) return fromAppError(err);
  if (err instanceof HTTPException && err.status < 500) {
    return err.status === 404
      ? new SkError(404, "not_found", "Not found")
      : invalidRequest(err.message || "Bad request");
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
  return new SkError(500, "internal_error", "Internal server error");
}

export function skErrorBody(e: SkError) {
  return {
    error: {
      code: e.code,
      message: e.message,
      ...(e.extra.issues ? { issues: e.extra.issues } : {}),
      ...(e.extra.limit !== undefined ? { limit: e.extra.limit } : {}),
    },
  };
}

export const renderSenderKit: ErrorHandler<AppEnv> = (err, c) => {
  const e = toSkError(err, c);
  if (e.extra.retryAfterSeconds !== undefined) c.header("Retry-After", String(e.extra.retryAfterSeconds));
  if (isAppError(err)) for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
  return c.json(skErrorBody(e), e.status);
};
