/**
 * POST /v3/mail/send — SendGrid v3 compatible (docs/api/sendgrid.md), with ScaiSend's documented
 * differences: the 202 carries `{"message_id"}` (one personalization) or `{"message_ids"}` (several)
 * as well as SendGrid's `X-Message-Id` header (docs/api/sendgrid.md#differences-from-sendgrid).
 * Quirk: @sendgrid/mail copies custom email headers into HTTP request headers too; unknown HTTP
 * headers are ignored here.
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import {
  MAX_MAIL_SEND_BYTES,
  malformedJsonError,
  payloadTooLargeError,
  validateMailSend,
  type MailSend,
} from "../../../../shared/sendgrid/mail-send.ts";
import type { AppEnv } from "../../context.ts";
import { authenticate, requireScope } from "../../middleware/auth.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { enqueueOnHubs } from "../../services/hub-client.ts";
import { sendMail } from "../../services/send-mail.ts";
import { renderSendGrid } from "../errors.ts";

/**
 * The raw body → a validated MailSend, or an AppError in SendGrid's shape: 413 over 20 MB, 415 for
 * invalid UTF-8, 400 for malformed JSON or failed validation. Exported for the fuzz test, which
 * drives it (and sendMail) with far more bodies than HTTP round trips allow.
 */
export function readMailSend(raw: ArrayBuffer): MailSend {
  if (raw.byteLength > MAX_MAIL_SEND_BYTES) {
    throw new AppError("payload_too_large", "content too large", { fields: [payloadTooLargeError()] });
  }
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(raw));
  } catch (err) {
    if (err instanceof TypeError) {
      throw new AppError("unsupported_media_type", "Invalid UTF8 in request", {
        fields: [{ message: "Invalid UTF8 in request", field: null, help: null }],
      });
    }
    throw new AppError("invalid_request", "Bad Request", { fields: [malformedJsonError()] });
  }
  const validated = validateMailSend(body);
  if (!validated.ok) throw new AppError("invalid_request", "Bad Request", { fields: validated.errors });
  return validated.value;
}

export const mailSend = new Hono<AppEnv>()
  .use(authenticate())
  .use(rateLimit({ name: "mail.send", per: "tenant", limit: (c) => c.MAIL_SEND_RATE_LIMIT, windowMs: 1000 }))
  .post("/", requireScope("mail.send"), async (c) => {
    const principal = c.get("principal");
    if (principal.kind !== "api_key") throw new AppError("forbidden", "Sending needs an API key");

    const mail = readMailSend(await c.req.arrayBuffer());

    const config = c.get("config");
    const result = await sendMail(
      {
        db: c.get("db"),
        enqueue: (entries) => enqueueOnHubs(c.env, config.HUB_SHARDS, entries),
        now: Date.now,
        log: (msg, extra) =>
          console.error(JSON.stringify({ level: "warn", msg, requestId: c.get("requestId"), ...extra })),
      },
      principal,
      mail,
    );
    c.header("X-Message-Id", result.messageIds[0]!);
    return c.json(
      result.messageIds.length === 1
        ? { message_id: result.messageIds[0] }
        : { message_ids: result.messageIds },
      202,
    );
  });

mailSend.onError(renderSendGrid);
