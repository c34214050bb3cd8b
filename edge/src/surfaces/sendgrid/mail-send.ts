/**
 * POST /v3/mail/send — SendGrid v3 compatible (docs/api/sendgrid.md), with ScaiSend's documented
 * differences: the 202 carries `{"message_id"}` (one personalization) or `{"message_ids"}` (several)
 * as well as SendGrid's `X-Message-Id` header (docs/api/sendgrid.md#differences-from-sendgrid).
 * Quirk: @sendgrid/mail copies custom email headers into HTTP request headers too; unknown HTTP
 * headers are ignored here.
 * Not SendGrid: `Idempotency-Key` (docs/api/sendgrid.md#idempotency-key). A live send that carries
 * one is routed to the shard hash(tenant, key) of its region, which remembers the key for 24 h.
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
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { chooseShard, idempotencyKeyHash, layoutOf, type RequestPlace } from "../../lib/shards.ts";
import { hubStub } from "../../services/hub-client.ts";
import { sendMail } from "../../services/send-mail.ts";
import { renderSendGrid } from "../errors.ts";
import { sha256Hex } from "../../lib/crypto.ts";

/** Printable ASCII without spaces (so never a CR or LF); 255 characters hold any UUID or hash a client uses. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

function idempotencyKey(value: string | undefined): string | null {
  if (value === undefined) return null;
  if (!IDEMPOTENCY_KEY.test(value)) {
    throw new AppError("invalid_request", "Bad Request", {
      fields: [
        {
          message: "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces.",
          field: "Idempotency-Key",
          help: null,
        },
      ],
    });
  }
  return value;
}

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
  .use(rateLimit(RATE_LIMITS.mailSend))
  .post("/", routePermission(), async (c) => {
    const principal = c.get("principal");
    if (principal.kind === "operator") throw new AppError("forbidden", "Sending needs an API key");

    const key = idempotencyKey(c.req.header("idempotency-key"));
    const raw = await c.req.arrayBuffer();
    const mail = readMailSend(raw);

    const config = c.get("config");
    // One shard per request, near where it entered Cloudflare; with a key, the one that remembers it.
    const shard = chooseShard(
      layoutOf(config),
      c.req.raw.cf as RequestPlace | undefined,
      key === null ? null : idempotencyKeyHash(principal.tenantId, key),
    );
    const result = await sendMail(
      {
        db: c.get("db"),
        hub: { shard, accept: (req) => hubStub(c.env, shard).accept(req) },
        now: Date.now,
        blobs: c.env.BLOBS,
        log: (msg, extra) =>
          console.error(JSON.stringify({ level: "warn", msg, requestId: c.get("requestId"), ...extra })),
      },
      principal,
      mail,
      key === null ? {} : { idempotency: { key, bodyHash: await sha256Hex(raw) } },
    );
    c.header("X-Message-Id", result.messageIds[0]!);
    if (result.replayed) c.header("Idempotent-Replayed", "true");
    return c.json(
      result.messageIds.length === 1
        ? { message_id: result.messageIds[0] }
        : { message_ids: result.messageIds },
      202,
    );
  });

mailSend.onError(renderSendGrid);
