/**
 * What a send's `send_at` and `batch_id` need before it is accepted (docs/api/sendgrid.md#scheduling-and-batches):
 *  - a `send_at` in the future (request or personalization) or any `batch_id` needs the key's
 *    `mail.schedule` permission: 403 otherwise, in mail/send's `errors[]` shape naming the field
 *    (SendGrid clients and the fuzz test read every mail/send 4xx that way). A past or present
 *    `send_at` means "now" and needs nothing more than mail.send.
 *  - a `batch_id` must be one POST /v3/mail/batch made for this tenant: SendGrid's 400 otherwise.
 *    Batches are never deleted, so an id once found is remembered in this isolate (no round trip
 *    for the next send into the same batch).
 * And when the hub must hold a message: `notBeforeOf` turns a draft's `send_at` (seconds) into the
 * outbox entry's `notBefore` (ms).
 */
import { AppError } from "../../../shared/errors.ts";
import { fieldError, type MailSend } from "../../../shared/sendgrid/mail-send.ts";
import type { Principal } from "../context.ts";
import type { Db } from "../db/client.ts";
import { tenantBatches } from "../db/batches.ts";

type KeyPrincipal = Exclude<Principal, { kind: "operator" }>;

/** A batch id as POST /v3/mail/batch makes them (services/batches.ts); anything else is invalid without a look-up. */
export const BATCH_ID_FORMAT = /^[A-Za-z0-9]{32}$/;

export const INVALID_BATCH_ID_MESSAGE =
  "The batch_id is not valid: it must be an id that POST /v3/mail/batch created for this account.";

const known = new Set<string>();
const KNOWN_MAX = 10_000;

/** The first field asking for a send later than now (whole seconds), or null when none does. */
export function scheduledField(mail: MailSend, now: number): string | null {
  const nowSeconds = Math.floor(now / 1000);
  const later = (at: number | undefined) => at !== undefined && at > nowSeconds;
  if (later(mail.send_at)) return "send_at";
  const i = mail.personalizations.findIndex((p) => later(p.send_at));
  return i >= 0 ? `personalizations.${i}.send_at` : null;
}

export const MISSING_SCHEDULE_SCOPE = "Missing required scope: mail.schedule";

export async function checkScheduling(
  db: Db,
  principal: KeyPrincipal,
  mail: MailSend,
  now: number,
): Promise<void> {
  const needs = scheduledField(mail, now) ?? (mail.batch_id !== undefined ? "batch_id" : null);
  if (needs !== null && !principal.scopes.includes("mail.schedule")) {
    // In mail/send's own shape (errors[]), naming the field that needs the permission.
    throw new AppError("forbidden", MISSING_SCHEDULE_SCOPE, {
      fields: [{ message: MISSING_SCHEDULE_SCOPE, field: needs, help: null }],
    });
  }
  if (mail.batch_id === undefined) return;
  const cacheKey = `${principal.tenantId}\u0000${mail.batch_id}`;
  if (known.has(cacheKey)) return;
  const found =
    BATCH_ID_FORMAT.test(mail.batch_id) &&
    (await tenantBatches(db, principal.tenantId).getBatch(mail.batch_id));
  if (!found) {
    throw new AppError("invalid_request", "Invalid batch_id", {
      fields: [fieldError(["batch_id"], INVALID_BATCH_ID_MESSAGE)],
    });
  }
  if (known.size >= KNOWN_MAX) known.clear();
  known.add(cacheKey);
}

/** The outbox entry's `notBefore` (unix ms) for a draft's `send_at` (unix seconds); 0 = now. */
export function notBeforeOf(sendAt: number | undefined, now: number): number {
  return sendAt !== undefined && sendAt * 1000 > now ? sendAt * 1000 : 0;
}
