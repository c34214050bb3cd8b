/**
 * Errors of /v3/mail/batch and /v3/user/scheduled_sends in the shape SendGrid's own service for them
 * answers (docs/api/sendgrid.md#scheduling-and-batches): `{"errors":[{"field":null,"message":"invalid
 * batch id"}]}` — `field` and `message` only, no `help` (the bodies quoted in
 * github.com/sendgrid/docs/pull/1285 and github.com/sendgrid/sendgrid-nodejs/issues/1245). Errors
 * without fields (authentication, permission, rate limit) keep ScaiSend's `{detail}` as every
 * SendGrid-style surface does (renderSendGrid).
 */
import type { ErrorHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isAppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { renderSendGrid } from "../errors.ts";

export const renderMako: ErrorHandler<AppEnv> = (err, c) => {
  if (!isAppError(err) || err.fields.length === 0) return renderSendGrid(err, c);
  for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
  if (err.retryAfterSeconds !== undefined) c.header("Retry-After", String(err.retryAfterSeconds));
  const errors = err.fields.map((f) => ({ field: f.field, message: f.message }));
  return c.json({ errors }, err.status as ContentfulStatusCode);
};
